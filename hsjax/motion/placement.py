"""Contact-aware placement of a retargeted motion: floor, planted feet, no body part below it.

A retarget keeps every limb's direction, but a body with other proportions than the source's
neither stands on the source's floor nor keeps its planted feet still. :func:`place` corrects
that after retargeting, host-side (numpy, float64), in four steps:

1. **Contacts** (:func:`detect_contacts`): a source foot is planted in a frame when its lowest
   joint (ankle, toe or an end site below them) is within ``height_tol`` of the source's floor
   and moves slower than ``speed_tol``. The source floor is the lowest height its foot joints
   reach over the clip.
2. **Root.** The root moves so that, in contact frames, the lowest sole
   point of the planted feet (the body's mesh where it has one) lies on the floor ``y = 0``
   (the lowest of them: a planted foot is never pushed into the floor by the root; with two
   planted soles at different heights the root may go down by up to ``sole_tolerance``)
   and the planted feet's lock joints (toe, else ankle) move over each contact as the source's
   do (not at all when the source's foot is still). Each contact's anchor and the root's
   horizontal shift are solved together (:func:`foot_anchors`), so that the feet's anchors agree
   with each other where both are planted. Then the root moves, axis by axis, to where leg
   IK turns the planted legs least (:func:`root_shift`): with other leg proportions than the
   source's, a lower or shifted root lets both legs reach the floor by a small bend each
   (the per-frame result is low-passed over ``root_smooth`` seconds); where a planted leg
   cannot reach even straight, the root goes down by what it lacks (:func:`reach_drop`).
   Between contacts the offset is interpolated linearly.
3. **Legs.** Each planted foot is moved the rest of the way by two-bone IK on hip, knee and
   ankle (:func:`two_bone_ik`), keeping the foot's world orientation; its sole only as far
   as within ``sole_tolerance`` of the floor. The IK blends out over ``ramp`` frames either
   side of a contact.
4. **Floor.** Hands below the floor are first bent up at the wrist (:func:`bend_hand`, up to
   90°), then lifted by arm IK (the wrist keeps its world orientation, so the hand moves
   rigidly); a swinging foot below it by leg IK; any other
   part below it (knees, trunk, head) by raising the root, in frames where the source's
   corresponding joint is clear of its own floor. The planted feet are then put back by
   step 3.

Only the root path and, in the frames where IK acts, the limbs that IK moves change: the
report (:class:`Placement`) says where, so that limb-direction errors can be read apart for
those frames (``experiments/retarget_quality.py`` does).

Body points (:func:`body_points`): the default body's mesh vertices, skinned by linear blend
skinning on the rest skeleton; a rest skeleton without a mesh (``"generic"``, or given joints)
uses its joints plus sole points under the ankles and toes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hsjax import rotations_np
from hsjax.motion import motion as motion_lib
from hsjax.motion import skeleton

LEFT_FOOT_PARTS = (7, 10)
RIGHT_FOOT_PARTS = (8, 11)
LEFT_HAND_PARTS = (20, 22)
RIGHT_HAND_PARTS = (21, 23)
# (hip, knee, ankle) and (shoulder, elbow, wrist) chains moved by IK.
LEG_CHAINS = ((1, 4, 7), (2, 5, 8))
ARM_CHAINS = ((16, 18, 20), (17, 19, 21))
# The root's search after the planted feet's anchors (:func:`root_shift`): the axes of one
# round of a coordinate descent (y, x, z) and the shifts tried on each, metres.
ROOT_SEARCH_AXES = (1, 0, 2)
ROOT_HEIGHTS = np.linspace(-0.15, 0.05, 81)
ROOT_SLIDES = np.linspace(-0.10, 0.10, 81)


@dataclasses.dataclass(frozen=True)
class BodyPoints:
  """Surface points of a body on its rest skeleton, skinned to the 24 joints."""

  rest: np.ndarray  # [24, 3] rest joints, metres.
  points: np.ndarray  # [P, 3] rest positions, metres.
  weights: np.ndarray  # [P, 24] skinning weights (rows sum to 1).
  part: np.ndarray  # [P] int, the joint with the largest weight.
  mesh: bool  # True when the points are a body mesh's vertices.

  def mask(self, parts) -> np.ndarray:
    """[P] bool, the points of the given joints' parts."""
    return np.isin(self.part, parts)


def body_points(rest="auto", stride: int = 1) -> BodyPoints:
  """The points of a rest skeleton's body.

  Args:
    rest: a rest skeleton name (:func:`hsjax.motion.skeleton.rest_joints`) or [24, 3] joints.
    stride: keep every ``stride``-th vertex of a mesh.

  Returns:
    The mesh vertices for the default body; otherwise the 24 joints plus, under each ankle and
    toe, a sole point at the skeleton's sole height (the lowest joint minus its
    :func:`~hsjax.motion.skeleton.sole_offset`; given joints: the lowest joint).
  """
  if isinstance(rest, str):
    joints = skeleton.rest_joints(rest)
    mesh = skeleton.rest_mesh(rest)
    sole = joints[:, 1].min() - skeleton.sole_offset(rest)
  else:
    joints, mesh = np.asarray(rest, np.float64), None
    sole = joints[:, 1].min()
  if mesh is not None:
    verts, weights = mesh[0][::stride], mesh[1][::stride]
    return BodyPoints(rest=joints, points=verts, weights=weights,
                      part=np.argmax(weights, 1), mesh=True)
  feet = LEFT_FOOT_PARTS + RIGHT_FOOT_PARTS
  soles = joints[list(feet)].copy()
  soles[:, 1] = sole
  points = np.concatenate([joints, soles])
  part = np.concatenate([np.arange(24), feet])
  return BodyPoints(rest=joints, points=points, weights=np.eye(24)[part], part=part,
                    mesh=False)


def forward(rest: np.ndarray, local: np.ndarray, transl: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
  """``(world_rot [T, 24, 3, 3], joints [T, 24, 3])`` of SMPL's chain from local rotations."""
  glob = skeleton.global_rotations(local)
  return glob, skeleton.forward_joints(rest, local, transl)


def skin(body: BodyPoints, glob: np.ndarray, joints: np.ndarray) -> np.ndarray:
  """Linear blend skinning of the body points: [T, P, 3] metres.

  Args:
    body: the points.
    glob: [T, 24, 3, 3] world rotations.
    joints: [T, 24, 3] posed joints (``transl`` included).
  """
  trans = joints - np.einsum("tkij,kj->tki", glob, body.rest)  # [T, 24, 3]
  out = np.zeros((glob.shape[0], body.points.shape[0], 3))
  for k in range(24):  # per joint, only the points it moves (most have 1-3 joints)
    sel = np.flatnonzero(body.weights[:, k])
    if sel.size:
      moved = np.einsum("tij,pj->tpi", glob[:, k], body.points[sel]) + trans[:, k, None]
      out[:, sel] += body.weights[sel, k, None] * moved
  return out


def lowest_heights(body: BodyPoints, glob: np.ndarray, joints: np.ndarray, masks,
                   chunk: int = 256) -> np.ndarray:
  """[T, M] metres, the height of the lowest skinned point in each of ``masks`` ([P] bool
  arrays, or ``slice(None)`` for all points), skinned ``chunk`` frames at a time so that
  memory does not grow with the clip's length (arguments as :func:`skin`'s)."""
  out = np.empty((glob.shape[0], len(masks)))
  for start in range(0, glob.shape[0], chunk):
    height = skin(body, glob[start:start + chunk], joints[start:start + chunk])[..., 1]
    for m, mask in enumerate(masks):
      out[start:start + chunk, m] = height[:, mask].min(1)
  return out


# ------------------------------------------------------------------------------------------
# Source contacts


def source_foot_joints(index: dict, parents: tuple[int, ...]) -> tuple[list[int], list[int]]:
  """Source joints of the left and right foot: the mapped ankle and toe and every source joint
  below the lowest of them (toe joints and end sites the map skips)."""
  children = {}
  for j, p in enumerate(parents):
    children.setdefault(p, []).append(j)
  out = []
  for ankle, toe in ((7, 10), (8, 11)):
    mapped = [index[k] for k in (ankle, toe) if k in index]
    feet, stack = list(mapped), [mapped[-1]] if mapped else []
    while stack:
      for c in children.get(stack.pop(), []):
        feet.append(c)
        stack.append(c)
    out.append(sorted(set(feet)))
  return out[0], out[1]


def _clean(mask: np.ndarray, min_run: int = 2) -> np.ndarray:
  """Fills one-frame gaps and drops runs shorter than ``min_run`` frames ([T] bool)."""
  mask = mask.copy()
  gap = ~mask[1:-1] & mask[:-2] & mask[2:]
  mask[1:-1] |= gap
  out = mask.copy()
  t = 0
  while t < len(mask):
    if mask[t]:
      end = t
      while end < len(mask) and mask[end]:
        end += 1
      if end - t < min_run:
        out[t:end] = False
      t = end
    else:
      t += 1
  return out


def detect_contacts(positions: np.ndarray, feet: tuple[list[int], list[int]], fps: float, *,
                    floor: float | None = None, height_tol: float = 0.06,
                    speed_tol: float = 0.35) -> tuple[np.ndarray, float]:
  """Foot contacts of the source.

  Args:
    positions: [T, Js, 3] source joints (SMPL axes, y up, metres on the target's scale).
    feet: source joints of the left and right foot (:func:`source_foot_joints`).
    fps: frame rate.
    floor: height of the source's floor at the foot joints' level; None: the lowest height
      any foot joint reaches over the clip.
    height_tol: metres above ``floor`` that a planted foot's lowest joint may be.
    speed_tol: metres per second that a planted foot's lowest joint may move (3D).

  Returns:
    ``(contacts [T, 2] bool (left, right), floor)``.
  """
  num_frames = positions.shape[0]
  lowest = []
  for joints in feet:
    if not joints:
      raise ValueError(f"detect_contacts: no source joint for a foot (feet {feet})")
    lowest.append(positions[:, joints, 1].min(1))
  if floor is None:
    floor = float(min(h.min() for h in lowest))
  contacts = np.zeros((num_frames, 2), bool)
  for side, joints in enumerate(feet):
    pos = positions[:, joints]  # [T, F, 3]
    vel = np.gradient(pos, axis=0) * fps if num_frames > 1 else np.zeros_like(pos)
    which = np.argmin(pos[..., 1], 1)
    speed = np.linalg.norm(vel[np.arange(num_frames), which], axis=-1)
    raw = (lowest[side] - floor < height_tol) & (speed < speed_tol)
    contacts[:, side] = _clean(raw) if num_frames > 2 else raw
  return contacts, floor


# ------------------------------------------------------------------------------------------
# Inverse kinematics


def _two_bone_positions(joints: np.ndarray, chain: tuple[int, int, int], target: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
  """``(middle [T, 3], end [T, 3])``: where :func:`two_bone_ik` puts the chain's middle and end
  joints (same arguments)."""
  a, b, c = (joints[:, k] for k in chain)
  l1 = np.linalg.norm(b - a, axis=-1)
  l2 = np.linalg.norm(c - b, axis=-1)
  to = target - a
  dist = np.linalg.norm(to, axis=-1)
  dist_c = np.clip(dist, np.abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6)
  u = to / np.maximum(dist, 1e-9)[:, None]
  pole = (b - a) - np.sum((b - a) * u, -1, keepdims=True) * u
  pole_n = np.linalg.norm(pole, axis=-1, keepdims=True)
  # A straight limb has no bend plane: keep the current knee side (the end's old direction).
  fallback = (c - b) - np.sum((c - b) * u, -1, keepdims=True) * u
  pole = np.where(pole_n > 1e-6, pole, fallback)
  pole = pole / np.maximum(np.linalg.norm(pole, axis=-1, keepdims=True), 1e-12)
  cos_a = np.clip((l1 ** 2 + dist_c ** 2 - l2 ** 2) / (2 * l1 * dist_c), -1.0, 1.0)
  new_b = a + l1[:, None] * (cos_a[:, None] * u + np.sqrt(1 - cos_a ** 2)[:, None] * pole)
  new_c = a + dist_c[:, None] * u
  return new_b, new_c


def two_bone_ik(glob: np.ndarray, joints: np.ndarray, chain: tuple[int, int, int],
                target: np.ndarray) -> np.ndarray:
  """Moves the end of a two-bone chain to ``target``, keeping its bend plane and end rotation.

  Args:
    glob: [T, 24, 3, 3] world rotations (changed in place for the chain's three joints).
    joints: [T, 24, 3] posed joints.
    chain: (root, middle, end) joint indices, e.g. (hip, knee, ankle).
    target: [T, 3] wanted end positions (an unreachable one is approached along its line).

  Returns:
    ``glob`` with the root and middle joints turned by the smallest rotations that take
    their bones to the new positions, and the end joint's world rotation unchanged.
  """
  a, b, c = (joints[:, k] for k in chain)
  new_b, new_c = _two_bone_positions(joints, chain, target)
  r1 = rotations_np.rotation_between(b - a, new_b - a)
  r2 = rotations_np.rotation_between(np.einsum("tij,tj->ti", r1, c - b), new_c - new_b)
  end = glob[:, chain[2]].copy()
  glob[:, chain[0]] = r1 @ glob[:, chain[0]]
  glob[:, chain[1]] = r2 @ r1 @ glob[:, chain[1]]
  glob[:, chain[2]] = end
  return glob


def _leg_ik_cost(joints: np.ndarray, chain: tuple[int, int, int], target: np.ndarray
                 ) -> np.ndarray:
  """[T] degrees by which :func:`two_bone_ik` turns the chain's two bones (their sum), plus
  10 degrees a centimetre by which the end falls short of an unreachable target."""
  a, b, c = (joints[:, k] for k in chain)
  new_b, new_c = _two_bone_positions(joints, chain, target)
  return (rotations_np.angle_between(b - a, new_b - a) +
          rotations_np.angle_between(c - b, new_c - new_b) +
          1e3 * np.linalg.norm(target - new_c, axis=-1))


def bend_hand(body: BodyPoints, glob: np.ndarray, joints: np.ndarray, wrist: int, parts,
              max_deg: float = 90.0, step_deg: float = 10.0) -> np.ndarray:
  """Turns a hand that reaches below the floor up about its wrist (dorsiflexion), by the
  smallest multiple of ``step_deg`` up to ``max_deg`` that clears the floor.

  A source with rigid or short hands (DeepMimic's character, many BVH skeletons) leans on a
  wrist where SMPL's longer, straight hand would dig in; a person puts the palm down. The
  forearm is untouched; only the hand's orientation changes, about the horizontal axis
  across the hand.

  Args:
    body: the body points.
    glob: [T, 24, 3, 3] world rotations.
    joints: [T, 24, 3] posed joints.
    wrist: the wrist joint (20 or 21); ``parts`` its hand's joints (wrist and hand).

  Returns:
    ``glob`` with the wrist's world rotation changed where the hand was below the floor.
  """
  mask = body.mask(parts)
  sub = BodyPoints(rest=body.rest, points=body.points[mask], weights=body.weights[mask],
                   part=body.part[mask], mesh=body.mesh)
  low = lowest_heights(sub, glob, joints, [slice(None)])[:, 0]
  todo = np.flatnonzero(low < 0)
  if todo.size == 0:
    return glob
  hand = skeleton.BONE_CHILD[wrist]
  direction = joints[todo, hand] - joints[todo, wrist]
  up = np.array([0.0, 1.0, 0.0])
  axis = np.cross(direction, up)
  forearm = joints[todo, wrist] - joints[todo, skeleton.SMPL_PARENTS[wrist]]
  axis = np.where(np.linalg.norm(axis, axis=-1, keepdims=True) > 1e-6, axis,
                  np.cross(forearm, up))
  axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
  pivot = joints[todo, wrist]
  base = glob[todo, wrist].copy()
  done = np.zeros(todo.size, bool)
  for deg in np.arange(step_deg, max_deg + 1e-9, step_deg):
    turn = rotations_np.axis_angle_to_matrix(axis * np.radians(deg))
    trial = glob[todo].copy()
    trial[:, wrist] = turn @ base
    trial[:, hand] = turn @ glob[todo, hand]
    moved = joints[todo].copy()
    moved[:, hand] = pivot + np.einsum("tij,tj->ti", turn, joints[todo, hand] - pivot)
    clear = lowest_heights(sub, trial, moved, [slice(None)])[:, 0] >= 0
    pick = ~done & (clear | (deg >= max_deg - 1e-9))
    glob[todo[pick], wrist] = trial[pick, wrist]
    glob[todo[pick], hand] = trial[pick, hand]
    done |= pick
    if done.all():
      break
  return glob


def local_rotations(glob: np.ndarray) -> np.ndarray:
  """[T, 24, 3, 3] world rotations -> local rotations (each in its SMPL parent's frame)."""
  local = np.empty_like(glob)
  local[:, 0] = glob[:, 0]
  for k in range(1, 24):
    local[:, k] = np.swapaxes(glob[:, skeleton.SMPL_PARENTS[k]], -1, -2) @ glob[:, k]
  return local


def _ramp(contact: np.ndarray, ramp: int) -> tuple[np.ndarray, np.ndarray]:
  """Per frame, the nearest contact frame [T] int and a weight [T] (1 in contact, falling
  linearly to 0 ``ramp + 1`` frames away); frames without any contact get weight 0."""
  num_frames = len(contact)
  frames = np.flatnonzero(contact)
  if frames.size == 0:
    return np.zeros(num_frames, int), np.zeros(num_frames)
  t = np.arange(num_frames)
  nearest = frames[np.argmin(np.abs(t[:, None] - frames[None]), 1)]
  weight = np.clip(1.0 - np.abs(t - nearest) / (ramp + 1.0), 0.0, 1.0)
  return nearest, weight


def _interpolate(values: np.ndarray, known: np.ndarray) -> np.ndarray:
  """Linear interpolation of [T, D] ``values`` from the ``known`` [T] frames (held at the
  ends); zeros when no frame is known."""
  if not known.any():
    return np.zeros_like(values)
  t = np.arange(values.shape[0])
  return np.stack([np.interp(t, t[known], values[known, d]) for d in range(values.shape[1])],
                  -1)


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
  """[T] values low-passed by a Gaussian of ``sigma`` frames (ends reflected)."""
  if sigma <= 0 or len(values) < 2:
    return values
  radius = int(np.ceil(3 * sigma))
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  padded = np.pad(values, radius, mode="reflect" if len(values) > radius else "edge")
  return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def _smooth_cover(values: np.ndarray, sigma: float, tol: float = 1e-4) -> np.ndarray:
  """[T] a curve low-passed like :func:`_smooth` that lies on or above ``values`` [T] (to
  ``tol``): a one-frame need becomes a smooth bump no lower than it."""
  if not values.any() or sigma <= 0:
    return values
  width = 2 * int(np.ceil(sigma)) + 1
  padded = np.pad(values, width // 2, mode="edge")
  raised = np.lib.stride_tricks.sliding_window_view(padded, width).max(1)
  for _ in range(100):
    out = _smooth(raised, sigma)
    gap = values - out
    if gap.max() < tol:
      return out
    raised = raised + np.maximum(gap, 0.0)
  return np.maximum(out, values)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
  return list(zip(edges[::2], edges[1::2]))


def _planted_moves(joints: np.ndarray, soles: np.ndarray, anchors: np.ndarray, side: int,
                   lock: tuple[int, int], sole_tolerance: float) -> np.ndarray:
  """[T, 3] how far leg IK moves a planted foot: its lock joint over the floor onto its anchor,
  its sole to within ``sole_tolerance`` of the floor (``soles`` [T, 2] metres)."""
  move = np.zeros((joints.shape[0], 3))
  move[:, [0, 2]] = (anchors[:, side] - joints[:, lock[side]])[:, [0, 2]]
  sole = soles[:, side]
  move[:, 1] = np.clip(sole, -sole_tolerance, sole_tolerance) - sole
  return move


def root_shift(joints: np.ndarray, soles: np.ndarray, anchors: np.ndarray,
               contacts: np.ndarray, lock: tuple[int, int], sole_tolerance: float,
               shifts: np.ndarray, axis: int) -> np.ndarray:
  """[T] the shift of the root along ``axis``, out of ``shifts`` (metres), that lets leg IK
  plant the feet by the least turn of the legs' bones (summed over the planted legs).

  Moving the root keeps every bone's direction. Where the target's legs have other
  proportions than the source's, two planted feet cannot both reach their anchors with the
  source's leg directions, and how the difference is split between the root and each leg
  decides how far the legs turn: a bent leg shortens or lengthens by a smaller turn than a
  straight one (:func:`_leg_ik_cost`). Ties go to the smallest shift; frames without a
  planted foot get 0.

  Args:
    joints: [T, 24, 3] posed joints.
    soles: [T, 2] metres, the lowest point of each foot.
    anchors: [T, 2, 3] where the planted feet's lock joints are held (:func:`foot_anchors`).
    contacts: [T, 2] bool.
    lock: the lock joints (toe, else ankle).
    sole_tolerance: as :func:`place`'s.
    shifts: [S] metres to try.
    axis: 0, 1 or 2 (y is up).
  """
  cost = np.zeros((len(shifts), joints.shape[0]))
  for s, amount in enumerate(shifts):
    moved = joints + np.eye(3)[axis] * amount
    moved_soles = soles + (amount if axis == 1 else 0.0)
    for side, chain in enumerate(LEG_CHAINS):
      target = moved[:, chain[2]] + _planted_moves(moved, moved_soles, anchors, side, lock,
                                                   sole_tolerance)
      cost[s] += np.where(contacts[:, side], _leg_ik_cost(moved, chain, target), 0.0)
  cost += 1e-6 * np.abs(shifts)[:, None]
  return np.where(contacts.any(1), shifts[np.argmin(cost, 0)], 0.0)


def reach_drop(joints: np.ndarray, soles: np.ndarray, anchors: np.ndarray,
               contacts: np.ndarray, lock: tuple[int, int], sole_tolerance: float
               ) -> np.ndarray:
  """[T] metres the root must go down for leg IK to reach every planted foot's target (the
  hip within the leg's length of it; arguments as :func:`root_shift`'s)."""
  need = np.zeros(joints.shape[0])
  for side, chain in enumerate(LEG_CHAINS):
    hip, knee, ankle = (joints[:, k] for k in chain)
    target = ankle + _planted_moves(joints, soles, anchors, side, lock, sole_tolerance)
    length = np.linalg.norm(knee - hip, axis=-1) + np.linalg.norm(ankle - knee, axis=-1)
    across = np.linalg.norm((target - hip)[:, [0, 2]], axis=-1)
    down = hip[:, 1] - target[:, 1]
    allowed = np.sqrt(np.maximum(length ** 2 - across ** 2, 0.0))
    need = np.maximum(need, np.where(contacts[:, side], np.maximum(down - allowed, 0.0), 0.0))
  return need


# ------------------------------------------------------------------------------------------
# Placement


@dataclasses.dataclass(frozen=True)
class Placement:
  """What :func:`place` found and did."""

  contacts: np.ndarray  # [T, 2] bool, source foot contacts (left, right).
  source_floor: float  # metres, the source floor at foot-joint level (SMPL axes, scaled).
  lock_joints: tuple[int, int]  # SMPL joints held still in contact (toe, else ankle).
  source_lock: tuple[int, int]  # their source joints (-1: unmapped).
  root_offset: np.ndarray  # [T, 3] metres added to ``transl``.
  ik_frames: np.ndarray  # [T, 4] bool: IK moved the (left leg, right leg, left arm, right arm).
  root_lift: np.ndarray  # [T] metres the root was raised in the last floor-clearing round.


def sole_floor(joint_floor: float, body: BodyPoints, lock: tuple[int, int]) -> float:
  """The source's floor (metres, SMPL axes) from its foot joints' floor: less the target's
  rest height of the lock joints above its sole (the source's own sole is not known)."""
  sole = body.points[body.mask(LEFT_FOOT_PARTS + RIGHT_FOOT_PARTS), 1].min()
  return joint_floor - float(np.mean([body.rest[k, 1] for k in lock]) - sole)


def _source_clear(info, k: int, floor: float, clearance: float) -> np.ndarray:
  """[T] bool, whether the source joint mapped to SMPL joint ``k`` (or its nearest mapped
  ancestor) is more than ``clearance`` above the source floor."""
  while k not in info.index:
    k = skeleton.SMPL_PARENTS[k]
  return info.source_positions[:, info.index[k], 1] - floor > clearance


def foot_anchors(feet: np.ndarray, source_feet: np.ndarray, contacts: np.ndarray,
                 max_rounds: int = 200, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
  """Where the planted feet are held, and the root's horizontal shift that takes them there.

  Each contact run gets one anchor that follows the source's own foot over the run (a pivot,
  a slide: skate is the source's, no more); each frame a root shift. Together they minimise
  the planted feet's squared distance to their anchors after the shift, that is what leg IK
  has to move. Solved by alternating the two (each the mean of the other's residuals) until
  the shift changes by less than ``tol`` metres: a foot planted over a long run then gets the
  anchor that agrees with the other foot's in the frames both are planted, not the average
  of where it was over its whole run.

  Args:
    feet: [T, 2, 3] the target's lock joints as retargeted.
    source_feet: [T, 2, 3] the source's.
    contacts: [T, 2] bool.

  Returns:
    ``(anchors [T, 2, 3], shift [T, 3])``: anchors in contact frames (zero elsewhere); the
    shift is zero in frames without contact (its y is unused).
  """
  num_frames = feet.shape[0]
  anchors = np.zeros((num_frames, 2, 3))
  shift = np.zeros((num_frames, 3))
  count = np.maximum(contacts.sum(1), 1)[:, None]
  runs = []  # (side, start, stop, the source foot's horizontal slide over the run)
  for side in range(2):
    for start, stop in _runs(contacts[:, side]):
      delta = source_feet[start:stop, side] - source_feet[start, side]
      delta[:, 1] = 0.0
      runs.append((side, start, stop, delta))
  for _ in range(max_rounds):
    for side, start, stop, delta in runs:
      anchors[start:stop, side] = (feet[start:stop, side] + shift[start:stop] - delta
                                   ).mean(0) + delta
    diff = np.where(contacts[..., None], anchors - feet, 0.0)
    shift, last = diff.sum(1) / count, shift
    if np.abs(shift - last).max() < tol:
      break
  return anchors, shift


def place(motion: motion_lib.Motion, info, body: BodyPoints, *, height_tol: float = 0.06,
          speed_tol: float = 0.35, clearance: float = 0.05, ramp: int = 3,
          sole_tolerance: float = 0.01, iterations: int = 2, root_search: bool = True,
          root_rounds: int = 5, root_smooth: float = 0.1) -> tuple[motion_lib.Motion, Placement]:
  """Places a retargeted motion on the floor ``y = 0`` (algorithm in the module docstring).

  Args:
    motion: the retargeted clip (placed for ``body.rest``).
    info: its :class:`~hsjax.motion.retargeting.RetargetInfo`.
    body: the target body's points (:func:`body_points`).
    height_tol, speed_tol: contact thresholds (:func:`detect_contacts`), metres and m/s.
    clearance: metres above its floor (:func:`sole_floor`) that a source joint must be for
      the target's part to be kept above the floor by raising the root.
    ramp: frames over which the foot IK blends out either side of a contact.
    sole_tolerance: metres a planted sole may sit above or below the floor before leg IK
      moves it (about what a shoe's sole gives): each centimetre of IK turns the leg's bones
      by degrees where the target's leg proportions differ from the source's.
    iterations: rounds of floor clearing and foot re-planting.
    root_search: after the anchors, move the root where leg IK turns the planted legs least
      (:func:`root_shift`), in turn along ``ROOT_SEARCH_AXES``, ``root_rounds`` times (the
      descent has converged by five on the clips measured in the motions README), then down
      where a planted leg cannot reach (:func:`reach_drop`).
    root_smooth: seconds, the Gaussian that low-passes each axis's search result over time
      (the search is per frame).

  Returns:
    ``(motion, report)``.
  """
  num_frames = motion.num_frames
  feet = source_foot_joints(info.index, info.parents)
  if all(feet):
    contacts, floor = detect_contacts(info.source_positions, feet, motion.fps,
                                      height_tol=height_tol, speed_tol=speed_tol)
  else:  # no mapped ankle or toe on a side: no contacts, the feet grounded over the clip
    contacts = np.zeros((num_frames, 2), bool)
    floor = float(info.source_positions[..., 1].min())
  lock = tuple(toe if toe in info.index else ankle for ankle, toe in ((7, 10), (8, 11)))
  local = rotations_np.axis_angle_to_matrix(motion.full_pose)
  transl = np.asarray(motion.transl, np.float64).copy()
  foot_masks = (body.mask(LEFT_FOOT_PARTS), body.mask(RIGHT_FOOT_PARTS))

  # Step 2: root offsets from the planted feet.
  glob, joints = forward(body.rest, local, transl)
  soles = lowest_heights(body, glob, joints, foot_masks)
  any_contact = contacts.any(1)
  offset = np.zeros((num_frames, 3))
  if any_contact.any():
    low = np.where(contacts, soles, np.inf).min(1)
    # Two planted soles at different heights (other leg proportions than the source's): the
    # root goes down by up to the tolerance, so that both may sit within it of the floor and
    # leg IK moves only what is left.
    spread = np.where(contacts, soles, -np.inf).max(1) - low
    down = np.minimum(sole_tolerance, np.maximum(0.0, spread - sole_tolerance))
    offset[:, 1] = _interpolate((-low - down)[:, None], any_contact)[:, 0]
    anchors, horiz = foot_anchors(joints[:, list(lock)],
                                  info.source_positions[:, [info.index[k] for k in lock]],
                                  contacts)
    offset[:, [0, 2]] = _interpolate(horiz[:, [0, 2]], any_contact)
  else:
    offset[:, 1] = -soles.min()
    anchors = None
  transl = transl + offset
  if anchors is not None and root_search:
    # A root shift moves the joints and the mesh rigidly: joints and soles follow by addition.
    glob, joints = forward(body.rest, local, transl)
    soles = lowest_heights(body, glob, joints, foot_masks)
    moved = np.zeros((num_frames, 3))
    for axis in ROOT_SEARCH_AXES * root_rounds:
      shift = root_shift(joints + moved[:, None], soles + moved[:, 1:2], anchors, contacts,
                         lock, sole_tolerance, ROOT_HEIGHTS if axis == 1 else ROOT_SLIDES, axis)
      moved[:, axis] += _smooth(_interpolate(shift[:, None], any_contact)[:, 0],
                                root_smooth * motion.fps)
    # Where a planted leg, even straight, cannot reach its target (a long stride at heel strike
    # on shorter legs), the root goes down by what it lacks, spread smoothly over time.
    for _ in range(3):
      need = reach_drop(joints + moved[:, None], soles + moved[:, 1:2], anchors, contacts, lock,
                        sole_tolerance)
      moved[:, 1] -= _smooth_cover(need, root_smooth * motion.fps)
    transl += moved
    offset += moved

  ik = np.zeros((num_frames, 4), bool)
  root_lift = np.zeros(num_frames)
  for it in range(iterations + 1):
    glob, joints = forward(body.rest, local, transl)
    # Step 3: planted feet to their anchors, soles on the floor.
    if anchors is not None:
      soles = lowest_heights(body, glob, joints, foot_masks)
      for side, chain in enumerate(LEG_CHAINS):
        nearest, weight = _ramp(contacts[:, side], ramp)
        if not weight.any():
          continue
        move = _planted_moves(joints, soles, anchors, side, lock, sole_tolerance)
        move = move[nearest] * weight[:, None]
        act = weight > 0
        glob[act] = two_bone_ik(glob[act], joints[act], chain,
                                joints[act, chain[2]] + move[act])
        ik[act, side] = True
      local = local_rotations(glob)
      glob, joints = forward(body.rest, local, transl)
    if it == iterations:
      break
    # Step 4: hands bent up at the wrist, then hands and swinging feet lifted by IK, other
    # parts by the root.
    for wrist, parts in ((20, LEFT_HAND_PARTS), (21, RIGHT_HAND_PARTS)):
      glob = bend_hand(body, glob, joints, wrist, parts)
    local = local_rotations(glob)
    glob, joints = forward(body.rest, local, transl)
    limb_parts = (LEFT_HAND_PARTS, RIGHT_HAND_PARTS, LEFT_FOOT_PARTS, RIGHT_FOOT_PARTS)
    lows = lowest_heights(body, glob, joints, [body.mask(parts) for parts in limb_parts])
    for side, chain in enumerate(ARM_CHAINS + LEG_CHAINS):
      depth = np.maximum(0.0, -lows[:, side])
      if side >= 2:  # a swinging foot; with no foot planted the root lifts it instead
        depth = np.where(contacts[:, side - 2] | ~any_contact, 0.0, depth)
      act = depth > 1e-4
      if act.any():
        lift = np.zeros((int(act.sum()), 3))
        lift[:, 1] = depth[act]
        glob[act] = two_bone_ik(glob[act], joints[act], chain, joints[act, chain[2]] + lift)
        ik[act, (2, 3, 0, 1)[side]] = True
    local = local_rotations(glob)
    glob, joints = forward(body.rest, local, transl)
    others = np.unique(body.part[~body.mask(sum(limb_parts, ()))])
    lows = lowest_heights(body, glob, joints, [body.mask(LEFT_FOOT_PARTS + RIGHT_FOOT_PARTS)] +
                          [body.part == k for k in others])
    lift = np.where(any_contact, 0.0, np.maximum(0.0, -lows[:, 0]))
    source_sole_floor = sole_floor(floor, body, lock)
    for k, low in zip(others, lows[:, 1:].T):
      clear = _source_clear(info, int(k), source_sole_floor, clearance)
      lift = np.maximum(lift, np.where(clear, np.maximum(0.0, -low), 0.0))
    transl[:, 1] += lift
    offset[:, 1] += lift
    root_lift = lift
  full = rotations_np.matrix_to_axis_angle(local)
  placed = motion_lib.make_motion(full[:, 1:], full[:, 0], transl, motion.fps, motion.name,
                                  loop=motion.loop)
  report = Placement(contacts=contacts, source_floor=floor, lock_joints=lock,
                     source_lock=tuple(info.index.get(k, -1) for k in lock),
                     root_offset=offset,
                     ik_frames=ik, root_lift=root_lift)
  return placed, report
