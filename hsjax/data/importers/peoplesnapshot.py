"""PeopleSnapshot as preprocessed by InstantAvatar / GART."""

from __future__ import annotations

import os

import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.data import io as io_lib
from hsjax.data import sequence as seq_lib
from hsjax.data.importers import common
from hsjax.io import npz as npz_lib


# ------------------------------------------------------------------------------------------
# Splits

# The published splits, ``(start, end, skip)`` per subject and split, from InstantAvatar's
# ``confs/dataset/peoplesnapshot/<subject>.yaml`` (tijiang13/InstantAvatar at commit
# 82a6c09f5da9a625bb933c7ed33d5b6619340fd5). Its loader
# (``instant_avatar/datasets/peoplesnapshot.py``, same commit) selects
# ``sorted(images)[start:end + 1:skip]``: ``end`` is inclusive. GART and 3DGS-Avatar train
# and test on these frames. The ``val`` split is the single frame ``start``.
SPLITS: dict[str, dict[str, tuple[int, int, int]]] = {
    "female-3-casual": {"train": (0, 445, 4), "val": (446, 446, 4), "test": (446, 647, 4)},
    "female-4-casual": {"train": (0, 335, 4), "val": (335, 335, 4), "test": (335, 523, 4)},
    "female-4-sport": {"train": (1, 336, 4), "val": (336, 336, 8), "test": (336, 524, 4)},
    "male-2-casual": {"train": (1, 455, 4), "val": (455, 455, 8), "test": (1, 455, 20)},
    "male-2-sport": {"train": (1, 455, 4), "val": (455, 455, 8), "test": (1, 455, 20)},
    "male-3-casual": {"train": (0, 455, 4), "val": (456, 456, 4), "test": (456, 675, 4)},
    "male-3-sport": {"train": (1, 230, 2), "val": (230, 230, 6), "test": (230, 460, 6)},
    "male-4-casual": {"train": (0, 659, 6), "val": (660, 660, 6), "test": (660, 872, 6)},
}


_SPLIT_NAMES = ("train", "val", "test")


def split_frames(subject: str, split: str) -> slice:
  """The image slice of a published split, e.g. ``slice(0, 456, 4)`` for male-3-casual train.

  Raises:
    ValueError: an unknown subject or split (the message lists the known ones).
  """
  if subject not in SPLITS:
    raise ValueError(f"PeopleSnapshot subject '{subject}' has no published split; expected one "
                     f"of {sorted(SPLITS)}, or pass frames=slice(start, stop, step)")
  if split not in SPLITS[subject]:
    raise ValueError(f"PeopleSnapshot split '{split}': expected one of "
                     f"{sorted(SPLITS[subject])}")
  start, end, skip = SPLITS[subject][split]
  return slice(start, end + 1, skip)


# ------------------------------------------------------------------------------------------
# PeopleSnapshot (InstantAvatar / GART preprocessing)


def load_peoplesnapshot(path: str, *, split: str = "train", frames: slice | None = None,
                        subject: str | None = None,
                        body_model: body_lib.BodyModel | None = None, hmr_noise=None,
                        seed: int = 0, fps: float = 30.0) -> seq_lib.Sequence:
  """Imports a PeopleSnapshot subject as preprocessed by InstantAvatar (used by GART).

  Assumed layout: ``images/*.png``; ``masks/*.npy`` (``[H, W]``, person > 0.5; ``*.png``
  also read); ``cameras.npz`` with ``intrinsic [3, 3]``, ``extrinsic [4, 4]`` (world to
  camera, OpenCV), ``height``, ``width``; ``poses/anim_nerf_<split>.npz`` (the Anim-NeRF
  refined fits; ``poses/<split>.npz`` also accepted) with ``betas [1, 10]`` or ``[10]``,
  ``global_orient [T, 3]``, ``body_pose [T, 69]``, ``transl [T, 3]`` in that world frame.
  The poses of a split cover the images ``frames`` (a slice). Without ``frames``, a known
  ``subject`` (default: the folder name, e.g. ``male-3-casual``) takes the published frames
  of ``split`` (``"train"``, ``"val"`` or ``"test"``; see :data:`SPLITS` for the source);
  for any other folder the image count must equal T.

  The refined fits are the standard pseudo ground truth: they become ``gt`` and ``hmr``
  (``hmr_noise``, a preset name, replaces ``hmr`` by simulated HMR errors, seeded).
  """
  if split not in _SPLIT_NAMES:
    raise ValueError(f"PeopleSnapshot split '{split}': expected one of {sorted(_SPLIT_NAMES)}")
  model = common.body_model_or_default(body_model)
  common.require_files(path, ("images", "masks", "cameras.npz",
                              (f"poses/anim_nerf_{split}.npz", f"poses/{split}.npz")),
                       f"a PeopleSnapshot subject (InstantAvatar preprocessing, split '{split}')")
  image_paths = common.frame_list(os.path.join(path, "images"), "images")
  mask_paths = common.frame_list(os.path.join(path, "masks"), "masks", (".npy", ".png"))
  if len(mask_paths) != len(image_paths):
    raise ValueError(f"{path}/masks: {len(mask_paths)} masks for {len(image_paths)} images")
  pose_path = os.path.join(path, "poses", f"anim_nerf_{split}.npz")
  if not os.path.exists(pose_path):
    pose_path = os.path.join(path, "poses", f"{split}.npz")
  if not os.path.exists(pose_path):
    raise FileNotFoundError(f"{path}/poses: neither anim_nerf_{split}.npz nor {split}.npz")
  p = npz_lib.read_npz(pose_path, "PeopleSnapshot pose file")
  for key in ("betas", "global_orient", "body_pose", "transl"):
    if key not in p:
      raise ValueError(f"{pose_path}: missing field '{key}'; found {sorted(p)}")
  num = p["body_pose"].shape[0]
  subject = subject or os.path.basename(os.path.normpath(path))
  if frames is None and subject in SPLITS:
    frames = split_frames(subject, split)
  if frames is not None:
    image_paths, mask_paths = image_paths[frames], mask_paths[frames]
  if len(image_paths) != num:
    chosen = ("all images" if frames is None else
              f"images[{frames.start}:{frames.stop}:{frames.step}]")
    raise ValueError(f"{pose_path}: {num} poses but {len(image_paths)} images selected "
                     f"({chosen}); pass frames=slice(start, stop, step) matching the split")
  body_pose = np.asarray(p["body_pose"], np.float32)
  if body_pose.shape != (num, 69):
    raise ValueError(f"{pose_path}: field 'body_pose' must be [T, 69] axis-angle, found "
                     f"{list(body_pose.shape)}")
  cam = npz_lib.read_npz(os.path.join(path, "cameras.npz"), "PeopleSnapshot camera file")
  for key in ("intrinsic", "extrinsic", "height", "width"):
    if key not in cam:
      raise ValueError(f"{path}/cameras.npz: field '{key}' expected, found {sorted(cam)}")
  h, w = int(cam["height"]), int(cam["width"])
  gt = body_lib.SMPLParams(betas=common.fit_betas(p["betas"], model, pose_path),
                           body_pose=body_pose.reshape(num, 23, 3),
                           global_orient=np.asarray(p["global_orient"], np.float32),
                           transl=np.asarray(p["transl"], np.float32))

  seq = seq_lib.Sequence(
      name=os.path.basename(os.path.normpath(path)),
      images=common.lazy_frames(image_paths, io_lib.load_image, (h, w, 3), "images"),
      masks=common.lazy_frames(mask_paths, io_lib.load_mask, (h, w), "masks"), depth=None, depth_kind=None,
      cameras=Camera(K=np.repeat(np.asarray(cam["intrinsic"], np.float32)[None], num, 0),
                     world_to_cam=np.repeat(np.asarray(cam["extrinsic"], np.float32)[None], num,
                                            0), width=w, height=h),
      hmr=gt, gt=gt, fps=fps,
      metadata={"format": "peoplesnapshot", "source": os.path.abspath(path), "split": split,
                "split_frames": None if frames is None else [frames.start, frames.stop, frames.step],
                "hmr": "the refined fits (pseudo ground truth)"})
  return common.finish(seq, path, hmr_noise, seed, model)
