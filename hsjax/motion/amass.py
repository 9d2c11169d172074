"""AMASS motions (SMPL-H / SMPL-X ``.npz``) as SMPL motions.

AMASS stores each sequence as an ``.npz`` with

* ``poses`` [T, 156] (SMPL-H: root 3, 21 body joints x 3, 30 hand joints x 3), or [T, 165]
  (SMPL-X: root, 21 body joints, jaw, two eyes, hands), or [T, 72] (plain SMPL); SMPL-X
  "stage II" files also split it into ``root_orient`` [T, 3] and ``pose_body`` [T, 63];
* ``trans`` [T, 3] metres; ``betas`` [16] (or more); ``gender``;
* ``mocap_framerate`` (SMPL-H) or ``mocap_frame_rate`` (SMPL-X), frames per second.

The first 22 joints of SMPL-H and SMPL-X are SMPL's joints 0..21 in the same order; SMPL's
hand joints 22 and 23 (``left_hand``, ``right_hand``) have no single counterpart (the fingers
are separate MANO joints) and are set to the identity: hands are dropped. Body shape
(``betas``) is not part of a motion and is ignored.

AMASS's world is **z up** (the subject's body model is y up and its ``root_orient`` turns it
upright). With ``up="z"`` (the default) the world is turned by -90° about x into hsjax's y-up
world: ``global_orient ← R_x(-90°) · global_orient`` and the pelvis path likewise. The pelvis
position is ``J_0 + trans``, so turning it needs the subject's rest pelvis ``J_0``; the target
rest skeleton's is used (``rest``), which places the body to within the two pelvis positions'
difference (a few centimetres).
"""

from __future__ import annotations

import os

import numpy as np

from hsjax import rotations_np
from hsjax.motion import motion as motion_lib
from hsjax.motion import skeleton

_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # R_x(-90°)


def load_amass(path: str, target_fps: float | None = None, *, up: str = "z", rest="auto",
               name: str | None = None) -> motion_lib.Motion:
  """Reads an AMASS ``.npz`` (SMPL-H, SMPL-X or SMPL poses) as an SMPL motion.

  Args:
    path: the ``.npz`` file.
    target_fps: resample to this rate (slerp); None keeps ``mocap_framerate``.
    up: the file's up axis, ``"z"`` (AMASS) or ``"y"`` (already SMPL's frame).
    rest: rest skeleton whose pelvis is used to turn the z-up path (see module docstring).
    name: clip name (default: the file name).

  Raises:
    ValueError: missing fields or wrong shapes (naming the file and the field).
  """
  with np.load(path, allow_pickle=False) as data:
    files = set(data.files)

    def field(key, *alts):
      for k in (key,) + alts:
        if k in files:
          return np.asarray(data[k])
      raise ValueError(f"{path}: AMASS field {key!r} missing (found {sorted(files)})")

    if "pose_body" in files and "root_orient" in files:
      root = field("root_orient").astype(np.float64)
      body = field("pose_body").astype(np.float64)
      if body.ndim != 2 or body.shape[1] != 63:
        raise ValueError(f"{path}: 'pose_body' must be [T, 63], found {body.shape}")
    else:
      poses = field("poses").astype(np.float64)
      if poses.ndim != 2 or poses.shape[1] not in (72, 156, 165):
        raise ValueError(f"{path}: 'poses' must be [T, 156] (SMPL-H), [T, 165] (SMPL-X) or "
                         f"[T, 72] (SMPL), found {poses.shape}")
      root, body = poses[:, :3], poses[:, 3:66]
    trans = field("trans").astype(np.float64)
    fps = float(field("mocap_framerate", "mocap_frame_rate"))
  num_frames = root.shape[0]
  if trans.shape != (num_frames, 3):
    raise ValueError(f"{path}: 'trans' must be [T={num_frames}, 3], found {trans.shape}")
  body_pose = np.concatenate([body.reshape(num_frames, 21, 3), np.zeros((num_frames, 2, 3))], 1)
  if up == "z":
    pelvis = (skeleton.rest_joints(rest) if isinstance(rest, str)
              else np.asarray(rest, np.float64))[0]
    root = rotations_np.matrix_to_axis_angle(_Z_UP_TO_Y_UP @ rotations_np.axis_angle_to_matrix(root))
    trans = (pelvis + trans) @ _Z_UP_TO_Y_UP.T - pelvis
  elif up != "y":
    raise ValueError(f"{path}: up must be 'z' or 'y', found {up!r}")
  motion = motion_lib.make_motion(
      body_pose, root, trans, fps, name or os.path.splitext(os.path.basename(path))[0],
      source=path)
  return motion if target_fps is None else motion_lib.resample(motion, target_fps)
