"""NeuMan (Jiang et al. 2022): COLMAP reconstruction + aligned SMPL fits."""

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


def _load_segmentation(p: str) -> np.ndarray:
  """NeuMan's segmentation (0 = person, 255 = background; ``.npy`` or image) -> person mask."""
  seg = np.load(p, allow_pickle=False) if p.endswith(".npy") else io_lib.load_mask(p) * 255.0
  seg = np.asarray(seg, np.float32)
  return (seg.reshape(seg.shape[:2]) < 254.5).astype(np.float32)  # as NeuMan: != 255


def load_neuman(path: str, *, body_model: body_lib.BodyModel | None = None,
                fps: float = 30.0) -> seq_lib.Sequence:
  """Imports a NeuMan scene (as released, also read by HUGS).

  Layout, as apple/ml-neuman writes and reads it (``preprocess/optimize_smpl.py``,
  ``data_io/neuman_helper.py`` ``NeuManReader``, commit eaa4665): the frames are the images
  registered in ``sparse/images.txt`` (COLMAP text, world-to-camera quaternions w x y z;
  ``sparse/cameras.txt`` PINHOLE or SIMPLE_PINHOLE), sorted by name, at ``images/<name>``;
  ``segmentations/<name>.npy`` or ``segmentations/<name>`` with **0 = person,
  255 = background**; ``smpl_output_optimized.pkl`` written by
  ``joblib.dump({1: {"pose": [N x (72,)], "betas": [N x (10,)]}}, path)`` (one person), the
  lists indexed by the **frame number in the image name** (``int(name[:-4])``), not by the
  position among registered images; ``alignments.npy`` = ``np.save`` of a dict
  ``name -> A [4, 3]``: NeuMan builds the 4x4 ``M`` with ``M[:, :3] = A``,
  ``M[:, 3] = (0, 0, 0, 1)`` and maps the posed SMPL mesh (``transl = 0``) into the COLMAP
  world with ``Mᵀ``: ``x_w = A[:3]ᵀ x + A[3]``, scale included (``read_scene`` with
  ``normalize=False``, scale 1).

  Conversion: the alignment is split into scale ``s`` (cube root of its determinant) and a
  rotation; the COLMAP world is divided by the median ``s`` so that the world is in metres
  (cameras included), and ``global_orient`` / ``transl`` are re-rooted at the pelvis (module
  docstring). The per-frame scale spread is recorded in ``metadata["alignment_scale"]``.
  NeuMan's depth maps (COLMAP / monocular) are not imported; the SMPL fits are HMR-like
  estimates (``hmr``), there is no ground truth.
  """
  model = common.body_model_or_default(body_model)
  common.require_files(path, ("images", "segmentations", "sparse/cameras.txt",
                              "sparse/images.txt", "smpl_output_optimized.pkl",
                              "alignments.npy"), "a NeuMan scene")
  cams = _read_colmap_cameras(os.path.join(path, "sparse", "cameras.txt"))
  imgs = _read_colmap_images(os.path.join(path, "sparse", "images.txt"))
  names = sorted(imgs)
  if not names:
    raise ValueError(f"{path}/sparse/images.txt: no registered image")
  image_paths = [os.path.join(path, "images", n) for n in names]
  seg_dir = os.path.join(path, "segmentations")
  mask_paths = [os.path.join(seg_dir, n + ".npy") if os.path.exists(
      os.path.join(seg_dir, n + ".npy")) else os.path.join(seg_dir, n) for n in names]
  missing = [p for p in image_paths + mask_paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"{path}: {len(missing)} images / segmentations of the images "
                            f"registered in sparse/images.txt not found, e.g. {missing[0]}")
  frame_ids = []
  for n in names:
    stem = os.path.splitext(n)[0]
    if not stem.isdigit():
      raise ValueError(f"{path}/sparse/images.txt: image '{n}' expected a numeric frame name "
                       "(NeuMan indexes the SMPL fits by it)")
    frame_ids.append(int(stem))
  smpl_path = os.path.join(path, "smpl_output_optimized.pkl")
  smpl = common.read_pickle(smpl_path)
  if not isinstance(smpl, dict) or len(smpl) != 1:
    raise ValueError(f"{smpl_path}: expected a dict with one person, found "
                     f"{type(smpl).__name__} with {len(smpl) if isinstance(smpl, dict) else 0}")
  person = next(iter(smpl.values()))
  if not isinstance(person, dict) or not {"pose", "betas"} <= set(person):
    raise ValueError(f"{smpl_path}: expected {{id: {{'pose': [...], 'betas': [...]}}}}, found "
                     f"{sorted(person) if isinstance(person, dict) else type(person).__name__}")
  all_poses = np.asarray(person["pose"], np.float64).reshape(len(person["pose"]), -1)
  all_betas = np.asarray(person["betas"], np.float64).reshape(len(person["betas"]), -1)
  if all_poses.shape[1] != 72 or max(frame_ids) >= min(len(all_poses), len(all_betas)):
    raise ValueError(f"{smpl_path}: field 'pose' expected [N, 72] with N > {max(frame_ids)} "
                     f"(the largest frame number), found {list(all_poses.shape)} and "
                     f"{len(all_betas)} betas")
  poses, betas = all_poses[frame_ids], all_betas[frame_ids]
  align_path = os.path.join(path, "alignments.npy")
  alignments = common.read_npy_object(align_path)
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
  mean_betas = common.fit_betas(betas.mean(0), model, smpl_path)
  pelvis = common.rest_pelvis(model, mean_betas)
  orient, transl = common.reroot(np.asarray(rots), np.asarray(ts) / scale, poses[:, :3], pelvis)
  w, h = size
  hmr = body_lib.SMPLParams(betas=mean_betas, body_pose=poses[:, 3:].reshape(-1, 23, 3)
                            .astype(np.float32), global_orient=orient, transl=transl)
  seq = seq_lib.Sequence(
      name=os.path.basename(os.path.normpath(path)),
      images=common.lazy_frames(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=common.lazy_frames(mask_paths, _load_segmentation, (h, w), "masks"),
      depth=None, depth_kind=None,
      cameras=Camera(K=np.asarray(k_all, np.float32), world_to_cam=w2c_all.astype(np.float32),
                     width=w, height=h),
      hmr=hmr, gt=None, fps=fps,
      metadata={"format": "neuman", "source": os.path.abspath(path), "frame_ids": frame_ids,
                "per_frame": ["frame_ids"],
                "alignment_scale": {"median": scale, "min": float(np.min(scales)),
                                    "max": float(np.max(scales))},
                "world_frame": "COLMAP world divided by the median alignment scale (metres)"})
  return common.finish(seq, path, None, 0, model)
