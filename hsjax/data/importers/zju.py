"""ZJU-MoCap in the Neural Body layout."""

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
# Splits

# The monocular protocol on the Neural Body layout as GauHuman defines it
# (``readZJUMoCapRefineInfo`` / ``readCamerasZJUMoCapRefine`` in ``scene/dataset_readers.py``,
# skhu101/GauHuman at commit 72ea938156422e2cb5dba4091656f0378102aaf1): train on camera index
# 4, frames ``annots['ims'][0:500:5]`` (100 frames); test on the 22 other cameras, frames
# ``annots['ims'][0:510:30]`` (17 frames). Frames index ``annots['ims']``, not file names.
SPLITS: dict[str, dict] = {
    "train": {"camera": 4, "frames": slice(0, 500, 5), "eval_cameras": "none"},
    "test": {"camera": 4, "frames": slice(0, 510, 30), "eval_cameras": "others"},
}


# ------------------------------------------------------------------------------------------
# ZJU-MoCap (Neural Body layout)


def load_zju(path: str, *, camera: int = 0, eval_cameras: list[int] | None = None,
             frames: slice | None = None, split: str | None = None,
             body_model: body_lib.BodyModel | None = None,
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
  every other camera) become ``eval_views``. ``split`` (``"train"`` or ``"test"``) instead
  takes camera, frames and evaluation cameras from the published protocol (:data:`SPLITS`:
  train has no evaluation views, test has every other camera); it cannot be combined with
  ``camera``, ``frames`` or ``eval_cameras``. Distortion ``D`` is not applied (images are used
  as stored; ZJU's is small) and is recorded in ``metadata["distortion"]``. The multi-view
  fits become ``gt`` and ``hmr`` (``hmr_noise`` simulates HMR errors instead).
  """
  if split is not None:
    if split not in SPLITS:
      raise ValueError(f"ZJU-MoCap split '{split}': expected one of {sorted(SPLITS)}")
    if camera != 0 or frames is not None or eval_cameras is not None:
      raise ValueError(f"ZJU-MoCap split '{split}' fixes the camera, frames and evaluation "
                       "cameras; pass either split= or camera=/frames=/eval_cameras=")
    camera, frames = SPLITS[split]["camera"], SPLITS[split]["frames"]
    eval_cameras = [] if SPLITS[split]["eval_cameras"] == "none" else None
  model = common.body_model_or_default(body_model)
  common.require_files(path, ("annots.npy", ("new_params", "params"), ("mask_cihp", "mask")),
                       "a ZJU-MoCap sequence (Neural Body layout)")
  annots_path = os.path.join(path, "annots.npy")
  annots = common.read_npy_object(annots_path)
  if not isinstance(annots, dict) or "cams" not in annots or "ims" not in annots:
    raise ValueError(f"{annots_path}: expected a dict with 'cams' and 'ims'")
  cams = annots["cams"]
  num_cams = len(cams["K"])
  if not 0 <= camera < num_cams:
    raise ValueError(f"{annots_path}: camera {camera} out of range; {num_cams} cameras")
  ims = annots["ims"]
  if frames is not None:
    ims = ims[frames]
    if split is not None and len(ims) != len(range(*frames.indices(10**9))):
      raise ValueError(f"{annots_path}: split '{split}' needs frames {frames.start}:"
                       f"{frames.stop}:{frames.step} of 'ims', found {len(annots['ims'])} "
                       "frames")
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
    prm = common.read_npy_object(ppath)
    for key, store, n in (("poses", poses, 72), ("Rh", rh, 3), ("Th", th, 3),
                          ("shapes", shapes, None)):
      if key not in prm:
        raise ValueError(f"{ppath}: missing field '{key}'; found {sorted(prm)}")
      v = np.asarray(prm[key], np.float64).reshape(-1)
      if n is not None and v.shape != (n,):
        raise ValueError(f"{ppath}: field '{key}' must have {n} values, found {v.size}")
      store.append(v)
  poses, rh, th = np.asarray(poses), np.asarray(rh), np.asarray(th)
  betas = common.fit_betas(np.mean(shapes, 0), model, params_dir)
  orient, transl = common.reroot(Rotation.from_rotvec(rh).as_matrix(), th, poses[:, :3],
                          common.rest_pelvis(model, betas))
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
    h, w = common.image_size(image_paths[0])
    w2c = np.eye(4)
    w2c[:3, :3] = np.asarray(cams["R"][c], np.float64)
    w2c[:3, 3] = np.asarray(cams["T"][c], np.float64).reshape(3) / 1000.0
    k = np.asarray(cams["K"][c], np.float32)
    return seq_lib.Sequence(
        name=f"{os.path.basename(os.path.normpath(path))}/camera{c}",
        images=common.lazy_frames(image_paths, io_lib.load_image, (h, w, 3), "images"),
        masks=common.lazy_frames(mask_paths, io_lib.load_label_mask,
                    (h, w), "masks"),
        depth=None, depth_kind=None,
        cameras=Camera(K=np.repeat(k[None], num, 0), world_to_cam=np.repeat(
            w2c.astype(np.float32)[None], num, 0), width=w, height=h),
        hmr=hmr, gt=gt, fps=fps, metadata={"camera": c})

  seq = view(camera, gt)
  seq.name = os.path.basename(os.path.normpath(path))
  seq.metadata = {"format": "zju", "source": os.path.abspath(path), "camera": camera,
                  "split": split,
                  "eval_cameras": list(eval_cameras),
                  "distortion": [np.asarray(d, float).reshape(-1).tolist()
                                 for d in cams.get("D", [])],
                  "hmr": "the multi-view fits (pseudo ground truth)"}
  seq = common.finish(seq, path, hmr_noise, seed, model)
  seq.eval_views = [seq_lib.validate_sequence(view(c, seq.hmr), f"{path} camera {c}")
                    for c in eval_cameras]
  for v in seq.eval_views:
    v.hmr, v.gt = seq.hmr, seq.gt
  return seq
