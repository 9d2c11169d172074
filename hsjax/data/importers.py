"""Importers for real capture layouts: 4D-Humans (PHALP), NeuMan, PeopleSnapshot, ZJU-MoCap.

Each importer converts at the edge to hsjax conventions (OpenCV cameras, SMPL parameters in
the world frame of the cameras, axis-angle, metres) and returns a validated
:class:`~hsjax.data.Sequence` whose frames load lazily. The exact layouts assumed are in
``hsjax/data/README.md``; every assumption about a format is also stated in the function's
docstring. Pickles are read with a restricted unpickler that accepts only numpy arrays and
plain Python containers (:mod:`hsjax.smpl_pickle`); joblib-compressed files are refused
with a message.

Re-rooting ``Rh`` / alignment rotations: several formats rotate the *posed* SMPL mesh about
the origin (``v = R · SMPL(θ, β) + t``), while SMPL's ``global_orient`` rotates about the
pelvis joint ``J0(β)``. They are equal with ``global_orient = R · R_root`` and
``transl = R · J0 + t - J0``, which needs the rest pelvis of the body model that produced the
parameters (``body_model``; default: the embedded default body, so pass the SMPL model the
data was fitted with for exactness).
"""

from __future__ import annotations

import io
import os

import numpy as np
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax import smpl_pickle
from hsjax.camera import Camera
from hsjax.data import hmr_noise as noise_lib
from hsjax.data import io as io_lib
from hsjax.data import sequence as seq_lib

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


# ------------------------------------------------------------------------------------------
# Shared helpers


def read_pickle(path: str):
  """A pickle of numpy arrays and containers, read without running code."""
  with open(path, "rb") as f:
    data = f.read()
  if b"joblib.numpy_pickle" in data[:4096] or b"NumpyArrayWrapper" in data:
    raise ValueError(f"{path}: a joblib-format pickle; hsjax reads plain pickles only "
                     "(convert with `pickle.dump(joblib.load(path), f)` in a trusted session)")
  try:
    return smpl_pickle.restricted_loads(data, source=path)
  except smpl_pickle.UnsafePickleError as e:
    raise ValueError(f"{path}: refusing to unpickle: {e}") from e


def read_npy_object(path: str):
  """An ``.npy`` holding a pickled object (e.g. a dict), read without running code."""
  with open(path, "rb") as f:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    dtype = read_header(f)[2]
    if dtype != object:
      f.seek(0)
      return np.load(f, allow_pickle=False)
    obj = smpl_pickle.restricted_loads(f.read(), source=path)
  return obj.item() if isinstance(obj, np.ndarray) and obj.ndim == 0 else obj


def _frame_list(folder: str, field: str, exts=_IMAGE_EXTS) -> list[str]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{folder}: {field} folder not found")
  files = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in exts)
  if not files:
    raise ValueError(f"{folder}: no {field} files ({'/'.join(exts)})")
  return [os.path.join(folder, f) for f in files]


def _image_size(path: str) -> tuple[int, int]:
  img = io_lib.load_image(path)
  return img.shape[0], img.shape[1]


def _rest_pelvis(model: body_lib.BodyModel, betas: np.ndarray) -> np.ndarray:
  betas = np.asarray(betas, np.float64)
  if betas.shape[0] < model.num_betas:
    betas = np.concatenate([betas, np.zeros(model.num_betas - betas.shape[0])])
  shaped = (np.asarray(model.v_template, np.float64)
            + np.asarray(model.shapedirs, np.float64) @ betas[:model.num_betas])
  return np.asarray(model.J_regressor, np.float64)[0] @ shaped


def _fit_betas(betas: np.ndarray, model: body_lib.BodyModel, source: str) -> np.ndarray:
  """Pads with zeros or truncates to the model's number of shape components."""
  betas = np.asarray(betas, np.float32).reshape(-1)
  b = model.num_betas
  return np.concatenate([betas, np.zeros(max(0, b - len(betas)), np.float32)])[:b]


def reroot(rot_world: np.ndarray, t_world: np.ndarray, root_orient: np.ndarray,
           pelvis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """SMPL ``(global_orient, transl)`` of ``v = R · SMPL(root_orient, transl=0) + t``.

  Args:
    rot_world: [T, 3, 3] rotation applied to the posed mesh about the origin.
    t_world: [T, 3] translation added afterwards.
    root_orient: [T, 3] SMPL root axis-angle inside the mesh.
    pelvis: [3] rest pelvis joint ``J0(β)``.
  """
  orient = Rotation.from_matrix(rot_world) * Rotation.from_rotvec(root_orient)
  transl = np.einsum("tij,j->ti", rot_world, pelvis) + t_world - pelvis
  return orient.as_rotvec().astype(np.float32), transl.astype(np.float32)


def _finish(seq: seq_lib.Sequence, source: str, hmr_noise, seed: int, model) -> seq_lib.Sequence:
  """Optionally replaces hmr by simulated HMR noise on the (pseudo-)GT, then validates."""
  if hmr_noise is not None:
    if seq.gt is None:
      raise ValueError(f"{source}: hmr_noise needs ground-truth parameters to corrupt")
    seq.hmr = noise_lib.simulate_hmr(seq.gt, seq.cameras, hmr_noise, seed=seed, fps=seq.fps,
                                     model=model)
    seq.metadata["hmr"] = f"simulated from the fitted SMPL with preset {hmr_noise!r}, seed {seed}"
  seq = seq_lib.validate_sequence(seq, source)
  if np.asarray(seq.masks[0]).max() <= 0:
    where = seq.masks.paths[0] if isinstance(seq.masks, seq_lib.LazyFrames) else source
    raise ValueError(f"{where}: field 'masks' frame 0 is empty (no person pixel)")
  return seq


def _lazy(paths, loader, shape, field):
  return seq_lib.LazyFrames(paths, loader, shape, field=field)


def _model(body_model):
  return body_model if body_model is not None else body_lib.load_body_model("default")


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
  data = read_pickle(pkl)
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
  h, w = _image_size(image_paths[0])
  focal = focal_length if focal_length is not None else 5000.0 / 256.0 * max(h, w)
  num = len(kept)
  cx, cy = principal_point if principal_point is not None else (w / 2.0, h / 2.0)
  k = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]], np.float32)
  cameras = Camera(K=np.repeat(k[None], num, 0), world_to_cam=np.repeat(
      np.eye(4, dtype=np.float32)[None], num, 0), width=w, height=h)
  if masks_dir is not None:
    stems = {os.path.splitext(os.path.basename(p))[0]: p for p in _frame_list(masks_dir,
                                                                               "masks")}
    mask_paths = []
    for p in image_paths:
      stem = os.path.splitext(os.path.basename(p))[0]
      if stem not in stems:
        raise FileNotFoundError(f"{masks_dir}: no mask for frame '{stem}'")
      mask_paths.append(stems[stem])
    masks = _lazy(mask_paths, io_lib.load_mask, (h, w), "masks")
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
      images=_lazy(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=masks, depth=None, depth_kind=None, cameras=cameras, hmr=hmr, gt=None, fps=fps,
      metadata={"format": "4dhumans", "source": os.path.abspath(pkl), "track_id": track_id,
                "focal_length": focal, "dropped_frames": dropped,
                "world_frame": "the camera frame (OpenCV)"})
  return _finish(seq, pkl, None, 0, None)


# ------------------------------------------------------------------------------------------
# NeuMan


def _read_colmap_cameras(path: str) -> dict[int, tuple[int, int, np.ndarray]]:
  cams = {}
  with open(path) as f:
    for line in f:
      if not line.strip() or line.startswith("#"):
        continue
      parts = line.split()
      cam_id, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
      p = [float(x) for x in parts[4:]]
      if model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
      elif model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1:3]
      else:
        raise ValueError(f"{path}: camera {cam_id} has model {model}; expected PINHOLE or "
                         "SIMPLE_PINHOLE (undistorted images)")
      # COLMAP's pixel centres are at +0.5 like hsjax's: K carries over unchanged.
      cams[cam_id] = (w, h, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64))
  return cams


def _read_colmap_images(path: str) -> dict[str, tuple[int, np.ndarray]]:
  """image name -> (camera id, world_to_cam [4, 4]); COLMAP stores qw qx qy qz tx ty tz."""
  out = {}
  with open(path) as f:
    lines = [ln for ln in f if ln.strip() and not ln.startswith("#")]
  for line in lines:
    parts = line.split()
    if len(parts) < 10 or not parts[0].isdigit():
      continue  # the 2D-point lines that follow each image line
    try:
      q = [float(x) for x in parts[1:5]]
      t = [float(x) for x in parts[5:8]]
      cam_id = int(parts[8])
    except ValueError:
      continue
    w2c = np.eye(4)
    w2c[:3, :3] = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
    w2c[:3, 3] = t
    out[parts[9]] = (cam_id, w2c)
  return out


def load_neuman(path: str, *, body_model: body_lib.BodyModel | None = None,
                fps: float = 30.0) -> seq_lib.Sequence:
  """Imports a NeuMan scene (as released, also read by HUGS).

  Assumed layout: ``images/<name>.png``; ``segmentations/<name>.png`` with **0 = person,
  255 = background**; ``sparse/cameras.txt`` and ``sparse/images.txt`` (COLMAP text,
  PINHOLE, world-to-camera quaternions w x y z); ``smpl_output_optimized.pkl`` = a dict with
  one person ``{id: {"pose": [T x (72,)], "betas": [T x (10,)]}}`` in the order of the sorted
  images; ``alignments.npy`` = a pickled dict ``name -> [4, 3]`` whose transpose is the top
  3x4 of the transform taking the posed SMPL mesh (no translation) into the COLMAP world,
  ``x_w = A[:3]^T x + A[3]``, scale included.

  Conversion: the alignment is split into scale ``s`` (cube root of its determinant) and a
  rotation; the COLMAP world is divided by the median ``s`` so that the world is in metres
  (cameras included), and ``global_orient`` / ``transl`` are re-rooted at the pelvis (module
  docstring). The per-frame scale spread is recorded in ``metadata["alignment_scale"]``.
  NeuMan's depth maps (COLMAP / monocular) are not imported; the SMPL fits are HMR-like
  estimates (``hmr``), there is no ground truth.
  """
  model = _model(body_model)
  image_paths = _frame_list(os.path.join(path, "images"), "images")
  names = [os.path.basename(p) for p in image_paths]
  seg_dir = os.path.join(path, "segmentations")
  mask_paths = [os.path.join(seg_dir, n) for n in names]
  missing = [p for p in mask_paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"{seg_dir}: {len(missing)} segmentations missing, e.g. {missing[0]}")
  cams = _read_colmap_cameras(os.path.join(path, "sparse", "cameras.txt"))
  imgs = _read_colmap_images(os.path.join(path, "sparse", "images.txt"))
  smpl_path = os.path.join(path, "smpl_output_optimized.pkl")
  smpl = read_pickle(smpl_path)
  if not isinstance(smpl, dict) or len(smpl) != 1:
    raise ValueError(f"{smpl_path}: expected a dict with one person, found "
                     f"{type(smpl).__name__} with {len(smpl) if isinstance(smpl, dict) else 0}")
  person = next(iter(smpl.values()))
  poses = np.asarray(person["pose"], np.float64)
  betas = np.asarray(person["betas"], np.float64).reshape(len(person["betas"]), -1)
  if poses.shape != (len(names), 72):
    raise ValueError(f"{smpl_path}: field 'pose' must be [{len(names)}, 72] (one per image), "
                     f"found {list(poses.shape)}")
  align_path = os.path.join(path, "alignments.npy")
  alignments = read_npy_object(align_path)
  k_all, w2c_all, rots, ts, scales = [], [], [], [], []
  size = None
  for n in names:
    if n not in imgs:
      raise ValueError(f"{path}/sparse/images.txt: no camera for image '{n}'")
    if n not in alignments:
      raise ValueError(f"{align_path}: no alignment for image '{n}'")
    cam_id, w2c = imgs[n]
    w, h, k = cams[cam_id]
    if size is not None and size != (w, h):
      raise ValueError(f"{path}/sparse/cameras.txt: image sizes differ ({size} vs {(w, h)})")
    size = (w, h)
    a = np.asarray(alignments[n], np.float64)
    if a.shape != (4, 3):
      raise ValueError(f"{align_path}: alignment of '{n}' must be [4, 3], found {list(a.shape)}")
    m = a[:3].T
    s = np.cbrt(np.linalg.det(m))
    u, _, vt = np.linalg.svd(m / s)
    rots.append(u @ vt)
    ts.append(a[3])
    scales.append(s)
    k_all.append(k)
    w2c_all.append(w2c)
  scale = float(np.median(scales))
  w2c_all = np.asarray(w2c_all)
  w2c_all[:, :3, 3] /= scale  # world and camera frames in metres
  mean_betas = _fit_betas(betas.mean(0), model, smpl_path)
  pelvis = _rest_pelvis(model, mean_betas)
  orient, transl = reroot(np.asarray(rots), np.asarray(ts) / scale, poses[:, :3], pelvis)
  w, h = size
  hmr = body_lib.SMPLParams(betas=mean_betas, body_pose=poses[:, 3:].reshape(-1, 23, 3)
                            .astype(np.float32), global_orient=orient, transl=transl)
  seq = seq_lib.Sequence(
      name=os.path.basename(os.path.normpath(path)),
      images=_lazy(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=_lazy(mask_paths, lambda p: 1.0 - io_lib.load_mask(p), (h, w), "masks"),
      depth=None, depth_kind=None,
      cameras=Camera(K=np.asarray(k_all, np.float32), world_to_cam=w2c_all.astype(np.float32),
                     width=w, height=h),
      hmr=hmr, gt=None, fps=fps,
      metadata={"format": "neuman", "source": os.path.abspath(path),
                "alignment_scale": {"median": scale, "min": float(np.min(scales)),
                                    "max": float(np.max(scales))},
                "world_frame": "COLMAP world divided by the median alignment scale (metres)"})
  return _finish(seq, path, None, 0, model)


# ------------------------------------------------------------------------------------------
# PeopleSnapshot (InstantAvatar / GART preprocessing)


def load_peoplesnapshot(path: str, *, split: str = "train", frames: slice | None = None,
                        body_model: body_lib.BodyModel | None = None, hmr_noise=None,
                        seed: int = 0, fps: float = 30.0) -> seq_lib.Sequence:
  """Imports a PeopleSnapshot subject as preprocessed by InstantAvatar (used by GART).

  Assumed layout: ``images/*.png``; ``masks/*.npy`` (``[H, W]``, person > 0.5; ``*.png``
  also read); ``cameras.npz`` with ``intrinsic [3, 3]``, ``extrinsic [4, 4]`` (world to
  camera, OpenCV), ``height``, ``width``; ``poses/anim_nerf_<split>.npz`` (the Anim-NeRF
  refined fits; ``poses/<split>.npz`` also accepted) with ``betas [1, 10]`` or ``[10]``,
  ``global_orient [T, 3]``, ``body_pose [T, 69]``, ``transl [T, 3]`` in that world frame.
  The poses of a split cover the images ``frames`` (a slice, e.g. InstantAvatar's
  ``slice(0, 456, 4)``); without ``frames`` the image count must equal T.

  The refined fits are the standard pseudo ground truth: they become ``gt`` and ``hmr``
  (``hmr_noise``, a preset name, replaces ``hmr`` by simulated HMR errors, seeded).
  """
  model = _model(body_model)
  image_paths = _frame_list(os.path.join(path, "images"), "images")
  mask_paths = _frame_list(os.path.join(path, "masks"), "masks", (".npy", ".png"))
  if len(mask_paths) != len(image_paths):
    raise ValueError(f"{path}/masks: {len(mask_paths)} masks for {len(image_paths)} images")
  pose_path = os.path.join(path, "poses", f"anim_nerf_{split}.npz")
  if not os.path.exists(pose_path):
    pose_path = os.path.join(path, "poses", f"{split}.npz")
  if not os.path.exists(pose_path):
    raise FileNotFoundError(f"{path}/poses: neither anim_nerf_{split}.npz nor {split}.npz")
  with np.load(pose_path, allow_pickle=False) as f:
    p = {k: f[k] for k in f.files}
  for key in ("betas", "global_orient", "body_pose", "transl"):
    if key not in p:
      raise ValueError(f"{pose_path}: missing field '{key}'; found {sorted(p)}")
  num = p["body_pose"].shape[0]
  if frames is not None:
    image_paths, mask_paths = image_paths[frames], mask_paths[frames]
  if len(image_paths) != num:
    raise ValueError(f"{pose_path}: {num} poses but {len(image_paths)} images selected; pass "
                     "frames=slice(start, stop, step) matching the split")
  body_pose = np.asarray(p["body_pose"], np.float32)
  if body_pose.shape != (num, 69):
    raise ValueError(f"{pose_path}: field 'body_pose' must be [T, 69] axis-angle, found "
                     f"{list(body_pose.shape)}")
  with np.load(os.path.join(path, "cameras.npz"), allow_pickle=False) as f:
    cam = {k: f[k] for k in f.files}
  h, w = int(cam["height"]), int(cam["width"])
  gt = body_lib.SMPLParams(betas=_fit_betas(p["betas"], model, pose_path),
                           body_pose=body_pose.reshape(num, 23, 3),
                           global_orient=np.asarray(p["global_orient"], np.float32),
                           transl=np.asarray(p["transl"], np.float32))

  def load_mask(q):
    return (np.load(q, allow_pickle=False).astype(np.float32) if q.endswith(".npy")
            else io_lib.load_mask(q))

  seq = seq_lib.Sequence(
      name=os.path.basename(os.path.normpath(path)),
      images=_lazy(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=_lazy(mask_paths, load_mask, (h, w), "masks"), depth=None, depth_kind=None,
      cameras=Camera(K=np.repeat(np.asarray(cam["intrinsic"], np.float32)[None], num, 0),
                     world_to_cam=np.repeat(np.asarray(cam["extrinsic"], np.float32)[None], num,
                                            0), width=w, height=h),
      hmr=gt, gt=gt, fps=fps,
      metadata={"format": "peoplesnapshot", "source": os.path.abspath(path), "split": split,
                "hmr": "the refined fits (pseudo ground truth)"})
  return _finish(seq, path, hmr_noise, seed, model)


# ------------------------------------------------------------------------------------------
# ZJU-MoCap (Neural Body layout)


def load_zju(path: str, *, camera: int = 0, eval_cameras: list[int] | None = None,
             frames: slice | None = None, body_model: body_lib.BodyModel | None = None,
             hmr_noise=None, seed: int = 0, fps: float = 50.0) -> seq_lib.Sequence:
  """Imports a ZJU-MoCap sequence in the Neural Body layout.

  Assumed layout: ``annots.npy`` = a pickled dict with ``cams`` (``K``, ``R`` lists of
  ``[3, 3]``, ``T`` list of ``[3, 1]`` in **millimetres**, ``D`` distortion, one per camera;
  world to camera ``x_c = R x + T / 1000``) and ``ims`` (one dict per frame with ``ims``, the
  image path of every camera relative to ``path``); masks at ``mask_cihp/<image path>.png``
  (else ``mask/``; person where > 0, CIHP part labels); SMPL fits at
  ``new_params/<i>.npy`` (else ``params/``) for frame ``i`` = the image file's number, each
  a pickled dict with ``poses [1, 72]``, ``Rh [1, 3]``, ``Th [1, 3]``, ``shapes [1, 10]``
  (EasyMocap: ``v = R(Rh) · SMPL(poses, shapes) + Th``, re-rooted at the pelvis here).

  ``camera`` is the training view (index into the camera lists); ``eval_cameras`` (default:
  every other camera) become ``eval_views``. Distortion ``D`` is not applied (images are used
  as stored; ZJU's is small) and is recorded in ``metadata["distortion"]``. The multi-view
  fits become ``gt`` and ``hmr`` (``hmr_noise`` simulates HMR errors instead).
  """
  model = _model(body_model)
  annots_path = os.path.join(path, "annots.npy")
  annots = read_npy_object(annots_path)
  if not isinstance(annots, dict) or "cams" not in annots or "ims" not in annots:
    raise ValueError(f"{annots_path}: expected a dict with 'cams' and 'ims'")
  cams = annots["cams"]
  num_cams = len(cams["K"])
  if not 0 <= camera < num_cams:
    raise ValueError(f"{annots_path}: camera {camera} out of range; {num_cams} cameras")
  ims = annots["ims"]
  if frames is not None:
    ims = ims[frames]
  if eval_cameras is None:
    eval_cameras = [c for c in range(num_cams) if c != camera]
  params_dir = os.path.join(path, "new_params")
  if not os.path.isdir(params_dir):
    params_dir = os.path.join(path, "params")
  mask_root = os.path.join(path, "mask_cihp")
  if not os.path.isdir(mask_root):
    mask_root = os.path.join(path, "mask")

  def frame_index(rel: str) -> int:
    stem = os.path.splitext(os.path.basename(rel))[0]
    if not stem.isdigit():
      raise ValueError(f"{annots_path}: image '{rel}' has no frame number")
    return int(stem)

  poses, rh, th, shapes = [], [], [], []
  for entry in ims:
    i = frame_index(entry["ims"][camera])
    ppath = os.path.join(params_dir, f"{i}.npy")
    if not os.path.exists(ppath):
      raise FileNotFoundError(f"{params_dir}: no SMPL parameters for frame {i} ({ppath})")
    prm = read_npy_object(ppath)
    for key, store, n in (("poses", poses, 72), ("Rh", rh, 3), ("Th", th, 3),
                          ("shapes", shapes, None)):
      if key not in prm:
        raise ValueError(f"{ppath}: missing field '{key}'; found {sorted(prm)}")
      v = np.asarray(prm[key], np.float64).reshape(-1)
      if n is not None and v.shape != (n,):
        raise ValueError(f"{ppath}: field '{key}' must have {n} values, found {v.size}")
      store.append(v)
  poses, rh, th = np.asarray(poses), np.asarray(rh), np.asarray(th)
  betas = _fit_betas(np.mean(shapes, 0), model, params_dir)
  orient, transl = reroot(Rotation.from_rotvec(rh).as_matrix(), th, poses[:, :3],
                          _rest_pelvis(model, betas))
  gt = body_lib.SMPLParams(betas=betas, body_pose=poses[:, 3:].reshape(-1, 23, 3)
                           .astype(np.float32), global_orient=orient, transl=transl)
  num = len(ims)

  def view(c: int, hmr) -> seq_lib.Sequence:
    rel = [entry["ims"][c] for entry in ims]
    image_paths = [os.path.join(path, r) for r in rel]
    mask_paths = [os.path.join(mask_root, os.path.splitext(r)[0] + ".png") for r in rel]
    for p in (image_paths[0], mask_paths[0]):
      if not os.path.exists(p):
        raise FileNotFoundError(f"{path}: camera {c}: file not found: {p}")
    h, w = _image_size(image_paths[0])
    w2c = np.eye(4)
    w2c[:3, :3] = np.asarray(cams["R"][c], np.float64)
    w2c[:3, 3] = np.asarray(cams["T"][c], np.float64).reshape(3) / 1000.0
    k = np.asarray(cams["K"][c], np.float32)
    return seq_lib.Sequence(
        name=f"{os.path.basename(os.path.normpath(path))}/camera{c}",
        images=_lazy(image_paths, io_lib.load_image, (h, w, 3), "images"),
        masks=_lazy(mask_paths, lambda q: (io_lib.load_mask(q) > 0).astype(np.float32),
                    (h, w), "masks"),
        depth=None, depth_kind=None,
        cameras=Camera(K=np.repeat(k[None], num, 0), world_to_cam=np.repeat(
            w2c.astype(np.float32)[None], num, 0), width=w, height=h),
        hmr=hmr, gt=gt, fps=fps, metadata={"camera": c})

  seq = view(camera, gt)
  seq.name = os.path.basename(os.path.normpath(path))
  seq.metadata = {"format": "zju", "source": os.path.abspath(path), "camera": camera,
                  "eval_cameras": list(eval_cameras),
                  "distortion": [np.asarray(d, float).reshape(-1).tolist()
                                 for d in cams.get("D", [])],
                  "hmr": "the multi-view fits (pseudo ground truth)"}
  seq = _finish(seq, path, hmr_noise, seed, model)
  seq.eval_views = [seq_lib.validate_sequence(view(c, seq.hmr), f"{path} camera {c}")
                    for c in eval_cameras]
  for v in seq.eval_views:
    v.hmr, v.gt = seq.hmr, seq.gt
  return seq


IMPORTERS = {
    "4dhumans": load_4dhumans,
    "neuman": load_neuman,
    "peoplesnapshot": load_peoplesnapshot,
    "zju": load_zju,
}
