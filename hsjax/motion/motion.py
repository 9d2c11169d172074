"""The SMPL motion container, its ``.npz`` file layout, resampling and normalisation.

A :class:`Motion` is a clip of SMPL pose parameters at a fixed frame rate. It holds no body
shape: the same motion animates any body (``betas``), and its ``transl`` is placed for a
stated rest skeleton (see :func:`hsjax.motion.skeleton.rest_joints`).

hsjax ``.npz`` layout (written by :func:`save_motion`; every array float32 unless stated):

===================  ============  ===============================================================
key                  shape         meaning
===================  ============  ===============================================================
``format``           []  str       ``"hsjax-motion"`` (identifies the layout)
``version``          []  int       ``1``
``body_pose``        [T, 23, 3]    axis-angle of SMPL joints 1..23 (local, parent frame), radians
``global_orient``    [T, 3]        axis-angle of the pelvis in the world frame, radians
``transl``           [T, 3]        SMPL ``transl`` (added after skinning), metres
``fps``              []  float64   frames per second
``name``             []  str       clip name
``loop``             []  bool      whether the source marks the clip as a cycle, meant to be
                                   played in a loop
``meta``             []  str       free-form JSON (provenance); optional
===================  ============  ===============================================================

World frame: SMPL's (y up, metres). Where a clip was placed on a ground plane (the shipped
clips are), the ground is the plane ``y = 0`` for the rest skeleton named in ``meta``.
"""

from __future__ import annotations

import json
import os

import flax.struct
import numpy as np

from hsjax import rotations_np

FORMAT_NAME = "hsjax-motion"
FORMAT_VERSION = 1

_SMPL_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand")


@flax.struct.dataclass(kw_only=True)
class Motion:
  """A clip of SMPL poses; a pytree whose frame rate and name are static.

  Build one with :func:`make_motion` (which validates) or from the loaders; the constructor
  itself does not check, so that ``jax`` transformations can rebuild it from leaves.
  """

  body_pose: np.ndarray  # [T, 23, 3] axis-angle of joints 1..23, radians.
  global_orient: np.ndarray  # [T, 3] axis-angle of the pelvis (world frame), radians.
  transl: np.ndarray  # [T, 3] SMPL translation, metres (y up).
  fps: float = flax.struct.field(pytree_node=False)  # frames per second.
  name: str = flax.struct.field(pytree_node=False, default="")
  # True when the source marks the clip as a cycle (walk, run) meant to be played in a loop.
  loop: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def num_frames(self) -> int:
    return int(self.body_pose.shape[0])

  @property
  def duration(self) -> float:
    """Seconds from the first to the last frame."""
    return (self.num_frames - 1) / self.fps

  @property
  def full_pose(self) -> np.ndarray:
    """[T, 24, 3] axis-angle, the pelvis first (SMPL's 72-vector as [24, 3])."""
    return np.concatenate([np.asarray(self.global_orient)[:, None], np.asarray(self.body_pose)], 1)

  def slice(self, start: int = 0, stop: int | None = None, step: int = 1) -> "Motion":
    """Frames ``start:stop:step`` (the frame rate is divided by ``step``)."""
    sl = np.s_[start:stop:step]
    return self.replace(body_pose=self.body_pose[sl], global_orient=self.global_orient[sl],
                        transl=self.transl[sl], fps=self.fps / step,
                        loop=self.loop and start == 0 and stop is None and step == 1)


def validate_motion(motion: Motion, source: str = "<motion>") -> Motion:
  """Checks shapes, frame rate and finiteness; returns ``motion`` with float32 arrays.

  Raises:
    ValueError: naming ``source``, the field, and for a non-finite value the frame and the
      SMPL joint where it first occurs.
  """
  body_pose = np.asarray(motion.body_pose)
  global_orient = np.asarray(motion.global_orient)
  transl = np.asarray(motion.transl)
  if body_pose.ndim != 3 or body_pose.shape[1:] != (23, 3):
    raise ValueError(f"{source}: body_pose must be [T, 23, 3] axis-angle, found "
                     f"{body_pose.shape}")
  num_frames = body_pose.shape[0]
  if num_frames < 1:
    raise ValueError(f"{source}: the motion has no frames")
  if global_orient.shape != (num_frames, 3):
    raise ValueError(f"{source}: global_orient must be [T={num_frames}, 3], found "
                     f"{global_orient.shape}")
  if transl.shape != (num_frames, 3):
    raise ValueError(f"{source}: transl must be [T={num_frames}, 3], found {transl.shape}")
  if not (np.isfinite(motion.fps) and motion.fps > 0):
    raise ValueError(f"{source}: fps must be a positive number, found {motion.fps}")
  full = np.concatenate([global_orient[:, None], body_pose], 1)
  bad = ~np.all(np.isfinite(full), axis=-1)
  if np.any(bad):
    frame, joint = np.argwhere(bad)[0]
    field = "global_orient" if joint == 0 else f"body_pose[:, {joint - 1}]"
    raise ValueError(f"{source}: non-finite rotation at frame {frame}, joint "
                     f"'{_SMPL_NAMES[joint]}' ({field}); {int(bad.sum())} bad joint-frames")
  bad_t = ~np.all(np.isfinite(transl), axis=-1)
  if np.any(bad_t):
    raise ValueError(f"{source}: non-finite transl at frame {int(np.argmax(bad_t))} "
                     f"(root joint 'pelvis')")
  return motion.replace(body_pose=body_pose.astype(np.float32),
                        global_orient=global_orient.astype(np.float32),
                        transl=transl.astype(np.float32), fps=float(motion.fps))


def make_motion(body_pose, global_orient, transl, fps: float, name: str = "", *,
                loop: bool = False, source: str | None = None) -> Motion:
  """Builds and validates a :class:`Motion` (arrays become float32 numpy).

  Args:
    body_pose: [T, 23, 3] axis-angle, radians.
    global_orient: [T, 3] axis-angle, radians.
    transl: [T, 3] metres.
    fps: frames per second (> 0).
    name: clip name.
    loop: whether the clip is a cycle.
    source: name used in error messages (defaults to ``name``).
  """
  motion = Motion(body_pose=np.asarray(body_pose), global_orient=np.asarray(global_orient),
                  transl=np.asarray(transl), fps=float(fps), name=str(name), loop=bool(loop))
  return validate_motion(motion, source or name or "<motion>")


def concatenate(motions: list[Motion], name: str | None = None) -> Motion:
  """Plays ``motions`` one after the other (all must share one frame rate)."""
  if not motions:
    raise ValueError("concatenate: no motions given")
  fps = motions[0].fps
  for m in motions[1:]:
    if abs(m.fps - fps) > 1e-6:
      raise ValueError(f"concatenate: motion '{m.name}' is at {m.fps} fps, expected {fps}; "
                       "resample() it first")
  return make_motion(np.concatenate([m.body_pose for m in motions]),
                     np.concatenate([m.global_orient for m in motions]),
                     np.concatenate([m.transl for m in motions]), fps,
                     name if name is not None else "+".join(m.name for m in motions))


# ------------------------------------------------------------------------------------------
# File I/O (the hsjax layout)


def save_motion(path: str, motion: Motion, meta: dict | None = None) -> None:
  """Writes ``motion`` as an hsjax ``.npz`` (layout in this module's docstring).

  Args:
    path: output file; ``.npz`` is appended if missing.
    motion: the clip (validated first).
    meta: JSON-serialisable provenance stored under ``meta``.
  """
  motion = validate_motion(motion, str(path))
  np.savez_compressed(
      path, format=np.array(FORMAT_NAME), version=np.array(FORMAT_VERSION),
      body_pose=motion.body_pose, global_orient=motion.global_orient, transl=motion.transl,
      fps=np.array(motion.fps, np.float64), name=np.array(motion.name),
      loop=np.array(motion.loop), meta=np.array(json.dumps(meta or {}, sort_keys=True)))


def read_motion_meta(path: str) -> dict:
  """The ``meta`` JSON of an hsjax motion ``.npz`` (``{}`` when absent)."""
  with np.load(path, allow_pickle=False) as data:
    return json.loads(str(data["meta"])) if "meta" in data.files else {}


def load_hsjax_npz(path: str) -> Motion:
  """Reads an hsjax motion ``.npz`` (see :func:`save_motion`)."""
  with np.load(path, allow_pickle=False) as data:
    files = set(data.files)
    fmt = str(data["format"]) if "format" in files else ""
    if fmt != FORMAT_NAME:
      raise ValueError(f"{path}: not an hsjax motion file (field 'format' is {fmt!r}, expected "
                       f"{FORMAT_NAME!r})")
    version = int(data["version"])
    if version > FORMAT_VERSION:
      raise ValueError(f"{path}: motion file version {version} is newer than this reader "
                       f"({FORMAT_VERSION})")
    missing = {"body_pose", "global_orient", "transl", "fps"} - files
    if missing:
      raise ValueError(f"{path}: missing field(s) {sorted(missing)}; found {sorted(files)}")
    name = str(data["name"]) if "name" in files else os.path.splitext(os.path.basename(path))[0]
    return make_motion(data["body_pose"], data["global_orient"], data["transl"],
                       float(data["fps"]), name,
                       loop=bool(data["loop"]) if "loop" in files else False, source=path)


# ------------------------------------------------------------------------------------------
# Resampling and normalisation


def resample_rotations(rotvecs: np.ndarray, times: np.ndarray, new_times: np.ndarray
                       ) -> np.ndarray:
  """Slerps axis-angle tracks [T, ..., 3] sampled at ``times`` [T] to ``new_times`` [T'].

  ``times`` must increase; ``new_times`` are clamped to its range.
  """
  quats = rotations_np.matrix_to_quat(rotations_np.axis_angle_to_matrix(rotvecs))
  # Consecutive keys on one hemisphere, so that slerp between them takes the short arc.
  for i in range(1, quats.shape[0]):
    flip = np.sum(quats[i] * quats[i - 1], axis=-1, keepdims=True) < 0
    quats[i] = np.where(flip, -quats[i], quats[i])
  new_times = np.clip(new_times, times[0], times[-1])
  hi = np.clip(np.searchsorted(times, new_times, side="right"), 1, len(times) - 1)
  lo = hi - 1
  span = np.maximum(times[hi] - times[lo], 1e-12)
  w = np.clip((new_times - times[lo]) / span, 0.0, 1.0)
  w = np.broadcast_to(w.reshape((-1,) + (1,) * (quats.ndim - 2)), quats[lo].shape[:-1])
  q = rotations_np.slerp_quat(quats[lo], quats[hi], w)
  return rotations_np.matrix_to_axis_angle(rotations_np.quat_to_matrix(q))


def resample_at(motion: Motion, times: np.ndarray, new_times: np.ndarray, fps: float,
                loop: bool | None = None) -> Motion:
  """Resamples a motion whose frame ``i`` is at ``times[i]`` seconds onto ``new_times``."""
  full = resample_rotations(motion.full_pose, times, new_times)
  transl = np.stack([np.interp(new_times, times, motion.transl[:, d]) for d in range(3)], -1)
  return make_motion(full[:, 1:], full[:, 0], transl, fps, motion.name,
                     loop=motion.loop if loop is None else loop)


def resample(motion: Motion, fps: float) -> Motion:
  """Resamples to ``fps``: quaternion slerp on every joint rotation, linear on ``transl``.

  The new clip starts at the first frame and covers the same duration (its last frame is at
  or before the old last frame).
  """
  if not (np.isfinite(fps) and fps > 0):
    raise ValueError(f"resample: fps must be positive, found {fps}")
  if abs(fps - motion.fps) < 1e-9:
    return motion
  times = np.arange(motion.num_frames) / motion.fps
  count = int(np.floor(motion.duration * fps + 1e-6)) + 1
  return resample_at(motion, times, np.arange(count) / fps, fps)


def heading_angle(global_orient: np.ndarray) -> np.ndarray:
  """[..., 3] pelvis axis-angle -> [...] heading (radians) about +y; 0 faces +z.

  The heading is ``atan2(f_x, f_z)`` of ``f``, the sum of two ground-plane estimates of the
  pelvis's forward direction: its forward axis (local +z) projected on the ground, and its
  left axis (local +x) turned by -90° about the vertical. They agree for an upright body, and
  one stays well defined when the other degenerates: lying on the front or back (forward
  axis vertical) or upside down in a cartwheel (left axis vertical).
  """
  rot = rotations_np.axis_angle_to_matrix(global_orient)
  forward, left = rot[..., :, 2], rot[..., :, 0]
  fx = forward[..., 0] - left[..., 2]  # left x (0, 1, 0) = (-l_z, 0, l_x)
  fz = forward[..., 2] + left[..., 0]
  return np.arctan2(fx, fz)


def normalize(motion: Motion, heading: bool = True, ground: bool = False, *,
              center: bool = True, heading_frame: int = 0, ground_height: float = 0.0,
              rest_joints: np.ndarray | None = None, sole_offset: float | None = None,
              body=None) -> Motion:
  """Puts a clip in a canonical place.

  Args:
    motion: the clip.
    heading: rotate the whole clip about the vertical line through the pelvis of frame
      ``heading_frame`` so that the body faces +z there (root trajectory rotated with it).
    ground: shift ``transl`` vertically so that, over the whole clip, the lowest point of the
      feet touches ``y = ground_height`` (hands, knees and the rest of the body are not
      counted). The feet are the foot vertices of ``body`` (a
      :class:`hsjax.motion.placement.BodyPoints`; default: the default body's mesh when
      ``rest_joints`` is None), else the ankle and toe joints, by forward kinematics on
      ``rest_joints`` (default: :func:`hsjax.motion.skeleton.rest_joints`), with the sole
      ``sole_offset`` metres below them (default: that skeleton's value). Contact-aware
      placement, frame by frame, is :func:`hsjax.motion.placement.place`.
    center: move the root horizontally so that ``transl[heading_frame]`` has x = z = 0.
    heading_frame: the frame that defines heading and centre.
    ground_height: height of the ground plane, metres.
    rest_joints: [24, 3] rest joints used for ``ground``.
    sole_offset: metres from the lowest rest joint (toes/ankles) down to the sole.
    body: the body's points for ``ground`` (see there).

  Returns:
    The moved clip. Rotations about the vertical axis do not depend on the body: the pelvis
    moves by ``transl[t] - transl[0]`` relative to frame 0 whatever the rest skeleton.
  """
  body_pose = np.asarray(motion.body_pose, np.float64)
  orient = np.asarray(motion.global_orient, np.float64)
  transl = np.asarray(motion.transl, np.float64)
  pivot = transl[heading_frame].copy()
  if heading:
    angle = -heading_angle(orient[heading_frame])
    rot_y = rotations_np.axis_angle_to_matrix(np.array([0.0, angle, 0.0]))
    orient = rotations_np.matrix_to_axis_angle(rot_y @ rotations_np.axis_angle_to_matrix(orient))
    transl = (transl - pivot) @ rot_y.T + pivot
  if center:
    transl[:, 0] -= transl[heading_frame, 0]
    transl[:, 2] -= transl[heading_frame, 2]
  if ground:
    from hsjax.motion import placement  # pylint: disable=g-import-not-at-top
    from hsjax.motion import skeleton  # pylint: disable=g-import-not-at-top
    full = np.concatenate([orient[:, None], body_pose], 1)
    if body is None and rest_joints is None:
      body = placement.body_points("auto")
    if body is not None:
      glob, joints = placement.forward(body.rest, rotations_np.axis_angle_to_matrix(full),
                                       transl)
      feet = body.mask(placement.LEFT_FOOT_PARTS + placement.RIGHT_FOOT_PARTS)
      lowest = placement.lowest_heights(body, glob, joints, [feet]).min()
    else:
      if sole_offset is None:
        sole_offset = 0.0
      joints = skeleton.forward_joints(np.asarray(rest_joints, np.float64), full, transl)
      lowest = joints[:, list(placement.LEFT_FOOT_PARTS + placement.RIGHT_FOOT_PARTS),
                      1].min() - sole_offset
    transl[:, 1] += ground_height - lowest
  return make_motion(body_pose, orient, transl, motion.fps, motion.name, loop=motion.loop)


def loop_motion(motion: Motion, num_frames: int, keep_turn: bool = False) -> Motion:
  """Plays a cycle (a walk, a run) for ``num_frames`` frames, seamlessly.

  The clip's last frame is taken as the first frame of the next cycle (so one cycle is
  ``T - 1`` frames). Captured cycles do not close exactly; the mismatch between the last and
  the first frame is spread linearly over the cycle (per joint, ``R(t) ← (D⁻¹)^(t / (T-1)) R(t)``
  with ``D`` the last frame's rotation relative to the first's, and likewise for the pelvis
  height), so the seam has no jump. Each next cycle is moved on the ground so that it starts
  where the previous one ended (a walk keeps walking) and, with ``keep_turn``, also turned
  about the vertical by the clip's change of heading (a turning dance keeps turning).

  Args:
    motion: the cycle (``motion.loop`` need not be set, but the clip should be one).
    num_frames: output length.
    keep_turn: carry the heading change from the first to the last frame into the next
      cycle. Off by default: in a straight walk or run that change is gait sway (the pelvis
      turns with each step), and carrying it would bend the path into a circle.

  Returns:
    A clip of ``num_frames`` frames at the same rate, ``loop=False``.
  """
  if motion.num_frames < 3:
    raise ValueError(f"loop_motion: '{motion.name}' has {motion.num_frames} frames; a cycle "
                     "needs at least 3")
  period = motion.num_frames - 1
  full = rotations_np.axis_angle_to_matrix(motion.full_pose)  # [T, 24, 3, 3]
  transl = np.asarray(motion.transl, np.float64)
  turn = heading_angle(motion.global_orient[-1]) - heading_angle(motion.global_orient[0])
  yaw = rotations_np.axis_angle_to_matrix(np.array([0.0, turn if keep_turn else 0.0, 0.0]))
  # Where the last frame should be for the cycle to close: the first frame, turned and moved.
  target = full[0].copy()
  target[0] = yaw @ full[0, 0]
  mismatch = full[-1] @ np.swapaxes(target, -1, -2)  # [24, 3, 3]
  frac = np.arange(motion.num_frames) / period
  inverse = rotations_np.matrix_to_axis_angle(np.swapaxes(mismatch, -1, -2))  # [24, 3]
  correction = rotations_np.axis_angle_to_matrix(frac[:, None, None] * inverse[None])
  closed = correction @ full
  closed_transl = transl.copy()
  closed_transl[:, 1] -= frac * (transl[-1, 1] - transl[0, 1])
  # Per cycle: rotate by the accumulated turn about the start's pelvis line, then shift.
  step = closed_transl[-1] - closed_transl[0]
  step[1] = 0.0
  out_rot, out_transl = [], []
  rot_acc, origin = np.eye(3), closed_transl[0].copy()
  cycles = int(np.ceil(num_frames / period))
  for _ in range(cycles):
    rel = closed_transl[:period] - closed_transl[0]
    out_transl.append(origin + rel @ rot_acc.T)
    cyc = closed[:period].copy()
    cyc[:, 0] = rot_acc @ cyc[:, 0]
    out_rot.append(cyc)
    origin = origin + rot_acc @ step
    rot_acc = yaw @ rot_acc
  full_out = rotations_np.matrix_to_axis_angle(np.concatenate(out_rot)[:num_frames])
  transl_out = np.concatenate(out_transl)[:num_frames]
  return make_motion(full_out[:, 1:], full_out[:, 0], transl_out, motion.fps,
                     f"{motion.name}_loop", loop=False)
