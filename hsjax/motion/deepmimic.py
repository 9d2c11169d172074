"""DeepMimic humanoid3d clips (the ``humanoid3d_*.txt`` JSON motions) retargeted to SMPL.

File format (DeepMimic, Peng et al. 2018; the clips ship in PyPI's ``pybullet`` wheel under
``pybullet_data/data/motions/``): a JSON object with ``"Loop"`` (``"wrap"`` for cycles,
``"none"`` otherwise) and ``"Frames"``, a list of 44-number frames::

    [duration (s),
     root position x, y, z (m),          root rotation w, x, y, z,
     chest w, x, y, z,                   neck w, x, y, z,
     right hip w, x, y, z,  right knee angle,  right ankle w, x, y, z,
     right shoulder w, x, y, z,  right elbow angle,
     left hip w, x, y, z,   left knee angle,   left ankle w, x, y, z,
     left shoulder w, x, y, z,   left elbow angle]

``duration`` is the time to the next frame (the last frame's is 0). Joint quaternions are local
rotations (parent frame); knees and elbows are hinges about their local z axis (radians;
knees bend with negative angles). The character is y up, facing +x, its right side on +z; its
rest pose stands with the arms hanging down. Its rest offsets (:data:`DM_OFFSETS`) are the
joint origins of pybullet's ``humanoid/humanoid.urdf`` scaled by 0.25 (the scale pybullet loads
it with to play these clips), in metres.

Mapping onto SMPL (:data:`DM_JOINT_MAP`, then :func:`hsjax.motion.retarget`): root to
pelvis; chest to the SMPL spine joint nearest its height (:func:`chest_joint`; the other two
spine joints keep the identity, so the character's two rigid trunk segments stay rigid);
neck to neck and the head centre to head; hips, knees, ankles, shoulders, elbows and wrists
to their SMPL namesakes. SMPL joints the character lacks keep the identity local rotation:
the other spine joints, the collars (the whole shoulder motion is at the shoulder joint), the
hands (the character's wrists are rigid, so SMPL's hands continue the forearm) and the toes
(its feet are rigid boxes). The root path is scaled by the ratio of the pelvis heights above
the soles in the rest pose, so the character's ground ``y = 0`` becomes the target's.
"""

from __future__ import annotations

import json
import os

import numpy as np

from hsjax import rotations_np
from hsjax.motion import motion as motion_lib
from hsjax.motion import retargeting as retarget_lib

FRAME_SIZE = 44

DM_NAMES = ("root", "chest", "neck", "head_end", "right_hip", "right_knee", "right_ankle",
            "right_shoulder", "right_elbow", "right_wrist", "left_hip", "left_knee",
            "left_ankle", "left_shoulder", "left_elbow", "left_wrist")
DM_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 1, 7, 8, 0, 10, 11, 1, 13, 14)
# URDF joint origins x 0.25 (metres, character frame: y up, facing +x, right on +z). head_end is
# the centre of the neck link's collision sphere (0.7 x 0.25 above the neck joint).
DM_OFFSETS = np.array([
    [0.0, 0.0, 0.0],  # root
    [0.0, 0.944604, 0.0],  # chest
    [0.0, 0.895576, 0.0],  # neck
    [0.0, 0.7, 0.0],  # head_end
    [0.0, 0.0, 0.339548],  # right_hip
    [0.0, -1.686184, 0.0],  # right_knee
    [0.0, -1.63948, 0.0],  # right_ankle
    [-0.0962, 0.974, 0.73244],  # right_shoulder
    [0.0, -1.099152, 0.0],  # right_elbow
    [0.0, -1.035788, 0.0],  # right_wrist
    [0.0, 0.0, -0.339548],  # left_hip
    [0.0, -1.686184, 0.0],  # left_knee
    [0.0, -1.63948, 0.0],  # left_ankle
    [-0.0962, 0.974, -0.73244],  # left_shoulder
    [0.0, -1.099152, 0.0],  # left_elbow
    [0.0, -1.035788, 0.0],  # left_wrist
]) * 0.25
# The foot box (URDF: centre 0.18, -0.09 and height 0.22, x 0.25) puts the sole 0.05 m below the
# ankle joint.
DM_SOLE_BELOW_ANKLE = (0.09 + 0.11) * 0.25
DM_PELVIS_HEIGHT = float(-(DM_OFFSETS[11, 1] + DM_OFFSETS[12, 1]) + DM_SOLE_BELOW_ANKLE)

# Character frame -> SMPL frame: SMPL x (left) = -z, y = y, SMPL z (forward) = +x.
DM_AXES = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])

DM_JOINT_MAP = {
    "pelvis": "root", "neck": "neck", "head": "head_end",
    "right_hip": "right_hip", "right_knee": "right_knee", "right_ankle": "right_ankle",
    "right_shoulder": "right_shoulder", "right_elbow": "right_elbow",
    "right_wrist": "right_wrist", "left_hip": "left_hip", "left_knee": "left_knee",
    "left_ankle": "left_ankle", "left_shoulder": "left_shoulder", "left_elbow": "left_elbow",
    "left_wrist": "left_wrist",
}

# (skeleton joint, first column in a frame, kind): "quat" = 4 numbers (w, x, y, z), "hinge" = 1
# angle about local z.
_LAYOUT = (("chest", 8, "quat"), ("neck", 12, "quat"), ("right_hip", 16, "quat"),
           ("right_knee", 20, "hinge"), ("right_ankle", 21, "quat"),
           ("right_shoulder", 25, "quat"), ("right_elbow", 29, "hinge"),
           ("left_hip", 30, "quat"), ("left_knee", 34, "hinge"), ("left_ankle", 35, "quat"),
           ("left_shoulder", 39, "quat"), ("left_elbow", 43, "hinge"))

SOURCE_SKELETON = retarget_lib.SourceSkeleton(names=DM_NAMES, parents=DM_PARENTS,
                                              offsets=DM_OFFSETS)


def read_deepmimic(path: str) -> tuple[np.ndarray, bool]:
  """Reads the raw frames of a DeepMimic clip.

  Returns:
    ``(frames [T, 44], loop)``.
  """
  try:
    with open(path) as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not a DeepMimic JSON motion ({e})") from e
  if not isinstance(data, dict) or "Frames" not in data:
    found = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise ValueError(f"{path}: a DeepMimic motion needs a 'Frames' list; found {found}")
  frames = data["Frames"]
  if not isinstance(frames, list) or not frames:
    raise ValueError(f"{path}: 'Frames' must be a non-empty list of frames")
  for i, frame in enumerate(frames):
    if not isinstance(frame, list) or len(frame) != FRAME_SIZE:
      size = len(frame) if isinstance(frame, list) else type(frame).__name__
      raise ValueError(f"{path}: frame {i} has {size} values; a humanoid3d frame has "
                       f"{FRAME_SIZE} (duration, root position and rotation, 12 joints)")
  frames = np.asarray(frames, np.float64)
  bad = ~np.isfinite(frames)
  if np.any(bad):
    frame, col = np.argwhere(bad)[0]
    raise ValueError(f"{path}: non-finite value in frame {frame}, column {col} "
                     f"({_column_name(col)})")
  loop = str(data.get("Loop", "none")).lower() == "wrap"
  return frames, loop


def _column_name(col: int) -> str:
  if col == 0:
    return "duration"
  if col < 4:
    return "root position"
  if col < 8:
    return "joint 'root' rotation"
  for name, start, kind in _LAYOUT:
    if start <= col < start + (4 if kind == "quat" else 1):
      return f"joint '{name}'"
  return "?"


def deepmimic_source(frames: np.ndarray, source: str = "<deepmimic>"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Frames [T, 44] -> ``(local_rot [T, 16, 3, 3], local_trans [T, 16, 3], times [T])``.

  Rotations and positions stay in the character's frame (see :data:`DM_AXES`).
  """
  num_frames = frames.shape[0]
  local_rot = np.broadcast_to(np.eye(3), (num_frames, len(DM_NAMES), 3, 3)).copy()
  local_trans = np.broadcast_to(DM_OFFSETS, (num_frames, len(DM_NAMES), 3)).copy()
  local_trans[:, 0] = frames[:, 1:4]

  def quat(col, name):
    q = frames[:, col:col + 4]
    norm = np.linalg.norm(q, axis=-1)
    if np.any(norm < 1e-6):
      raise ValueError(f"{source}: zero quaternion for joint '{name}' in frame "
                       f"{int(np.argmin(norm))}")
    return rotations_np.quat_to_matrix(q)

  local_rot[:, 0] = quat(4, "root")
  for name, col, kind in _LAYOUT:
    j = DM_NAMES.index(name)
    if kind == "quat":
      local_rot[:, j] = quat(col, name)
    else:
      local_rot[:, j] = rotations_np.axis_angle_to_matrix(
          np.stack([np.zeros(num_frames), np.zeros(num_frames), frames[:, col]], -1))
  durations = frames[:, 0]
  if np.any(durations[:-1] <= 0) or np.any(durations < 0):
    i = int(np.argmax(durations[:-1] <= 0)) if np.any(durations[:-1] <= 0) else num_frames - 1
    raise ValueError(f"{source}: frame {i} has duration {durations[i]}; every frame but the "
                     "last needs a positive duration (seconds to the next frame)")
  times = np.concatenate([[0.0], np.cumsum(durations[:-1])])
  return local_rot, local_trans, times


def chest_joint(rest_joints: np.ndarray) -> str:
  """The SMPL spine joint (spine1, spine2 or spine3) that takes the character's chest rotation.

  It is the one whose rest height, as a fraction of the pelvis-to-neck distance, is nearest the
  character's chest joint (51 %), so that the two rigid trunk segments of the character (root
  to chest, chest to neck) bend where it bends; the other two SMPL spine joints keep the
  identity.
  """
  dm = DM_OFFSETS[1, 1] / (DM_OFFSETS[1, 1] + DM_OFFSETS[2, 1])
  pelvis, neck = rest_joints[0, 1], rest_joints[12, 1]
  frac = {n: (rest_joints[i, 1] - pelvis) / (neck - pelvis)
          for n, i in (("spine1", 3), ("spine2", 6), ("spine3", 9))}
  return min(frac, key=lambda n: abs(frac[n] - dm))


# How the shipped clips were retargeted (``tools/build_motions.py``): SMPL's trunk keeps its
# rest curve, no twist is moved (the character's wrists are rigid), and the clips are placed by
# the build script. Keeping these fixed keeps the shipped clips, and every number measured on
# them, reproducible.
LEGACY_OPTIONS = {"trunk": "keep", "twist": 0.0, "placement": "none"}


def retarget_deepmimic(path: str, *, rest="auto", name: str | None = None, **options):
  """Reads and retargets a DeepMimic clip without resampling.

  Args:
    path: ``.txt`` or ``.json`` DeepMimic motion.
    rest: target rest skeleton: a name for :func:`hsjax.motion.skeleton.rest_joints`, or
      [24, 3] joints (whose lowest joint is then taken as the sole).
    name: clip name (default: the file name without ``humanoid3d_`` and extension).
    **options: ``trunk``, ``twist``, ``placement`` for :func:`hsjax.motion.retarget`
      (default: :data:`LEGACY_OPTIONS`).

  Returns:
    ``(motion, info, times)``: the SMPL motion with one frame per file frame (its ``fps`` is
    the file's nominal rate), the :class:`~hsjax.motion.retargeting.RetargetInfo`, and the
    file's frame times [T] in seconds (uneven in some clips; ``i / fps`` when even).
  """
  from hsjax.motion import skeleton  # pylint: disable=g-import-not-at-top

  frames, loop = read_deepmimic(path)
  if name is None:
    name = os.path.splitext(os.path.basename(path))[0].removeprefix("humanoid3d_")
  local_rot, local_trans, times = deepmimic_source(frames, path)
  rest_name = rest if isinstance(rest, str) else None
  rest_joints = skeleton.rest_joints(rest) if rest_name else np.asarray(rest, np.float64)
  target_height = (skeleton.pelvis_height(rest_name) if rest_name else
                   float(rest_joints[0, 1] - rest_joints[:, 1].min()))
  steps = np.diff(times)
  native_fps = 1.0 / steps.min() if steps.size else 30.0
  if abs(native_fps - round(native_fps)) < 0.01:
    # The files write 1/30 s as 0.033332: the intended rate is the round number.
    native_fps = float(round(native_fps))
  if steps.size and np.ptp(steps) < 1e-4:
    times = np.arange(len(times)) / native_fps  # evenly spaced: the nominal times
  joint_map = dict(DM_JOINT_MAP, **{chest_joint(rest_joints): "chest"})
  options = dict(LEGACY_OPTIONS, **options)
  if options["placement"] != "none" and rest_name and "body" not in options:
    from hsjax.motion import placement  # pylint: disable=g-import-not-at-top
    options["body"] = placement.body_points(rest_name)  # the mesh, not just the joints
  motion, info = retarget_lib.retarget(
      SOURCE_SKELETON, local_rot, local_trans, native_fps, joint_map, axes=DM_AXES,
      scale=target_height / DM_PELVIS_HEIGHT, rest=rest_joints, spread=False, name=name,
      loop=loop, source=path, **options)
  return motion, info, times


def load_deepmimic(path: str, target_fps: float | None = None, *, rest="auto",
                   name: str | None = None) -> motion_lib.Motion:
  """Loads a DeepMimic humanoid3d clip as an SMPL :class:`~hsjax.motion.Motion`.

  Args:
    path: ``.txt`` or ``.json`` DeepMimic motion.
    target_fps: output frame rate; None keeps the file's rate when its frames are evenly
      spaced, and otherwise resamples at the rate of its shortest frame.
    rest: target rest skeleton (see :func:`retarget_deepmimic`).
    name: clip name (default: the file name without ``humanoid3d_`` and extension).
  """
  motion, _, times = retarget_deepmimic(path, rest=rest, name=name)
  steps = np.diff(times)
  if steps.size and np.ptp(steps) >= 1e-4:
    fps = motion.fps if target_fps is None else float(target_fps)
    count = int(np.floor(times[-1] * fps + 1e-6)) + 1
    return motion_lib.resample_at(motion, times, np.arange(count) / fps, fps)
  if target_fps is not None:
    return motion_lib.resample(motion, float(target_fps))
  return motion
