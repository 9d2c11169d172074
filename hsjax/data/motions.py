"""Hand-made parametric motions, and the choice of motion for synthetic sequences.

The synthetic benchmark can be driven by any :class:`hsjax.motion.Motion`; by name, it takes
the real-capture clips of :func:`hsjax.motion.builtin_motion` (the default sequence dances
``dance_b``). The parametric clips
here are procedural extras that cover the motions the benchmark asks for: walking in place
and along a path, turning around, squats, arm raises, jumping jacks and a dance. They are
smooth (sums of sinusoids and smoothsteps, C1 everywhere) and stay inside ordinary human
joint ranges (checked by the tests against :data:`JOINT_LIMITS`).

Angle conventions (SMPL rest pose: T-pose, y up, facing +z, the subject's left at +x;
rotations act about world-aligned axes at rest):

* hip / knee flexion: about x; a *negative* hip angle swings the leg forward (+z), a
  positive knee angle bends the shin backwards;
* shoulders: about z; ``-a`` lowers the left arm by ``a`` from the T-pose, ``+a`` the right;
* elbows: about y; negative bends the left forearm forward, positive the right;
* torso lean forward: positive x on ``global_orient``.

``transl`` of these clips is only the horizontal path plus vertical hops; the generator puts
the body on the floor afterwards (:func:`ground_motion`).
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax import motion as motion_pkg
from hsjax.motion import motion as motion_lib

# Loose human joint ranges used to check the procedural clips (radians, |angle| bound of the
# axis-angle vector per joint): from the usual clinical ranges of motion.
JOINT_LIMITS = {
    "left_hip": 2.2, "right_hip": 2.2, "left_knee": 2.5, "right_knee": 2.5,
    "left_ankle": 0.9, "right_ankle": 0.9, "spine1": 0.6, "spine2": 0.6, "spine3": 0.6,
    "neck": 0.8, "head": 0.8, "left_collar": 0.5, "right_collar": 0.5,
    "left_shoulder": 2.6, "right_shoulder": 2.6, "left_elbow": 2.6, "right_elbow": 2.6,
    "left_wrist": 1.2, "right_wrist": 1.2, "left_foot": 0.6, "right_foot": 0.6,
    "left_hand": 0.8, "right_hand": 0.8}

_NAMES = body_lib.SMPL_JOINT_NAMES
_INDEX = {n: i for i, n in enumerate(_NAMES)}

# Arms relaxed at the sides: lowered 75 degrees from the T-pose, elbows slightly bent.
_ARM_DOWN = 1.3


class _Pose:
  """Per-frame joint rotations as extrinsic x, y, z Euler angles (applied in that order)."""

  def __init__(self, num_frames: int):
    self.angles = np.zeros((num_frames, 24, 3))
    self.transl = np.zeros((num_frames, 3))

  def set(self, joint: str, x=0.0, y=0.0, z=0.0):
    self.angles[:, _INDEX[joint]] = np.stack(np.broadcast_arrays(x, y, z, self.angles[:, 0, 0])[:3],
                                             -1)

  def arms_relaxed(self, swing_l=0.0, swing_r=0.0, elbow=0.25):
    # Lower the arm about z first, then swing it forward/back about x (extrinsic order zx).
    self.angles[:, _INDEX["left_shoulder"]] = np.stack(np.broadcast_arrays(
        swing_l, 0.0, -_ARM_DOWN, self.angles[:, 0, 0])[:3], -1)
    self.angles[:, _INDEX["right_shoulder"]] = np.stack(np.broadcast_arrays(
        swing_r, 0.0, _ARM_DOWN, self.angles[:, 0, 0])[:3], -1)
    self.set("left_elbow", y=-elbow)
    self.set("right_elbow", y=elbow)

  def to_motion(self, name: str, fps: float, heading=None, loop: bool = False
                ) -> motion_lib.Motion:
    t, j = self.angles.shape[:2]
    # Shoulders use "zx" (lower, then swing); everything else "xyz" extrinsic.
    rotvecs = Rotation.from_euler("xyz", self.angles.reshape(-1, 3)).as_rotvec().reshape(t, j, 3)
    for side in ("left_shoulder", "right_shoulder"):
      a = self.angles[:, _INDEX[side]]
      rotvecs[:, _INDEX[side]] = Rotation.from_euler("zxy", a[:, [2, 0, 1]]).as_rotvec()
    if heading is not None:  # turn the whole body about the vertical axis
      root = Rotation.from_rotvec(rotvecs[:, 0])
      rotvecs[:, 0] = (Rotation.from_euler(
          "y", np.broadcast_to(heading, (t,))[:, None]) * root).as_rotvec()
    return motion_lib.make_motion(rotvecs[:, 1:], rotvecs[:, 0], self.transl, fps, name,
                                  loop=loop)


def _smoothstep(x):
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3 - 2 * x)


def _gait(p: _Pose, phase: np.ndarray, stride: float, in_place: bool):
  """Leg and arm angles of a walking cycle at ``phase`` [T] radians."""
  s = np.sin(phase)
  if in_place:  # marching: each thigh only lifts forward (squared: C1 at touch-down)
    lift_l, lift_r = np.maximum(0.0, s) ** 2, np.maximum(0.0, -s) ** 2
    p.set("left_hip", x=-0.8 * stride * lift_l)
    p.set("right_hip", x=-0.8 * stride * lift_r)
    p.set("left_knee", x=1.2 * stride * lift_l)
    p.set("right_knee", x=1.2 * stride * lift_r)
  else:
    p.set("left_hip", x=-0.45 * stride * s)
    p.set("right_hip", x=0.45 * stride * s)
    # The knee flexes during the swing phase (leg moving forward).
    p.set("left_knee", x=0.15 + 0.55 * stride * np.maximum(0.0, np.cos(phase)))
    p.set("right_knee", x=0.15 + 0.55 * stride * np.maximum(0.0, -np.cos(phase)))
    p.set("left_ankle", x=-0.1 * stride * s)
    p.set("right_ankle", x=0.1 * stride * s)
  p.arms_relaxed(swing_l=0.35 * stride * s, swing_r=-0.35 * stride * s)
  p.set("spine2", y=0.08 * s)


def walk_in_place(num_frames: int = 60, fps: float = 30.0) -> motion_lib.Motion:
  """Marching on the spot, 0.9 gait cycles per second."""
  p = _Pose(num_frames)
  _gait(p, 2 * np.pi * 0.9 * np.arange(num_frames) / fps, 1.0, in_place=True)
  return p.to_motion("walk_in_place", fps)


def walk_path(num_frames: int = 60, fps: float = 30.0, radius: float = 1.0,
              speed: float = 0.8) -> motion_lib.Motion:
  """Walking along a circular arc (radius metres, speed m/s), facing along the path."""
  t = np.arange(num_frames) / fps
  p = _Pose(num_frames)
  _gait(p, 2 * np.pi * 0.9 * t, 1.0, in_place=False)
  angle = speed * t / radius  # arc angle travelled
  # Start at the origin heading +x (across the training view), curving towards the camera.
  p.transl[:, 0] = radius * np.sin(angle) - radius * np.sin(angle[-1]) / 2
  p.transl[:, 2] = radius * (1 - np.cos(angle))
  return p.to_motion("walk_path", fps, heading=np.pi / 2 - angle)


def turn_around(num_frames: int = 60, fps: float = 30.0) -> motion_lib.Motion:
  """A full turn on the spot with small steps (heading 0 -> 2 pi, eased)."""
  t = np.arange(num_frames) / fps
  p = _Pose(num_frames)
  _gait(p, 2 * np.pi * 1.2 * t, 0.5, in_place=True)
  heading = 2 * np.pi * _smoothstep(np.arange(num_frames) / max(num_frames - 1, 1))
  return p.to_motion("turn_around", fps, heading=heading)


def squats(num_frames: int = 60, fps: float = 30.0, rate: float = 0.6) -> motion_lib.Motion:
  """Squats (``rate`` per second), arms reaching forward as the hips go down."""
  t = np.arange(num_frames) / fps
  d = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t)  # depth of the squat, 0..1
  p = _Pose(num_frames)
  lean = 0.35 * d
  p.set("pelvis", x=lean)
  thigh = -1.3 * d  # thigh angle in the world, forward
  p.set("left_hip", x=thigh - lean, z=0.12 * d)
  p.set("right_hip", x=thigh - lean, z=-0.12 * d)
  p.set("left_knee", x=2.0 * d)
  p.set("right_knee", x=2.0 * d)
  p.set("left_ankle", x=-(thigh + 2.0 * d))  # keeps the feet flat
  p.set("right_ankle", x=-(thigh + 2.0 * d))
  p.set("spine2", x=-0.2 * d)
  # Arms from relaxed to straight forward: lower less, swing forward.
  p.arms_relaxed(swing_l=-1.3 * d, swing_r=-1.3 * d, elbow=0.2)
  return p.to_motion("squats", fps)


def arm_raises(num_frames: int = 60, fps: float = 30.0, rate: float = 0.5
               ) -> motion_lib.Motion:
  """Lateral arm raises to above the head, the two arms half a cycle apart."""
  t = np.arange(num_frames) / fps
  up_l = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t)
  up_r = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t + np.pi)
  p = _Pose(num_frames)
  p.arms_relaxed(elbow=0.1)
  p.angles[:, _INDEX["left_shoulder"], 2] = -_ARM_DOWN + 2.3 * up_l
  p.angles[:, _INDEX["right_shoulder"], 2] = _ARM_DOWN - 2.3 * up_r
  p.set("spine3", z=0.08 * (up_r - up_l))
  p.set("head", y=0.2 * (up_l - up_r))
  return p.to_motion("arm_raises", fps)


def jumping_jacks(num_frames: int = 60, fps: float = 30.0, rate: float = 1.0
                  ) -> motion_lib.Motion:
  """Jumping jacks: arms from the sides to overhead while the legs spread, with hops."""
  t = np.arange(num_frames) / fps
  phase = 2 * np.pi * rate * t
  o = 0.5 - 0.5 * np.cos(phase)  # 0 closed, 1 open
  p = _Pose(num_frames)
  p.arms_relaxed(elbow=0.15)
  p.angles[:, _INDEX["left_shoulder"], 2] = -_ARM_DOWN + 2.2 * o
  p.angles[:, _INDEX["right_shoulder"], 2] = _ARM_DOWN - 2.2 * o
  p.set("left_hip", x=-0.05, z=0.35 * o)
  p.set("right_hip", x=-0.05, z=-0.35 * o)
  p.set("left_ankle", z=-0.3 * o)
  p.set("right_ankle", z=0.3 * o)
  p.set("left_knee", x=0.1 + 0.15 * np.abs(np.sin(phase)))
  p.set("right_knee", x=0.1 + 0.15 * np.abs(np.sin(phase)))
  # Two hops per cycle (at open and at closed); airborne height on top of grounding.
  p.transl[:, 1] = 0.08 * np.abs(np.sin(phase))
  return p.to_motion("jumping_jacks", fps)


def dance(num_frames: int = 60, fps: float = 30.0, bpm: float = 110.0) -> motion_lib.Motion:
  """A simple dance: hip sway and knee bounce on the beat, torso twist, waving arms."""
  t = np.arange(num_frames) / fps
  beat = 2 * np.pi * bpm / 60.0 * t
  bar = beat / 4
  p = _Pose(num_frames)
  bounce = 0.5 - 0.5 * np.cos(beat)
  p.set("left_hip", x=-0.25 * bounce - 0.1 * np.sin(bar), z=0.1)
  p.set("right_hip", x=-0.25 * bounce + 0.1 * np.sin(bar), z=-0.1)
  p.set("left_knee", x=0.45 * bounce)
  p.set("right_knee", x=0.45 * bounce)
  p.set("left_ankle", x=-0.2 * bounce)
  p.set("right_ankle", x=-0.2 * bounce)
  p.set("pelvis", z=0.1 * np.sin(bar))
  p.set("spine1", z=-0.1 * np.sin(bar), y=0.15 * np.sin(bar))
  p.set("spine3", y=0.2 * np.sin(bar + 0.5))
  p.set("head", y=-0.25 * np.sin(bar + 0.5), x=0.1 * np.sin(beat))
  p.arms_relaxed()
  p.angles[:, _INDEX["left_shoulder"], 2] = -_ARM_DOWN + 1.0 + 0.9 * np.sin(bar)
  p.angles[:, _INDEX["right_shoulder"], 2] = _ARM_DOWN - 1.0 + 0.9 * np.sin(bar)
  p.angles[:, _INDEX["left_shoulder"], 0] = -0.5 - 0.4 * np.cos(beat)
  p.angles[:, _INDEX["right_shoulder"], 0] = -0.5 - 0.4 * np.cos(beat + np.pi)
  p.set("left_elbow", y=-1.0 - 0.5 * np.sin(beat))
  p.set("right_elbow", y=1.0 + 0.5 * np.sin(beat + np.pi))
  p.transl[:, 0] = 0.08 * np.sin(bar)
  return p.to_motion("dance", fps)


PARAMETRIC_MOTIONS: dict[str, Callable[..., motion_lib.Motion]] = {
    "walk_in_place": walk_in_place,
    "walk_path": walk_path,
    "turn_around": turn_around,
    "squats": squats,
    "arm_raises": arm_raises,
    "jumping_jacks": jumping_jacks,
    "dance": dance,
}


def parametric_motion(name: str, num_frames: int = 60, fps: float = 30.0) -> motion_lib.Motion:
  """One of :data:`PARAMETRIC_MOTIONS` by name."""
  if name not in PARAMETRIC_MOTIONS:
    raise ValueError(f"unknown parametric motion '{name}'; valid: {sorted(PARAMETRIC_MOTIONS)}")
  return PARAMETRIC_MOTIONS[name](num_frames=num_frames, fps=fps)


def get_motion(name: str, num_frames: int, fps: float = 30.0) -> motion_lib.Motion:
  """A motion by name: a parametric clip (:data:`PARAMETRIC_MOTIONS`) or a builtin one.

  Builtin real-capture clips (:func:`hsjax.motion.builtin_motion`) are resampled to ``fps``,
  turned to face +z at their first frame (the training camera's side), and cut or extended
  to ``num_frames`` (:func:`fit_length`).
  """
  if name in PARAMETRIC_MOTIONS:
    return parametric_motion(name, num_frames, fps)
  builtin = motion_pkg.builtin_motions()
  if name not in builtin:
    raise ValueError(f"unknown motion '{name}'; valid: parametric {sorted(PARAMETRIC_MOTIONS)} "
                     f"or builtin {builtin}")
  return prepare_clip(motion_pkg.builtin_motion(name, target_fps=fps), num_frames, fps)


def prepare_clip(clip: motion_lib.Motion, num_frames: int, fps: float = 30.0
                 ) -> motion_lib.Motion:
  """Any captured clip made ready for the benchmark, as :func:`get_motion` does its own.

  Resampled to ``fps``, turned to face +z at its first frame, centred, and cut or extended to
  ``num_frames`` (:func:`fit_length`).
  """
  if abs(float(clip.fps) - fps) > 1e-6:
    clip = motion_lib.resample(clip, fps)
  clip = motion_lib.normalize(clip, heading=True, ground=False, center=True)
  return fit_length(clip, num_frames)


def motion_digest(clip: motion_lib.Motion) -> str:
  """A short hash of a clip's content (poses, translation, frame rate)."""
  h = hashlib.sha1()
  for x in (clip.body_pose, clip.global_orient, clip.transl):
    h.update(np.ascontiguousarray(np.asarray(x, np.float64)).tobytes())
  h.update(repr(float(clip.fps)).encode())
  return h.hexdigest()[:12]


def fit_length(clip: motion_lib.Motion, num_frames: int) -> motion_lib.Motion:
  """The first ``num_frames`` of ``clip``, extended if it is shorter.

  A cyclic clip (``clip.loop``) is repeated with its horizontal root displacement per cycle
  accumulated (walking keeps going); any other clip is played back and forth (ping-pong),
  which keeps it continuous.
  """
  n = clip.num_frames
  if n >= num_frames:
    return clip.slice(0, num_frames)
  body_pose = np.asarray(clip.body_pose)
  orient = np.asarray(clip.global_orient)
  transl = np.asarray(clip.transl, np.float64)
  if clip.loop and n >= 2:
    # The frame after the last is frame 0 shifted by the cycle's displacement.
    step = transl[-1] - transl[-2]
    shift = transl[-1] + step - transl[0]
    shift[1] = 0.0
    cycle, idx = np.divmod(np.arange(num_frames), n)
    out_transl = transl[idx] + cycle[:, None] * shift
  else:
    period = max(2 * n - 2, 1)
    k = np.arange(num_frames) % period
    idx = np.where(k < n, k, period - k)
    out_transl = transl[idx]
  return motion_lib.make_motion(body_pose[idx], orient[idx], out_transl, clip.fps, clip.name,
                                loop=False)
