"""How faithful a retarget is: bone directions and twist, the trunk, the floor, the feet.

Every measure compares the retargeted SMPL motion, posed by SMPL's forward kinematics on the
target rest skeleton (and, for surface measures, the body's mesh skinned on it), with the
source posed by its own kinematics (``RetargetInfo.source_positions`` and
``source_rotations``, in SMPL axes and the target's scale):

* :func:`twist_errors`: per mapped limb joint, the twist about its bone of the joint's frame
  relative to the source joint's (after the rest correction): what a bone direction cannot
  show (a forearm turned palm-up vs palm-down).
* :func:`spine_segment_errors`: the trunk split at every mapped spine joint.
* :func:`floor_report`: the source's foot contacts and floor, soles in contact, how deep
  feet, hands, joints and mesh go below the floor where the source's counterpart is clear of
  it, and foot skate against the source's.
* :func:`pinch`: how much the skin between two joints collapses towards the bone (the
  "candy wrapper" of linear blend skinning under twist).
"""

from __future__ import annotations

import numpy as np

from hsjax import rotations_np
from hsjax.motion import motion as motion_lib
from hsjax.motion import placement as placement_lib
from hsjax.motion import retargeting
from hsjax.motion import skeleton

# Joints whose twist about their bone is compared with the source's (hips, knees, ankles,
# shoulders, wrists). Elbows are reported apart: they take a share of the wrist's twist by
# design (``retarget(twist=...)``).
TWIST_JOINTS = (1, 2, 4, 5, 7, 8, 16, 17, 20, 21)
ELBOWS = (18, 19)
TRUNK_CHAIN = (0, 3, 6, 9, 12)

# What a source joint must clear its floor by for the target's part to count as "above the
# floor" there: the flesh around a joint (metres).
CLEARANCE = 0.05


def _twist_about(rot: np.ndarray, axis: np.ndarray) -> np.ndarray:
  """[T] degrees, twist of [T, 3, 3] rotations about per-frame unit axes [T, 3]."""
  quat = rotations_np.matrix_to_quat(rot)
  along = np.sum(quat[:, 1:] * axis, -1)
  return np.degrees(2.0 * np.arctan2(along, quat[:, 0]))


def twist_errors(motion: motion_lib.Motion, info, joints=TWIST_JOINTS + ELBOWS
                 ) -> dict[str, np.ndarray]:
  """Per frame, the twist (degrees, signed) of each SMPL joint's frame about its bone,
  relative to its source joint's frame.

  The error rotation ``G_k · Q_kᵀ · G_srcᵀ`` (``Q_k`` the rest correction) is the identity when
  the SMPL joint turns exactly as its source joint; its twist about the posed SMPL bone is
  what a direction check misses.

  Returns:
    ``{smpl_joint_name: [T] degrees}`` for the mapped joints among ``joints``.
  """
  if info.source_rotations is None or info.rest_fix is None:
    raise ValueError("twist_errors: the RetargetInfo has no source rotations; retarget with "
                     "hsjax.motion.retarget")
  local = rotations_np.axis_angle_to_matrix(motion.full_pose)
  glob = skeleton.global_rotations(local)
  out = {}
  for k in joints:
    child = skeleton.BONE_CHILD[k]
    if k not in info.index or child is None:
      continue
    err = (glob[:, k] @ info.rest_fix[k].T @
           np.swapaxes(info.source_rotations[:, info.index[k]], -1, -2))
    axis = glob[:, k] @ (info.rest[child] - info.rest[k])
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    out[skeleton.SMPL_JOINT_NAMES[k]] = _twist_about(err, axis)
  return out


def spine_segment_errors(motion: motion_lib.Motion, info) -> dict[str, np.ndarray]:
  """Per frame, the angle (degrees) between each trunk segment and the source's.

  The trunk (pelvis, spine1-3, neck) is split at every mapped joint: a source with ``Ab,
  Chest`` gives pelvis-spine1, spine1-spine3 and spine3-neck, each compared with the source
  segment between the same mapped joints.

  Returns:
    ``{"pelvis-spine1": [T], ...}``.
  """
  chain = [k for k in TRUNK_CHAIN if k in info.index]
  bones = {f"{skeleton.SMPL_JOINT_NAMES[a]}-{skeleton.SMPL_JOINT_NAMES[b]}": (a, b)
           for a, b in zip(chain[:-1], chain[1:])}
  return retargeting.bone_direction_errors(motion, info, bones)


def source_floor(info, contacts_floor: float, body: placement_lib.BodyPoints,
                 lock: tuple[int, int]) -> float:
  """The source's floor (metres, SMPL axes); see :func:`hsjax.motion.placement.sole_floor`."""
  del info  # the floor follows from the contacts' floor and the target body alone
  return placement_lib.sole_floor(contacts_floor, body, lock)


def floor_report(motion: motion_lib.Motion, info, body: placement_lib.BodyPoints, *,
                 floor: float | None = None, tol: float = 0.02,
                 clearance: float = CLEARANCE) -> dict:
  """Floor contact and penetration of a retargeted motion.

  Args:
    motion: the retargeted clip.
    info: its :class:`~hsjax.motion.retargeting.RetargetInfo`.
    body: the target body's points.
    floor: the target's floor height; None: 0 when the motion was placed
      (``info.placement``), otherwise the source's floor (:func:`source_floor`), which an
      unplaced retarget shares (its ``transl`` is the scaled source path).
    tol: metres a sole may be off the floor in a contact frame, and a point below it, for
      ``contacts_kept`` and the ``*_frames_over`` counts.
    clearance: metres a source joint must clear its floor by for the target's points on that
      joint (its part) to count.

  Returns:
    A dict (lengths in metres, speeds in m/s): ``contact_frames`` [2] (left, right);
    ``sole_height`` mean and max absolute height of planted soles above the floor;
    ``penetration`` ``{feet, hands, joints, mesh: {max, frames_over}}`` (depth below the
    floor in frames where the source part is clear; ``frames_over`` counts those deeper than
    ``tol``); ``skate`` and ``source_skate`` (mean horizontal speed of the lock joints in
    contact frames) and their ``skate_ratio``; ``contacts_kept`` (fraction of contact
    foot-frames whose sole is within ``tol`` of the floor and whose lock joint moves no more
    than 1.2 times the source's plus 1 mm).
  """
  feet = placement_lib.source_foot_joints(info.index, info.parents)
  if not all(feet):
    raise ValueError(f"floor_report: the joint map {info.joint_map} maps no ankle or toe on "
                     "a side; foot contacts cannot be measured")
  contacts, joint_floor = placement_lib.detect_contacts(info.source_positions, feet,
                                                        motion.fps)
  lock = tuple(toe if toe in info.index else ankle for ankle, toe in ((7, 10), (8, 11)))
  src_floor = source_floor(info, joint_floor, body, lock)
  if floor is None:
    floor = 0.0 if info.placement is not None else src_floor
  local = rotations_np.axis_angle_to_matrix(motion.full_pose)
  glob, joints = placement_lib.forward(body.rest, local, motion.transl)
  points = placement_lib.skin(body, glob, joints) - np.array([0.0, floor, 0.0])
  joints = joints - np.array([0.0, floor, 0.0])
  src = info.source_positions

  def clear(k):
    while k not in info.index:
      k = skeleton.SMPL_PARENTS[k]
    return src[:, info.index[k], 1] - src_floor > clearance

  clear_joint = np.stack([clear(k) for k in range(24)], 1)  # [T, 24]
  depth_pts = np.where(clear_joint[:, body.part], -points[..., 1], 0.0)  # [T, P]
  depth_jnt = np.where(clear_joint, -joints[..., 1], 0.0)
  feet_m = body.mask(placement_lib.LEFT_FOOT_PARTS + placement_lib.RIGHT_FOOT_PARTS)
  hands_m = body.mask(placement_lib.LEFT_HAND_PARTS + placement_lib.RIGHT_HAND_PARTS)

  def pen(depth):
    d = np.maximum(depth.max(1) if depth.size else np.zeros(len(depth)), 0.0)
    return {"max": float(d.max()), "frames_over": int((d > tol).sum())}

  out = {"frames": motion.num_frames, "contact_frames": contacts.sum(0).tolist(),
         "penetration": {"feet": pen(depth_pts[:, feet_m]), "hands": pen(depth_pts[:, hands_m]),
                         "joints": pen(depth_jnt), "mesh": pen(depth_pts)}}
  soles = np.stack([points[:, body.mask(parts), 1].min(1) for parts in
                    (placement_lib.LEFT_FOOT_PARTS, placement_lib.RIGHT_FOOT_PARTS)], 1)
  planted = np.abs(soles[contacts])
  out["sole_height"] = {"mean": float(planted.mean()) if planted.size else 0.0,
                        "max": float(planted.max()) if planted.size else 0.0}
  # Skate: horizontal displacement per frame of the lock joints, where the foot is planted in
  # this frame and the previous one.
  step_t = np.linalg.norm(np.diff(joints[:, list(lock)][..., [0, 2]], axis=0), axis=-1)
  src_lock = src[:, [info.index[k] for k in lock]]
  step_s = np.linalg.norm(np.diff(src_lock[..., [0, 2]], axis=0), axis=-1)
  both = contacts[1:] & contacts[:-1]
  out["skate"] = float(step_t[both].mean() * motion.fps) if both.any() else 0.0
  out["source_skate"] = float(step_s[both].mean() * motion.fps) if both.any() else 0.0
  out["skate_ratio"] = out["skate"] / max(out["source_skate"], 1e-9) if both.any() else 1.0
  kept = (np.abs(soles[1:]) <= tol) & (step_t <= 1.2 * step_s + 1e-3)
  out["contacts_kept"] = float(kept[both].mean()) if both.any() else 1.0
  return out


def pinch(motion: motion_lib.Motion, body: placement_lib.BodyPoints, parent: int,
          child: int, *, min_weight: float = 0.2) -> np.ndarray:
  """Per frame, how much the skin between ``parent`` and ``child`` collapses onto the bone.

  The ring of vertices skinned to both joints (each weight above ``min_weight``, together
  above 0.9) is measured by its mean distance from the bone line (the posed ``parent`` to
  ``child`` joints) relative to the rest pose. Linear blend skinning shrinks it by
  ``cos(θ/2)`` for a twist ``θ`` between the two joints at equal weights.

  Returns:
    [T] fraction lost, ``1 - posed radius / rest radius`` (0: no pinch).
  """
  w = body.weights
  ring = (w[:, parent] > min_weight) & (w[:, child] > min_weight) & (
      w[:, parent] + w[:, child] > 0.9)
  if not ring.any():
    raise ValueError(f"pinch: no vertex is skinned to both joints {parent} and {child}")
  sub = placement_lib.BodyPoints(rest=body.rest, points=body.points[ring],
                                 weights=w[ring], part=body.part[ring], mesh=body.mesh)

  def radius(pts, a, b):
    axis = (b - a) / np.linalg.norm(b - a, axis=-1, keepdims=True)
    rel = pts - a[..., None, :]
    along = np.sum(rel * axis[..., None, :], -1, keepdims=True)
    return np.linalg.norm(rel - along * axis[..., None, :], axis=-1).mean(-1)

  local = rotations_np.axis_angle_to_matrix(motion.full_pose)
  glob, joints = placement_lib.forward(body.rest, local, motion.transl)
  posed = placement_lib.skin(sub, glob, joints)
  rest_r = radius(sub.points, body.rest[parent], body.rest[child])
  return 1.0 - radius(posed, joints[:, parent], joints[:, child]) / rest_r
