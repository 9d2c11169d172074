"""4D-Humans / HMR 2.0 (PHALP tracking pickle)."""

from __future__ import annotations

import os

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


def load_4dhumans(path: str, *, images_dir: str | None = None, masks_dir: str | None = None,
                  track_id: int | None = None, focal_length: float | None = None,
                  principal_point: tuple[float, float] | None = None,
                  fps: float = 30.0) -> seq_lib.Sequence:
  """Imports the per-frame output of 4D-Humans / HMR 2.0 tracking (a PHALP pickle).

  Assumed layout (``path`` is the ``.pkl`` or a folder holding one ``.pkl``, ``images/`` and
  optionally ``masks/``): the pickle is a dict ``frame_path -> frame`` where ``frame`` has
  lists, one entry per detected person, ``tracked_ids``, ``smpl`` (dicts with
  ``global_orient [1, 3, 3]``, ``body_pose [23, 3, 3]`` rotation matrices and ``betas [10]``),
  ``camera`` (the translation ``[3]`` of the person in the full-image OpenCV camera frame,
  4D-Humans' ``pred_cam_t_full``) and optionally ``mask`` (COCO RLE). The frame image is
  ``images/<basename of frame_path>``.

  Conventions: the world frame is the (static) camera frame, so ``world_to_cam = I``; the
  SMPL parameters are camera-frame outputs, ``transl = camera``. The focal length is
  4D-Humans' ``5000 / 256 · max(H, W)`` unless ``focal_length`` is given; the principal point is
  the image centre unless ``principal_point`` ``(cx, cy)`` is given (pass
  ``(max(H, W) / 2,) * 2`` if your pipeline padded frames to a square at the top-left). Frames in which the chosen track (default: the id seen in most frames)
  is missing are dropped and listed in ``metadata["dropped_frames"]``. Betas are averaged over
  the frames (one shape per sequence). There is no depth and no ground truth.
  """
  if os.path.isdir(path):
    pkls = sorted(f for f in os.listdir(path) if f.endswith(".pkl"))
    if len(pkls) != 1:
      raise ValueError(f"{path}: expected exactly one PHALP .pkl, found {pkls}")
    root, pkl = path, os.path.join(path, pkls[0])
  else:
    root, pkl = os.path.dirname(path), path
  images_dir = images_dir or os.path.join(root, "images")
  if masks_dir is None and os.path.isdir(os.path.join(root, "masks")):
    masks_dir = os.path.join(root, "masks")
  data = common.read_pickle(pkl)
  if not isinstance(data, dict) or not data:
    raise ValueError(f"{pkl}: expected a non-empty dict frame_path -> frame data, found "
                     f"{type(data).__name__}")
  frames = sorted(data, key=lambda k: os.path.basename(str(k)))
  if track_id is None:
    ids, counts = np.unique(np.concatenate([np.asarray(data[f].get("tracked_ids", []), int)
                                            for f in frames]), return_counts=True)
    if len(ids) == 0:
      raise ValueError(f"{pkl}: no tracked person in any frame ('tracked_ids' all empty)")
    track_id = int(ids[np.argmax(counts)])
  kept, dropped, rows = [], [], []
  for f in frames:
    entry = data[f]
    for key in ("tracked_ids", "smpl", "camera"):
      if key not in entry:
        raise ValueError(f"{pkl}: frame '{f}' has no field '{key}'; found {sorted(entry)}")
    ids = [int(i) for i in entry["tracked_ids"]]
    if track_id not in ids:
      dropped.append(str(f))
      continue
    kept.append(str(f))
    rows.append((entry, ids.index(track_id)))
  if not kept:
    raise ValueError(f"{pkl}: track {track_id} appears in no frame")

  orient, body_pose, betas, transl, rles = [], [], [], [], []
  for (entry, j), f in zip(rows, kept):
    smpl = entry["smpl"][j]
    go = np.asarray(smpl["global_orient"], np.float64).reshape(-1, 3, 3)
    bp = np.asarray(smpl["body_pose"], np.float64)
    if bp.shape != (23, 3, 3) or go.shape != (1, 3, 3):
      raise ValueError(f"{pkl}: frame '{f}': smpl body_pose must be [23, 3, 3] and "
                       f"global_orient [1, 3, 3] rotation matrices, found {list(bp.shape)} and "
                       f"{list(go.shape)}")
    orient.append(Rotation.from_matrix(go[0]).as_rotvec())
    body_pose.append(Rotation.from_matrix(bp).as_rotvec())
    betas.append(np.asarray(smpl["betas"], np.float64).reshape(-1))
    transl.append(np.asarray(entry["camera"][j], np.float64).reshape(3))
    rles.append(entry["mask"][j] if "mask" in entry and len(entry["mask"]) > j else None)

  image_paths = [os.path.join(images_dir, os.path.basename(f)) for f in kept]
  missing = [p for p in image_paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"{images_dir}: {len(missing)} frame images missing, e.g. "
                            f"{missing[0]}")
  h, w = common.image_size(image_paths[0])
  focal = focal_length if focal_length is not None else 5000.0 / 256.0 * max(h, w)
  num = len(kept)
  cx, cy = principal_point if principal_point is not None else (w / 2.0, h / 2.0)
  k = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]], np.float32)
  cameras = Camera(K=np.repeat(k[None], num, 0), world_to_cam=np.repeat(
      np.eye(4, dtype=np.float32)[None], num, 0), width=w, height=h)
  if masks_dir is not None:
    stems = {os.path.splitext(os.path.basename(p))[0]: p for p in common.frame_list(masks_dir,
                                                                               "masks")}
    mask_paths = []
    for p in image_paths:
      stem = os.path.splitext(os.path.basename(p))[0]
      if stem not in stems:
        raise FileNotFoundError(f"{masks_dir}: no mask for frame '{stem}'")
      mask_paths.append(stems[stem])
    masks = common.lazy_frames(mask_paths, io_lib.load_mask, (h, w), "masks")
  elif all(r is not None for r in rles):
    masks = np.stack([decode_coco_rle(r) for r in rles])
    if masks.shape[1:] != (h, w):
      raise ValueError(f"{pkl}: PHALP masks are {list(masks.shape[1:])}, images are [{h}, {w}]")
  else:
    raise ValueError(f"{root}: no masks/ folder and the PHALP pickle has no 'mask' for every "
                     "frame of the track")
  hmr = body_lib.SMPLParams(betas=np.mean(betas, 0).astype(np.float32),
                            body_pose=np.asarray(body_pose, np.float32),
                            global_orient=np.asarray(orient, np.float32),
                            transl=np.asarray(transl, np.float32))
  seq = seq_lib.Sequence(
      name=os.path.splitext(os.path.basename(pkl))[0],
      images=common.lazy_frames(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=masks, depth=None, depth_kind=None, cameras=cameras, hmr=hmr, gt=None, fps=fps,
      metadata={"format": "4dhumans", "source": os.path.abspath(pkl), "track_id": track_id,
                "focal_length": focal, "dropped_frames": dropped,
                "world_frame": "the camera frame (OpenCV)"})
  return common.finish(seq, pkl, None, 0, None)
