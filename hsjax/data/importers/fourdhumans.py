"""4D-Humans / HMR 2.0 with PHALP tracking: the ``results/<name>.pkl`` that PHALP writes.

What PHALP writes (brjathu/PHALP ``phalp/trackers/PHALP.py`` ``PHALP.track``, commit b41f606;
4D-Humans' ``track.py`` runs it with HMR 2.0 as the pose network): ``joblib.dump(
final_visuals_dic, path, compress=3)``, a dict ``frame_path -> frame``, where ``frame`` has
``time`` (the frame index), ``shot``, ``frame_path`` and per-person lists that are **aligned
with ``tid``**: ``tid``, ``bbox`` ([x, y, w, h] pixels), ``tracked_time`` (frames since the
track was last matched to a detection: 0 = seen in this frame; > 0 = a lost track whose
entries repeat its last detection), ``smpl`` (dicts ``global_orient [1, 3, 3]``,
``body_pose [23, 3, 3]`` rotation matrices, ``betas [10]``), ``camera`` (translation
``[3]``, metres, for HMR's camera below), ``camera_bbox``, ``3d_joints`` (``[J, 3]`` model
joints without the translation), ``2d_joints`` (``[2 J]`` projections in the padded square,
divided by its size), ``mask`` (a list holding one COCO RLE dict, ``counts`` a str),
``center``, ``scale``, ``size`` ([H, W]), ``img_path``, ``img_name``, ``class_name``,
``conf``, ``annotations``. ``tracked_ids`` / ``tracked_bbox`` list only the tracks seen in the
frame and are **not** aligned with the per-person lists.

HMR's camera (``phalp/models/hmar/hmar.py`` ``get_3d_parameters``): the frame is padded to a
square of side ``S = max(H, W)`` centred (``left = (S - W) // 2``, ``top = (S - H) // 2``) and
resized to ``res = 256``; the translation is for focal ``5000`` px and principal point
``res / 2`` there. In the original image's pixels that is
``f_hmr = 5000 · S / 256``, ``c_hmr = (S / 2 - left, S / 2 - top)``.
"""

from __future__ import annotations

import os

from absl import logging

import numpy as np
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.data import io as io_lib
from hsjax.data import sequence as seq_lib
from hsjax.data.importers import common


# ------------------------------------------------------------------------------------------
# 4D-Humans / HMR 2.0 (PHALP tracking pickle)


def decode_coco_rle(rle: dict) -> np.ndarray:
  """A COCO run-length-encoded mask (``{"size": [h, w], "counts": str|bytes|list}``) -> [h, w].

  Compressed counts use COCO's variable-length 6-bit ASCII encoding with deltas (as written by
  ``pycocotools.mask.encode``); runs alternate background/foreground in column-major order.
  """
  h, w = (int(x) for x in rle["size"])
  counts = rle["counts"]
  if isinstance(counts, (bytes, str)):
    s = counts.encode() if isinstance(counts, str) else counts
    runs, i = [], 0
    while i < len(s):
      x, k, more = 0, 0, True
      while more:
        c = s[i] - 48
        x |= (c & 0x1F) << (5 * k)
        more = bool(c & 0x20)
        i += 1
        k += 1
        if not more and (c & 0x10):
          x |= -1 << (5 * k)
      if len(runs) > 2:
        x += runs[-2]
      runs.append(x)
  else:
    runs = [int(c) for c in counts]
  flat = np.zeros(h * w, np.float32)
  pos, value = 0, 0.0
  for r in runs:
    flat[pos:pos + r] = value
    pos += r
    value = 1.0 - value
  if pos != h * w:
    raise ValueError(f"COCO RLE covers {pos} pixels, expected {h} x {w} = {h * w}")
  return flat.reshape(w, h).T


HMR_FOCAL = 5000.0  # PHALP cfg.EXTRA.FOCAL_LENGTH, px at the network resolution
HMR_RES = 256  # PHALP cfg.render.res: the padded square's side at the network resolution


def hmr_intrinsics(height: int, width: int) -> np.ndarray:
  """K [3, 3] of HMR's camera in the original image's pixels (module docstring)."""
  side = max(height, width)
  left, top = (side - width) // 2, (side - height) // 2
  f = HMR_FOCAL * side / HMR_RES
  return np.array([[f, 0, side / 2 - left], [0, f, side / 2 - top], [0, 0, 1]], np.float64)


def _project(k: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Pixels [..., 2] of camera-frame points [..., 3] (OpenCV)."""
  return points[..., :2] / points[..., 2:3] * np.diag(k)[:2] + k[:2, 2]


def transl_for_camera(joints: np.ndarray | None, transl: np.ndarray, k_hmr: np.ndarray,
                      k: np.ndarray) -> np.ndarray:
  """The translation that keeps HMR's 2D joints under another camera ``k``.

  HMR places joint ``X_j`` (camera frame, without translation) at pixel
  ``u_j = π(K_hmr, X_j + t)``. For ``k`` we want ``t'`` with ``π(k, X_j + t') ≈ u_j`` for all
  joints: ``fx (X_j + t'x) = (u_j - cx)(Z_j + t'z)`` and the same in y, linear in ``t'``,
  solved by least squares over the joints. It is exact when ``k == K_hmr`` (``t' = t``) and for
  every point at the root's depth; joints in front of or behind it move by the perspective
  difference between the two focal lengths (measured in ``metadata["hmr_reprojection_px"]``).
  Without joints the closed form for the body origin is used:
  ``t'z = tz · f / f_hmr``, ``t'xy = (π(K_hmr, t) - c) · t'z / f``.

  Args:
    joints: [J, 3] metres, or None.
    transl: [3] HMR's translation.
    k_hmr: [3, 3] HMR's intrinsics (:func:`hmr_intrinsics`).
    k: [3, 3] the target intrinsics.

  Returns:
    [3] the translation for ``k``.
  """
  if np.array_equal(k, k_hmr):
    return np.asarray(transl, np.float64)
  f, c = np.diag(k)[:2], k[:2, 2]
  if joints is None:
    tz = transl[2] * f.mean() / np.diag(k_hmr)[:2].mean()
    uv = _project(k_hmr, np.asarray(transl, np.float64))
    return np.array([*((uv - c) * tz / f), tz])
  joints = np.asarray(joints, np.float64)
  uv = _project(k_hmr, joints + transl)  # [J, 2]
  rows, rhs = [], []
  for axis in (0, 1):
    d = uv[:, axis] - c[axis]
    a = np.zeros((len(joints), 3))
    a[:, axis] = f[axis]
    a[:, 2] = -d
    rows.append(a)
    rhs.append(d * joints[:, 2] - f[axis] * joints[:, axis])
  sol, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
  return sol


def _find_pkl(path: str) -> tuple[str, str]:
  """(root folder, PHALP .pkl): ``path`` is the .pkl, a folder holding one, or a PHALP output
  folder with ``results/<one>.pkl``."""
  if not os.path.isdir(path):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.basename(folder) == "results":  # PHALP's <output_dir>/results/<name>.pkl
      folder = os.path.dirname(folder)
    return folder, path
  for folder in (path, os.path.join(path, "results")):
    if os.path.isdir(folder):
      pkls = sorted(f for f in os.listdir(folder) if f.endswith(".pkl"))
      if len(pkls) == 1:
        return path, os.path.join(folder, pkls[0])
      if len(pkls) > 1:
        raise ValueError(f"{folder}: expected one PHALP .pkl, found {pkls}; pass the file")
  raise FileNotFoundError(f"{path}: no PHALP .pkl (expected <dir>/<name>.pkl or "
                          "<dir>/results/<name>.pkl)")


_PER_PERSON = ("smpl", "camera")


def _frames(data, pkl: str) -> list[tuple[str, dict]]:
  """(key, frame) sorted by PHALP's ``time`` (else the key's file name), validated."""
  if not isinstance(data, dict) or not data:
    raise ValueError(f"{pkl}: expected a non-empty dict frame_path -> frame (PHALP's "
                     f"final_visuals_dic), found {type(data).__name__}")
  out = []
  for key, frame in data.items():
    if not isinstance(frame, dict):
      raise ValueError(f"{pkl}: frame '{key}' expected a dict, found {type(frame).__name__}")
    for field in ("tid", "tracked_time", *_PER_PERSON):
      if field not in frame:
        raise ValueError(f"{pkl}: frame '{key}': field '{field}' expected (PHALP writes tid, "
                         f"tracked_time, smpl, camera, ...), found {sorted(frame)}")
    n = len(frame["tid"])
    for field in ("tracked_time", *_PER_PERSON):
      if len(frame[field]) != n:
        raise ValueError(f"{pkl}: frame '{key}': field '{field}' expected {n} entries (one "
                         f"per 'tid'), found {len(frame[field])}")
    out.append((str(key), frame))
  return sorted(out, key=lambda kv: (kv[1].get("time", 0), os.path.basename(kv[0])))


def tracked_frames(frames, track_id: int) -> list[tuple[int, int]]:
  """(frame index, person index) of the frames where ``track_id`` is seen (tracked_time 0)."""
  out = []
  for i, (_, frame) in enumerate(frames):
    for j, (tid, age) in enumerate(zip(frame["tid"], frame["tracked_time"])):
      if int(tid) == track_id and int(age) == 0:
        out.append((i, j))
        break
  return out


def longest_track(frames) -> tuple[int, dict[int, int]]:
  """The id seen (tracked_time 0) in most frames, ties to the smaller id, and every id's count."""
  counts: dict[int, int] = {}
  for _, frame in frames:
    for tid, age in zip(frame["tid"], frame["tracked_time"]):
      if int(age) == 0:
        counts[int(tid)] = counts.get(int(tid), 0) + 1
  if not counts:
    raise ValueError("no person is tracked in any frame (every 'tracked_time' > 0 or 'tid' "
                     "empty)")
  return min(counts, key=lambda t: (-counts[t], t)), counts


def _rle(entry, where: str) -> np.ndarray:
  """PHALP's mask entry (a list holding one COCO RLE dict; a bare dict also read) -> [H, W]."""
  if isinstance(entry, (list, tuple)):
    if len(entry) != 1:
      raise ValueError(f"{where}: mask expected a list of one COCO RLE dict, found a list of "
                       f"{len(entry)}")
    entry = entry[0]
  if not isinstance(entry, dict) or "size" not in entry or "counts" not in entry:
    raise ValueError(f"{where}: mask expected a COCO RLE dict with 'size' and 'counts', found "
                     f"{type(entry).__name__}")
  return decode_coco_rle(entry)


def _image_path(key: str, frame: dict, images_dir: str | None, root: str) -> str:
  name = os.path.basename(str(frame.get("frame_path", key)))
  if images_dir is not None:
    return os.path.join(images_dir, name)
  for candidate in (os.path.join(root, "images", name), str(frame.get("frame_path", key)),
                    os.path.join(root, str(frame.get("frame_path", key)))):
    if os.path.exists(candidate):
      return candidate
  return os.path.join(root, "images", name)


def load_4dhumans(path: str, *, images_dir: str | None = None, masks_dir: str | None = None,
                  track_id: int | None = None, focal_length: float | None = None,
                  principal_point: tuple[float, float] | None = None,
                  fps: float = 30.0) -> seq_lib.Sequence:
  """Imports one person of a PHALP / 4D-Humans tracking result (module docstring).

  Args:
    path: the ``.pkl`` (joblib, compressed or not, or a plain pickle), a folder holding one,
      or PHALP's output folder (``results/<name>.pkl``).
    images_dir: the frames, matched by the file name of ``frame_path``. Default: ``images/``
      next to the result if present, else ``frame_path`` as PHALP recorded it.
    masks_dir: optional masks (``<frame stem>.png``) used instead of PHALP's RLE masks.
    track_id: the PHALP ``tid`` to import; default the longest track (the id seen in most
      frames), recorded in ``metadata["track_id"]`` and logged.
    focal_length: the real focal length in pixels; default HMR's ``5000 · max(H, W) / 256``.
    principal_point: ``(cx, cy)`` of the real camera; default HMR's (the centre of the
      centred square padding, = the image centre when ``max(H, W) - min(H, W)`` is even).
    fps: frame rate.

  Returns:
    A sequence of the frames where the person is tracked (``tracked_time == 0``); the others
    (person absent, or a lost track carrying stale estimates) are listed in
    ``metadata["dropped_frames"]``. World = camera frame (``world_to_cam = I``); per-frame
    ``global_orient`` / ``body_pose`` from the rotation matrices, betas averaged, ``transl``
    converted to the camera of ``K`` by :func:`transl_for_camera`. ``metadata`` also holds
    ``bbox_xywh [T, 4]`` and, when PHALP wrote them, ``keypoints_2d [T, J, 2]`` (HMR's 2D
    joints in image pixels) and ``hmr_reprojection_px`` (the largest distance between those
    and the projection of ``3d_joints + transl`` through ``K``). Keys in
    ``metadata["per_frame"]`` are sliced with the sequence.
  """
  root, pkl = _find_pkl(path)
  given = track_id is not None
  frames = _frames(common.read_pickle(pkl), pkl)
  try:
    best, counts = longest_track(frames)
  except ValueError as e:
    raise ValueError(f"{pkl}: {e}") from None
  if track_id is None:
    track_id = best
    logging.info("%s: importing track %d, the longest (%d of %d frames; tracks: %s)", pkl,
                 track_id, counts[track_id], len(frames), counts)
  elif int(track_id) not in counts:
    raise ValueError(f"{pkl}: track_id expected one of the tracked ids {sorted(counts)} "
                     f"(frames each: {counts}), found {track_id}")
  track_id = int(track_id)
  rows = tracked_frames(frames, track_id)
  kept = {i for i, _ in rows}
  dropped = [frames[i][0] for i in range(len(frames)) if i not in kept]

  orient, body_pose, betas, transl_hmr, joints3d, joints2d, bboxes, rles = ([] for _ in range(8))
  for i, j in rows:
    key, frame = frames[i]
    where = f"{pkl}: frame '{key}', tid {track_id}"
    smpl = frame["smpl"][j]
    if not isinstance(smpl, dict) or not {"global_orient", "body_pose", "betas"} <= set(smpl):
      raise ValueError(f"{where}: smpl expected a dict with global_orient, body_pose, betas; "
                       f"found {sorted(smpl) if isinstance(smpl, dict) else type(smpl).__name__}")
    go = np.asarray(smpl["global_orient"], np.float64).reshape(-1, 3, 3)
    bp = np.asarray(smpl["body_pose"], np.float64)
    if bp.shape != (23, 3, 3) or go.shape != (1, 3, 3):
      raise ValueError(f"{where}: smpl body_pose must be [23, 3, 3] and global_orient "
                       f"[1, 3, 3] rotation matrices, found {list(bp.shape)} and "
                       f"{list(np.shape(smpl['global_orient']))}")
    orient.append(Rotation.from_matrix(go[0]).as_rotvec())
    body_pose.append(Rotation.from_matrix(bp).as_rotvec())
    betas.append(np.asarray(smpl["betas"], np.float64).reshape(-1))
    cam = np.asarray(frame["camera"][j], np.float64).reshape(-1)
    if cam.shape != (3,):
      raise ValueError(f"{where}: camera expected a translation [3], found {list(cam.shape)}")
    transl_hmr.append(cam)
    joints3d.append(np.asarray(frame["3d_joints"][j], np.float64).reshape(-1, 3)
                    if len(frame.get("3d_joints", ())) > j else None)
    joints2d.append(np.asarray(frame["2d_joints"][j], np.float64).reshape(-1, 2)
                    if len(frame.get("2d_joints", ())) > j else None)
    bboxes.append(np.asarray(frame["bbox"][j], np.float64).reshape(4)
                  if len(frame.get("bbox", ())) > j else np.full(4, np.nan))
    rles.append(frame["mask"][j] if len(frame.get("mask", ())) > j else None)

  keys = [frames[i][0] for i, _ in rows]
  image_paths = [_image_path(k, frames[i][1], images_dir, root) for k, (i, _) in zip(keys, rows)]
  missing = [p for p in image_paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"{pkl}: {len(missing)} of {len(image_paths)} frame images "
                            f"expected, not found, e.g. {missing[0]} (pass images_dir=)")
  h, w = common.image_size(image_paths[0])
  k_hmr = hmr_intrinsics(h, w)
  k = k_hmr.copy()
  if focal_length is not None:
    k[0, 0] = k[1, 1] = float(focal_length)
  if principal_point is not None:
    k[:2, 2] = principal_point
  transl = np.stack([transl_for_camera(jt, t, k_hmr, k) for jt, t in zip(joints3d, transl_hmr)])
  num = len(rows)
  cameras = Camera(K=np.repeat(k.astype(np.float32)[None], num, 0), world_to_cam=np.repeat(
      np.eye(4, dtype=np.float32)[None], num, 0), width=w, height=h)

  if masks_dir is None and os.path.isdir(os.path.join(root, "masks")):
    masks_dir = os.path.join(root, "masks")
  if masks_dir is not None:
    stems = {os.path.splitext(os.path.basename(p))[0]: p
             for p in common.frame_list(masks_dir, "masks")}
    mask_paths = []
    for p in image_paths:
      stem = os.path.splitext(os.path.basename(p))[0]
      if stem not in stems:
        raise FileNotFoundError(f"{masks_dir}: mask '{stem}.png' expected, not found")
      mask_paths.append(stems[stem])
    masks = common.lazy_frames(mask_paths, io_lib.load_mask, (h, w), "masks")
  else:
    lacking = [key for key, r in zip(keys, rles) if r is None]
    if lacking:
      raise ValueError(f"{pkl}: frame '{lacking[0]}': field 'mask' expected for tid {track_id} "
                       f"(or a masks/ folder), found none in {len(lacking)} frames")
    masks = np.stack([_rle(r, f"{pkl}: frame '{key}'") for key, r in zip(keys, rles)])
    if masks.shape[1:] != (h, w):
      raise ValueError(f"{pkl}: mask expected the image size [{h}, {w}], found "
                       f"{list(masks.shape[1:])}")

  metadata = {"format": "4dhumans", "source": os.path.abspath(pkl), "track_id": track_id,
              "track_choice": "given" if given else "longest track",
              "track_frames": {str(t): c for t, c in sorted(counts.items())},
              "focal_length": float(k[0, 0]), "hmr_focal_length": float(k_hmr[0, 0]),
              "dropped_frames": dropped, "frame_keys": keys,
              "bbox_xywh": np.asarray(bboxes).tolist(),
              "per_frame": ["frame_keys", "bbox_xywh"],
              "world_frame": "the camera frame (OpenCV)"}
  if all(p is not None for p in joints2d) and len({p.shape for p in joints2d}) == 1:
    side = max(h, w)
    offset = np.array([(side - w) // 2, (side - h) // 2], np.float64)
    pix = np.stack(joints2d) * side - offset  # PHALP divides by the padded square's side
    metadata["keypoints_2d"] = pix.tolist()
    metadata["per_frame"].append("keypoints_2d")
    if all(jt is not None and len(jt) == len(pix[0]) for jt in joints3d):
      proj = _project(k, np.stack(joints3d) + transl[:, None])
      metadata["hmr_reprojection_px"] = float(np.max(np.linalg.norm(proj - pix, axis=-1)))
  hmr = body_lib.SMPLParams(betas=np.mean(betas, 0).astype(np.float32),
                            body_pose=np.asarray(body_pose, np.float32),
                            global_orient=np.asarray(orient, np.float32),
                            transl=transl.astype(np.float32))
  seq = seq_lib.Sequence(
      name=os.path.splitext(os.path.basename(pkl))[0],
      images=common.lazy_frames(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=masks, depth=None, depth_kind=None, cameras=cameras, hmr=hmr, gt=None, fps=fps,
      metadata=metadata)
  return common.finish(seq, pkl, None, 0, None)
