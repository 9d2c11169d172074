"""Retargeting a motion on any joint tree onto SMPL's 24 joints.

Inputs: a source skeleton (joint names, parents, rest offsets: the pose in which every local
rotation is the identity, as in BVH), per-frame local rotations and translations, and a joint
map from SMPL joint names to source joint names.

Algorithm (all host-side numpy, float64):

1. **Axes.** The source frame is turned into SMPL's (y up, facing +z, left +x) by a signed
   permutation ``C``, found from the rest pose (left = left hip − right hip, up = neck − pelvis,
   each snapped to the nearest axis; from the posed frames' median when the rest pose does
   not stand, its legs not pointing away from its trunk) or given. Rotations become
   ``C G Cᵀ``, points ``C p``.
2. **Rest correction.** Each mapped SMPL limb joint ``k`` gets the world rotation of its source
   joint composed with a constant rest correction, ``G_k = G_src · Q_k``, where ``Q_k`` is the
   smallest rotation taking SMPL's rest bone (``k`` to the next mapped joint along its chain,
   e.g. shoulder→elbow) onto the source's rest bone. A source in an A-pose, an I-pose or a
   T-pose therefore maps its rest onto SMPL's T-pose, and the twist about the bone follows the
   source joint. Trunk joints (:data:`TRUNK_JOINTS`) take the same correction with
   ``trunk="align"`` (the default), so that each SMPL trunk segment points along the
   source's (SMPL's rest curve is straightened to the source's); the pelvis never does (the
   hips hang on it; it only takes the quarter turns of a rest whose pelvis frame is turned,
   :func:`pelvis_rest_fix`), so the pelvis-to-spine1 segment keeps the two rests' constant
   angle.
   With ``trunk="keep"`` they take none: SMPL's curved spine stays curved. A mapped hand
   or wrist with no mapped joint below it takes the correction of its nearest mapped
   ancestor (a source wrist rigid on its forearm leaves SMPL's wrist at the identity); a
   mapped ankle or toe with none below it takes no correction (standing rests have flat
   feet).
3. **Folding.** Per frame, ``G_k`` is pre-multiplied by the smallest rotation taking the
   source bone where the source joint's own frame puts it (``G_src`` times its rest bone) to
   where it is (the two mapped joints' posed positions). It is the identity when no unmapped
   source joint sits between the two ends; otherwise it folds that joint's rotation (a "roll"
   or "twist" joint, an extra spine or neck segment) into the bone. Limb bones therefore point
   exactly along their source bones in every frame.
4. **Joints without a counterpart.** Source joints that no SMPL joint maps to are folded into
   their neighbours (their rotation reaches the next mapped descendant through step 2/3).
   SMPL joints that no source joint maps to keep the identity local rotation, except inside
   the spine (spine1, spine2, spine3) and the neck–head chain: there a run of unmapped joints
   followed by a mapped one shares that joint's rotation relative to the run's parent equally
   (``R^(1/n)`` each), so that a single source chest joint bends the whole SMPL spine
   (``spread=True``, the default; the DeepMimic importer turns it off, see
   :mod:`hsjax.motion.deepmimic`). With ``trunk="align"`` the mapped joint below such a run
   is then turned so that the chord up to the mapped joint still lies on the source segment.
   Which SMPL spine joints a preset's trunk joints take is decided by the chain
   (:func:`assign_spine`: two source joints, e.g. MotionBuilder's ``Ab, Chest``, go to
   spine1 and spine3), and :func:`check_spine` warns about source trunk joints left unmapped.
5. **Root.** ``transl`` places SMPL's pelvis joint at ``scale ·`` the source pelvis position
   (``scale`` defaults to the ratio of SMPL's to the source's leg length, hip→knee→ankle, so
   that strides match the target legs).
6. **Twist** (``twist``, default 0.5): that share of each SMPL wrist's twist about the
   forearm moves into the elbow (:func:`distribute_twist`); hands and bone directions are
   unchanged, the skin pinches less at the wrist.
7. **Placement** (``placement="contact"``, the default for any skeleton but SMPL's own):
   :func:`hsjax.motion.placement.place` puts the soles on the floor ``y = 0`` in the
   source's foot contacts, keeps planted feet moving only as the source's do, and no body
   part below the floor where the source's is above it.

The quality of a retarget is measured by :func:`bone_direction_errors`: the angle between each
source bone and the SMPL bone it maps to, after running both skeletons' forward kinematics;
twist, trunk segments, floor, skate and skin pinch by :mod:`hsjax.motion.quality`.

One concept, one module (about 660 lines): the retargeting algorithm and its joint maps.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from hsjax import rotations_np
from hsjax.motion import motion as motion_lib
from hsjax.motion import skeleton

# Joints of the trunk (pelvis, spine, neck, head): no rest correction (step 2).
TRUNK_JOINTS = (0, 3, 6, 9, 12, 15)
# Ankles and toes: without a mapped joint below them they keep the world rest orientation.
FOOT_JOINTS = (7, 8, 10, 11)

# Chains whose unmapped joints share the next mapped joint's rotation (step 4).
SPREAD_CHAINS = ((3, 6, 9), (12, 15))

# Named bones (SMPL joint -> SMPL joint) whose directions the quality report compares.
REPORT_BONES = {
    "left_thigh": (1, 4), "right_thigh": (2, 5), "left_shin": (4, 7), "right_shin": (5, 8),
    "left_upper_arm": (16, 18), "right_upper_arm": (17, 19), "left_forearm": (18, 20),
    "right_forearm": (19, 21), "spine": (0, 12),
}
LIMB_BONES = ("left_thigh", "right_thigh", "left_shin", "right_shin", "left_upper_arm",
              "right_upper_arm", "left_forearm", "right_forearm")

# --------------------------------------------------------------------------------------------
# Joint-map presets: SMPL joint -> candidate source names (the first present one is used).
# Matching ignores case and any namespace prefix before ':' (Mixamo's "mixamorig:").

PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    # hsjax's own BVH export (write_bvh): the SMPL names themselves.
    "smpl": {name: (name,) for name in skeleton.SMPL_JOINT_NAMES},
    # CMU mocap as converted to BVH by cgspeed (and the many files derived from it).
    "cmu": {
        "pelvis": ("Hips",), "left_hip": ("LeftUpLeg",), "right_hip": ("RightUpLeg",),
        "spine1": ("LowerBack",), "left_knee": ("LeftLeg",), "right_knee": ("RightLeg",),
        "spine2": ("Spine",), "left_ankle": ("LeftFoot",), "right_ankle": ("RightFoot",),
        "spine3": ("Spine1",), "left_foot": ("LeftToeBase",), "right_foot": ("RightToeBase",),
        "neck": ("Neck", "Neck1"), "left_collar": ("LeftShoulder",),
        "right_collar": ("RightShoulder",), "head": ("Head",), "left_shoulder": ("LeftArm",),
        "right_shoulder": ("RightArm",), "left_elbow": ("LeftForeArm",),
        "right_elbow": ("RightForeArm",), "left_wrist": ("LeftHand",),
        "right_wrist": ("RightHand",), "left_hand": ("LeftFingerBase", "LeftHandIndex1"),
        "right_hand": ("RightFingerBase", "RightHandIndex1"),
    },
    # Mixamo rigs ("mixamorig:Hips", ...; the prefix is ignored).
    "mixamo": {
        "pelvis": ("Hips",), "left_hip": ("LeftUpLeg",), "right_hip": ("RightUpLeg",),
        "spine1": ("Spine",), "left_knee": ("LeftLeg",), "right_knee": ("RightLeg",),
        "spine2": ("Spine1",), "left_ankle": ("LeftFoot",), "right_ankle": ("RightFoot",),
        "spine3": ("Spine2",), "left_foot": ("LeftToeBase",), "right_foot": ("RightToeBase",),
        "neck": ("Neck",), "left_collar": ("LeftShoulder",), "right_collar": ("RightShoulder",),
        "head": ("Head",), "left_shoulder": ("LeftArm",), "right_shoulder": ("RightArm",),
        "left_elbow": ("LeftForeArm",), "right_elbow": ("RightForeArm",),
        "left_wrist": ("LeftHand",), "right_wrist": ("RightHand",),
        "left_hand": ("LeftHandMiddle1", "LeftHandIndex1"),
        "right_hand": ("RightHandMiddle1", "RightHandIndex1"),
    },
    # MotionBuilder / Biovision style: joints named for the articulation.
    "motionbuilder": {
        # The spine as named here is only a first guess: ``Ab, Chest`` or ``Chest, Chest2``
        # files have two trunk joints, which :func:`assign_spine` puts on spine1 and spine3.
        "pelvis": ("Hips", "Pelvis"), "left_hip": ("LeftHip",), "right_hip": ("RightHip",),
        "spine1": ("Ab", "Spine", "Chest"), "left_knee": ("LeftKnee",),
        "right_knee": ("RightKnee",), "spine2": ("Chest2", "Spine1"),
        "left_ankle": ("LeftAnkle",), "right_ankle": ("RightAnkle",),
        "spine3": ("Chest3", "Chest4", "Spine2"), "left_foot": ("LeftToe", "LeftToeBase"),
        "right_foot": ("RightToe", "RightToeBase"), "neck": ("Neck",),
        "left_collar": ("LeftCollar",), "right_collar": ("RightCollar",), "head": ("Head",),
        "left_shoulder": ("LeftShoulder",), "right_shoulder": ("RightShoulder",),
        "left_elbow": ("LeftElbow",), "right_elbow": ("RightElbow",),
        "left_wrist": ("LeftWrist",), "right_wrist": ("RightWrist",),
        "left_hand": ("LeftFinger", "LeftHandEnd"), "right_hand": ("RightFinger",
                                                                   "RightHandEnd"),
    },
    # Blender-style bone names with .L/.R suffixes (a Rigify-like human with a pelvis root).
    "blender": {
        "pelvis": ("pelvis", "hips"), "left_hip": ("thigh.L",), "right_hip": ("thigh.R",),
        "spine1": ("spine",), "left_knee": ("shin.L",), "right_knee": ("shin.R",),
        "spine2": ("spine.002",), "left_ankle": ("foot.L",), "right_ankle": ("foot.R",),
        "spine3": ("spine.001", "spine.003", "chest"), "left_foot": ("toe.L",),
        "right_foot": ("toe.R",), "neck": ("neck", "spine.004"),
        "left_collar": ("shoulder.L",), "right_collar": ("shoulder.R",),
        "head": ("head", "face", "spine.006"), "left_shoulder": ("upper_arm.L",),
        "right_shoulder": ("upper_arm.R",), "left_elbow": ("forearm.L",),
        "right_elbow": ("forearm.R",),
        # Without hand bones, the forearm's end site (named by read_bvh) is the wrist.
        "left_wrist": ("hand.L", "forearm.L_end"), "right_wrist": ("hand.R", "forearm.R_end"),
    },
}
# The joints a preset must find for "auto" to pick it.
_CORE = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder",
         "right_shoulder", "left_elbow", "right_elbow")


@dataclasses.dataclass(frozen=True)
class SourceSkeleton:
  """A joint tree in its rest pose (every local rotation the identity)."""

  names: tuple[str, ...]  # [J] joint names (unique).
  parents: tuple[int, ...]  # [J] parent index, -1 for roots; parents precede children.
  offsets: np.ndarray  # [J, 3] rest offset from the parent (a root: its rest position).

  def __post_init__(self):
    if len(self.names) != len(self.parents) or np.shape(self.offsets) != (len(self.names), 3):
      raise ValueError(f"SourceSkeleton: {len(self.names)} names, {len(self.parents)} parents, "
                       f"offsets {np.shape(self.offsets)}; expected [J], [J], [J, 3]")
    for j, p in enumerate(self.parents):
      if p >= j:
        raise ValueError(f"SourceSkeleton: joint '{self.names[j]}' has parent index {p}; "
                         "parents must precede their children")

  def index(self, name: str) -> int:
    return self.names.index(name)

  def rest_positions(self) -> np.ndarray:
    """[J, 3] rest joint positions (source units and axes)."""
    pos = np.zeros((len(self.names), 3))
    for j, p in enumerate(self.parents):
      pos[j] = self.offsets[j] + (pos[p] if p >= 0 else 0.0)
    return pos

  def forward(self, local_rot: np.ndarray, local_trans: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics.

    Args:
      local_rot: [T, J, 3, 3] rotation of each joint in its parent's frame.
      local_trans: [T, J, 3] joint position in its parent's frame (usually the offsets).

    Returns:
      ``(world_rot [T, J, 3, 3], world_pos [T, J, 3])``.
    """
    glob = np.empty_like(local_rot)
    pos = np.empty(local_trans.shape)
    for j, p in enumerate(self.parents):
      if p < 0:
        glob[:, j] = local_rot[:, j]
        pos[:, j] = local_trans[:, j]
      else:
        glob[:, j] = glob[:, p] @ local_rot[:, j]
        pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", glob[:, p], local_trans[:, j])
    return glob, pos

  def is_ancestor(self, a: int, b: int) -> bool:
    """Whether joint ``a`` is ``b`` or above it."""
    while b >= 0:
      if a == b:
        return True
      b = self.parents[b]
    return False


def _norm(name: str) -> str:
  return name.rsplit(":", 1)[-1].lower()


def resolve_joint_map(names: tuple[str, ...], joint_map="auto", source: str = "<source>"
                      ) -> dict[str, str]:
  """Turns ``joint_map`` ("auto", a preset name, or a dict) into ``{smpl_name: source_name}``.

  Raises:
    ValueError: an unknown preset, SMPL name or source joint (naming ``source`` and the joint),
      or, for ``"auto"``, no preset that finds the core joints.
  """
  lookup = {}
  for n in names:
    lookup.setdefault(_norm(n), n)

  def from_preset(preset: dict[str, tuple[str, ...]]) -> dict[str, str]:
    out = {}
    for smpl_name, candidates in preset.items():
      for cand in candidates:
        if _norm(cand) in lookup:
          out[smpl_name] = lookup[_norm(cand)]
          break
    return out

  if isinstance(joint_map, str):
    if joint_map == "auto":
      best, best_name = {}, None
      for preset_name, preset in PRESETS.items():
        found = from_preset(preset)
        if all(c in found for c in _CORE) and len(found) > len(best):
          best, best_name = found, preset_name
      if best_name is None:
        raise ValueError(
            f"{source}: no joint-map preset ({', '.join(PRESETS)}) matches the joint names "
            f"{list(names)}; pass joint_map={{smpl_name: source_joint_name, ...}} (SMPL names: "
            f"{', '.join(skeleton.SMPL_JOINT_NAMES)})")
      return best
    if joint_map not in PRESETS:
      raise ValueError(f"{source}: unknown joint-map preset {joint_map!r}; expected 'auto', one "
                       f"of {sorted(PRESETS)}, or a dict")
    found = from_preset(PRESETS[joint_map])
    missing = [c for c in _CORE if c not in found]
    if missing:
      raise ValueError(f"{source}: preset {joint_map!r} finds no source joint for SMPL "
                       f"joint(s) {missing} (candidates "
                       f"{[PRESETS[joint_map][m] for m in missing]})")
    return found
  out = {}
  for smpl_name, src_name in dict(joint_map).items():
    if smpl_name not in skeleton.JOINT_INDEX:
      raise ValueError(f"{source}: joint map key {smpl_name!r} is not an SMPL joint name; "
                       f"expected one of {', '.join(skeleton.SMPL_JOINT_NAMES)}")
    if src_name not in names:
      if _norm(src_name) in lookup:
        src_name = lookup[_norm(src_name)]
      else:
        raise ValueError(f"{source}: joint map {smpl_name!r} -> {src_name!r}: no joint "
                         f"{src_name!r} in the file (joints: {list(names)})")
    out[smpl_name] = src_name
  if "pelvis" not in out:
    raise ValueError(f"{source}: the joint map must map 'pelvis' (found keys {sorted(out)})")
  return out


SPINE_JOINTS = (3, 6, 9)  # spine1, spine2, spine3


def source_spine_chain(skel: SourceSkeleton, joint_map: dict[str, str]) -> tuple[int, ...]:
  """Source joints strictly between the mapped pelvis and neck (bottom up), or () when either
  is unmapped or the neck's source joint is not below the pelvis's."""
  if "pelvis" not in joint_map or "neck" not in joint_map:
    return ()
  pelvis, j = skel.index(joint_map["pelvis"]), skel.parents[skel.index(joint_map["neck"])]
  chain = []
  while j >= 0 and j != pelvis:
    chain.append(j)
    j = skel.parents[j]
  return tuple(reversed(chain)) if j == pelvis else ()


def assign_spine(skel: SourceSkeleton, joint_map: dict[str, str], rest: np.ndarray
                 ) -> dict[str, str]:
  """Puts the source's trunk joints on SMPL's spine by the chain, not by their names.

  The source joints between the mapped pelvis and neck (:func:`source_spine_chain`) go, bottom
  up: one joint to the SMPL spine joint nearest its height (as a fraction of pelvis-to-neck,
  measured on both rests); two to spine1 and spine3 (MotionBuilder's ``Ab, Chest``: the
  trunk bends low and high, spine2 shares spine3's rotation); three one-to-one (CMU's
  ``LowerBack, Spine, Spine1``, Mixamo's ``Spine, Spine1, Spine2``); more than three: the
  lowest to spine1, the highest to spine3, the one nearest spine2's height to spine2 (the
  others are folded, and :func:`check_spine` warns).

  Args:
    skel: the source skeleton.
    joint_map: ``{smpl_name: source_name}`` from a preset.
    rest: [24, 3] target rest joints (SMPL axes).

  Returns:
    The map with spine1, spine2 and spine3 replaced (unchanged without a chain).
  """
  chain = source_spine_chain(skel, joint_map)
  if not chain:
    return joint_map
  src_rest = skel.rest_positions()
  pelvis, neck = skel.index(joint_map["pelvis"]), skel.index(joint_map["neck"])
  # Heights along the pelvis -> neck line (the source's axes are not known yet).
  up = src_rest[neck] - src_rest[pelvis]
  src_frac = [(src_rest[j] - src_rest[pelvis]) @ up / (up @ up) for j in chain]
  smpl_frac = {k: (rest[k, 1] - rest[0, 1]) / (rest[12, 1] - rest[0, 1]) for k in SPINE_JOINTS}
  names = [skeleton.SMPL_JOINT_NAMES[k] for k in SPINE_JOINTS]
  out = {k: v for k, v in joint_map.items() if k not in names}
  if len(chain) == 1:
    k = min(SPINE_JOINTS, key=lambda k: abs(smpl_frac[k] - src_frac[0]))
    picks = {k: chain[0]}
  elif len(chain) == 2:
    picks = {3: chain[0], 9: chain[1]}
  elif len(chain) == 3:
    picks = dict(zip(SPINE_JOINTS, chain))
  else:
    middle = min(range(1, len(chain) - 1), key=lambda i: abs(src_frac[i] - smpl_frac[6]))
    picks = {3: chain[0], 6: chain[middle], 9: chain[-1]}
  for k, j in picks.items():
    out[skeleton.SMPL_JOINT_NAMES[k]] = skel.names[j]
  return out


def check_spine(skel: SourceSkeleton, joint_map: dict[str, str], source: str = "<source>"
                ) -> list[str]:
  """Warns (and returns their names) when source trunk joints between the mapped pelvis and
  neck map to no SMPL joint: their bend is folded into the next mapped joint, so the SMPL trunk
  bends at another height than the source's."""
  used = set(joint_map.values())
  missing = [skel.names[j] for j in source_spine_chain(skel, joint_map)
             if skel.names[j] not in used]
  if missing:
    mapped = {k: v for k, v in joint_map.items() if k in ("spine1", "spine2", "spine3")}
    warnings.warn(f"{source}: source spine joint(s) {missing} between "
                  f"'{joint_map['pelvis']}' and '{joint_map['neck']}' map to no SMPL joint "
                  f"(spine map: {mapped}); their rotation is folded into the joint above, so "
                  "the trunk bends at another height. Map them in joint_map=.", stacklevel=3)
  return missing


def _snap_to_axis(v: np.ndarray) -> np.ndarray:
  """[3] the signed unit axis nearest the direction ``v`` [3]."""
  out = np.zeros(3)
  i = int(np.argmax(np.abs(v)))
  out[i] = np.sign(v[i])
  return out


def axes_from_rest(rest: np.ndarray, index: dict[int, int], source: str = "<source>",
                   posed: np.ndarray | None = None) -> np.ndarray:
  """[3, 3] signed permutation taking source coordinates to SMPL's (rows: left, up, forward).

  Args:
    rest: [J, 3] source rest positions.
    index: SMPL joint index -> source joint index (mapped joints).
    source: name used in error messages.
    posed: [T, J, 3] the source's posed joints, read instead of the rest pose when that does
      not stand (its legs do not point away from its trunk, as in files whose every bone
      lies along its joint's x axis at rest): the median over frames of each direction.
  """
  def vec(pos, a, b):
    return pos[..., index[a], :] - pos[..., index[b], :] if a in index and b in index else None

  def directions(pos):
    left = [v for v in (vec(pos, 1, 2), vec(pos, 16, 17), vec(pos, 13, 14)) if v is not None]
    ups = [v for v in (vec(pos, 12, 0), vec(pos, 15, 0), vec(pos, 9, 0), vec(pos, 6, 0),
                       vec(pos, 3, 0)) if v is not None]
    legs = [v for v in (vec(pos, 7, 1), vec(pos, 8, 2), vec(pos, 4, 1), vec(pos, 5, 2))
            if v is not None]
    if not left or not ups:
      raise ValueError(f"{source}: cannot tell the skeleton's axes (need left/right hips or "
                       "shoulders and a spine, neck or head joint mapped); pass axes=")
    return sum(left), ups[0], (sum(legs) if legs else None)

  def standing(up, legs):
    return legs is None or legs @ up < -0.5 * np.linalg.norm(legs) * np.linalg.norm(up)

  left, up, legs = directions(np.asarray(rest, np.float64))
  if not standing(up, legs) and posed is not None:
    left, up, legs = (np.median(v, axis=0) if v is not None else None
                      for v in directions(np.asarray(posed, np.float64)))

  left_axis = _snap_to_axis(left)
  up_axis = _snap_to_axis(up)
  if abs(left_axis @ up_axis) > 0.5:
    raise ValueError(f"{source}: the rest pose's left axis {left_axis} and up axis {up_axis} "
                     "coincide; pass axes=")
  return np.stack([left_axis, up_axis, np.cross(left_axis, up_axis)])


@dataclasses.dataclass(frozen=True)
class RetargetInfo:
  """What a retarget did, for reports and tests."""

  joint_map: dict  # SMPL name -> source name.
  index: dict  # SMPL joint index -> source joint index.
  axes: np.ndarray  # [3, 3] source -> SMPL coordinates.
  scale: float  # source units -> metres on the target skeleton.
  source_positions: np.ndarray  # [T, Js, 3] source joints in SMPL axes, scaled.
  rest: np.ndarray  # [24, 3] target rest skeleton.
  # [T, Js, 3, 3] source world rotations in SMPL axes (None from older callers).
  source_rotations: np.ndarray | None = None
  # SMPL joint -> [3, 3] rest correction Q (``G_k = lock · G_src · Q_k``), mapped joints.
  rest_fix: dict | None = None
  parents: tuple[int, ...] = ()  # [Js] source parents (for end sites in contact detection).
  # What :func:`hsjax.motion.placement.place` did (contacts, floor, corrections); None if
  # the motion was not placed.
  placement: object = None


def _leg_length(pos: np.ndarray, index: dict[int, int]) -> float | None:
  lengths = []
  for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
    if hip in index and knee in index and ankle in index:
      lengths.append(np.linalg.norm(pos[index[knee]] - pos[index[hip]]) +
                     np.linalg.norm(pos[index[ankle]] - pos[index[knee]]))
  return float(np.mean(lengths)) if lengths else None


def pelvis_rest_fix(rest: np.ndarray, index: dict[int, int]) -> np.ndarray:
  """[3, 3] the pelvis's rest correction: the signed permutation taking SMPL's pelvis frame
  (left +x, up +y) to the source rest's (left hip − right hip, lowest mapped trunk joint −
  pelvis; SMPL axes), each snapped to the nearest axis.

  The identity for every rest that stands facing its file's forward axis; a quarter turn for
  rests whose pelvis frame is turned (every bone along its joint's x axis, as some exporters
  write), where the pelvis would otherwise carry that turn into the hips.

  Args:
    rest: [J, 3] source rest positions in SMPL axes.
    index: SMPL joint index -> source joint index.
  """
  ups = [rest[index[k]] - rest[index[0]] for k in (3, 6, 9, 12, 15) if k in index]
  ups = [v for v in ups if np.linalg.norm(v) > 1e-6]  # a spine joint may sit on the pelvis
  if not (1 in index and 2 in index and ups):
    return np.eye(3)

  left = _snap_to_axis(rest[index[1]] - rest[index[2]])
  up = _snap_to_axis(ups[0])
  if abs(left @ up) > 0.5:
    return np.eye(3)
  return np.stack([left, up, np.cross(left, up)], 1)


def retarget(skel: SourceSkeleton, local_rot: np.ndarray, local_trans: np.ndarray, fps: float,
             joint_map="auto", *, axes=None, scale: float | None = None, rest="auto",
             spread: bool = True, trunk: str = "align", twist: float | None = None,
             placement: str = "auto", body=None, name: str = "", loop: bool = False,
             source: str = "<source>") -> tuple[motion_lib.Motion, RetargetInfo]:
  """Retargets a source motion onto SMPL (algorithm in the module docstring).

  Args:
    skel: the source skeleton.
    local_rot: [T, J, 3, 3] local rotations.
    local_trans: [T, J, 3] local translations (source units).
    fps: frame rate.
    joint_map: "auto", a name in :data:`PRESETS`, or ``{smpl_name: source_name}``.
    axes: [3, 3] source -> SMPL coordinates; None finds it from the rest pose (from the
      motion when the rest pose does not stand: :func:`axes_from_rest`).
    scale: source units -> metres; None uses the leg-length ratio.
    rest: the target rest skeleton: a name for :func:`skeleton.rest_joints` or [24, 3].
    spread: share rotations along the spine and neck chains (step 4); False leaves every
      unmapped SMPL joint at the identity.
    trunk: ``"align"`` gives the spine and neck joints a rest correction too, so that each
      SMPL trunk segment points along the source's (SMPL's rest curve is straightened to the
      source's); ``"keep"`` leaves SMPL's rest curve (step 2; the DeepMimic importer uses it).
    twist: fraction (0..1) of each SMPL wrist's twist about the forearm that is moved into the
      elbow (step 6); the hand's world orientation and every bone direction are unchanged,
      only the forearm skin twists along its length instead of pinching at the wrist. None:
      0.5, or 0 for a file on SMPL's own skeleton (hsjax's export reads back unchanged).
    placement: ``"auto"`` is ``"contact"``, or ``"none"`` for a file on SMPL's own skeleton;
      ``"contact"`` runs :func:`hsjax.motion.placement.place` (grounding on the
      feet's soles in the source's foot contacts, planted feet held still, no body part below
      the floor where the source's is above it); ``"none"`` keeps ``transl`` as the scaled
      source pelvis path (step 5).
    body: the target body's points for placement
      (:class:`hsjax.motion.placement.BodyPoints`); None: those of ``rest`` (the default
      body's mesh for ``"default"``, joints and soles otherwise).
    name: clip name.
    loop: whether the clip is a cycle.
    source: file name for error messages.

  Returns:
    ``(motion, info)``.
  """
  local_rot = np.asarray(local_rot, np.float64)
  local_trans = np.asarray(local_trans, np.float64)
  num_src = len(skel.names)
  if local_rot.shape[1:] != (num_src, 3, 3) or local_trans.shape != local_rot.shape[:2] + (3,):
    raise ValueError(f"{source}: local_rot {local_rot.shape} / local_trans {local_trans.shape} "
                     f"do not match {num_src} joints")
  smpl_rest = (skeleton.rest_joints(rest) if isinstance(rest, str)
               else np.asarray(rest, np.float64))
  if trunk not in ("align", "keep"):
    raise ValueError(f"{source}: trunk must be 'align' or 'keep', found {trunk!r}")
  if placement not in ("auto", "contact", "none"):
    raise ValueError(f"{source}: placement must be 'auto', 'contact' or 'none', found "
                     f"{placement!r}")
  if twist is not None and not 0.0 <= twist <= 1.0:
    raise ValueError(f"{source}: twist must be a fraction in [0, 1], found {twist}")
  names = resolve_joint_map(skel.names, joint_map, source)
  # A file on SMPL's own skeleton (hsjax's write_bvh) is already an SMPL motion.
  own = len(names) == 24 and all(k == v for k, v in names.items())
  if twist is None:
    twist = 0.0 if own else 0.5
  if placement == "auto":
    placement = "none" if own else "contact"
  if isinstance(joint_map, str):
    names = assign_spine(skel, names, smpl_rest)
  check_spine(skel, names, source)
  index = {skeleton.JOINT_INDEX[k]: skel.index(v) for k, v in names.items()}
  # A mapped SMPL joint's source must lie below its nearest mapped SMPL ancestor's source.
  for k in sorted(index):
    a = skeleton.SMPL_PARENTS[k]
    while a >= 0 and a not in index:
      a = skeleton.SMPL_PARENTS[a]
    if a >= 0 and not skel.is_ancestor(index[a], index[k]):
      raise ValueError(
          f"{source}: joint map puts SMPL '{skeleton.SMPL_JOINT_NAMES[k]}' on "
          f"'{skel.names[index[k]]}', which is not below '{skel.names[index[a]]}' (mapped to "
          f"SMPL '{skeleton.SMPL_JOINT_NAMES[a]}') in the file's joint tree")

  rest_src = skel.rest_positions()
  glob_src, pos_src = skel.forward(local_rot, local_trans)
  conv = (axes_from_rest(rest_src, index, source, posed=pos_src) if axes is None
          else np.asarray(axes, float))
  if not np.allclose(conv @ conv.T, np.eye(3), atol=1e-6) or np.linalg.det(conv) < 0:
    raise ValueError(f"{source}: axes must be a rotation (det +1), found {conv.tolist()}")
  rest_src = rest_src @ conv.T
  glob_src = conv @ glob_src @ conv.T
  pos_src = pos_src @ conv.T
  if scale is None:
    src_leg = _leg_length(rest_src, index)
    smpl_leg = _leg_length(smpl_rest, {k: k for k in range(24)})
    if src_leg is None or src_leg <= 0:
      raise ValueError(f"{source}: cannot infer the scale without mapped hips, knees and "
                       "ankles; pass scale=")
    scale = smpl_leg / src_leg
  pos_src = pos_src * scale
  rest_src = rest_src * scale

  num_frames = local_rot.shape[0]
  glob = np.empty((num_frames, 24, 3, 3))
  rest_fix = {}  # SMPL joint -> its rest correction Q
  for k in range(24):
    parent = skeleton.SMPL_PARENTS[k]
    if k not in index:
      glob[:, k] = glob[:, parent]  # identity local; the spine spread below may revise it
      continue
    s = index[k]
    target = skeleton.BONE_CHILD[k]
    while target is not None and target not in index:
      target = skeleton.BONE_CHILD[target]
    if target is None or index[target] == s:
      # No bone to align. A hand keeps the rest correction of its nearest mapped ancestor (in
      # any rest pose the hand continues the forearm), so a source wrist fixed to its forearm
      # gives an unrotated SMPL wrist. Feet and toes, and the trunk, keep their world rest
      # orientation (every standing rest pose has flat feet); the pelvis only its axes.
      a = parent
      while a >= 0 and a not in rest_fix:
        a = skeleton.SMPL_PARENTS[a]
      inherit = a >= 0 and k not in FOOT_JOINTS and k not in TRUNK_JOINTS
      rest_fix[k] = (pelvis_rest_fix(rest_src, index) if k == 0 else
                     rest_fix[a] if inherit else np.eye(3))
      glob[:, k] = glob_src[:, s] @ rest_fix[k]
      continue
    d_src = rest_src[index[target]] - rest_src[s]
    # Trunk joints: both rests stand upright, so their bone directions differ by anatomy (a
    # curved SMPL spine), not by pose; limbs: the rest poses differ (A-, I- or T-pose).
    keep = k in TRUNK_JOINTS and (trunk == "keep" or k == 0)
    rest_fix[k] = (np.eye(3) if keep else
                   rotations_np.rotation_between(smpl_rest[target] - smpl_rest[k], d_src))
    # Where the source joint's own frame puts the bone vs where the bone is: they differ only
    # when unmapped source joints sit between the two ends; their rotation is folded in here.
    lock = rotations_np.rotation_between(glob_src[:, s] @ d_src,
                                 pos_src[:, index[target]] - pos_src[:, s])
    glob[:, k] = lock @ glob_src[:, s] @ rest_fix[k]

  for chain in SPREAD_CHAINS if spread else ():
    run = []
    for k in chain:
      if k not in index:
        run.append(k)
        continue
      if run:
        below = skeleton.SMPL_PARENTS[run[0]]
        # With trunk="align" the joint below the run is aligned with the source segment up to
        # k; bending the run turns that chord, so the joint is turned back (a fixed point,
        # three rounds reach 1e-6 rad). The pelvis cannot turn: the hips hang on it.
        rounds = 3 if trunk == "align" and below != 0 and below in index else 0
        want = glob[:, below] @ (smpl_rest[k] - smpl_rest[below])
        for r in range(rounds + 1):
          base = glob[:, below]
          step = rotations_np.fractional(np.swapaxes(base, -1, -2) @ glob[:, k],
                                         1.0 / (len(run) + 1))
          acc, chord, prev = base, np.zeros((num_frames, 3)), below
          for u in run:
            chord += acc @ (smpl_rest[u] - smpl_rest[prev])
            acc = acc @ step
            glob[:, u] = acc
            prev = u
          chord += acc @ (smpl_rest[k] - smpl_rest[prev])
          if r < rounds:
            glob[:, below] = rotations_np.rotation_between(chord, want) @ glob[:, below]
      run = []
    # A trailing unmapped run keeps identity locals (already set).

  local = np.empty_like(glob)
  local[:, 0] = glob[:, 0]
  for k in range(1, 24):
    local[:, k] = np.swapaxes(glob[:, skeleton.SMPL_PARENTS[k]], -1, -2) @ glob[:, k]
  if twist > 0:
    local = distribute_twist(local, smpl_rest, twist)
  full = rotations_np.matrix_to_axis_angle(local)
  transl = pos_src[:, index[0]] - smpl_rest[0]
  motion = motion_lib.make_motion(full[:, 1:], full[:, 0], transl, fps, name, loop=loop,
                                  source=source)
  info = RetargetInfo(joint_map=names, index=index, axes=conv, scale=float(scale),
                      source_positions=pos_src,
                      rest=smpl_rest, source_rotations=glob_src, rest_fix=rest_fix,
                      parents=tuple(skel.parents))
  if placement == "contact":
    from hsjax.motion import placement as placement_lib  # pylint: disable=g-import-not-at-top
    if body is None:
      body = placement_lib.body_points(rest if isinstance(rest, str) else smpl_rest)
    motion, report = placement_lib.place(motion, info, body)
    info = dataclasses.replace(info, placement=report)
  return motion, info


# Twist moved from each wrist into its elbow (step 6): (elbow, wrist) pairs.
TWIST_PAIRS = ((18, 20), (19, 21))


def twist_angle(rot: np.ndarray, axis: np.ndarray) -> np.ndarray:
  """Twist (radians, in (-π, π]) of rotations [..., 3, 3] about the unit ``axis`` [3]: the
  angle of the rotation about ``axis`` in its swing-twist decomposition."""
  quat = rotations_np.matrix_to_quat(rot)
  along = quat[..., 1:] @ np.asarray(axis, np.float64)
  return 2.0 * np.arctan2(along, quat[..., 0])


def distribute_twist(local: np.ndarray, rest: np.ndarray, fraction: float,
                     pairs=TWIST_PAIRS) -> np.ndarray:
  """Moves ``fraction`` of each child joint's twist about the bone into its parent joint.

  For an (elbow, wrist) pair with forearm direction ``a`` (rest elbow -> wrist, which is the
  same vector in both joints' local frames) and wrist twist ``θ`` about ``a``:
  ``R_elbow ← R_elbow · T(a, fθ)`` and ``R_wrist ← T(a, -fθ) · R_wrist``. The hand's world
  rotation and the forearm's direction are unchanged (``T`` turns about the forearm itself);
  the skin between elbow and wrist twists gradually, as the radius turns about the ulna,
  instead of all at the wrist, where linear blend skinning pinches (the "candy wrapper").

  Args:
    local: [T, 24, 3, 3] local rotations.
    rest: [24, 3] rest joints.
    fraction: share of the twist moved, 0..1.
    pairs: (parent, child) joints.

  Returns:
    [T, 24, 3, 3] local rotations.
  """
  local = np.array(local, np.float64)
  for parent, child in pairs:
    axis = rest[child] - rest[parent]
    axis = axis / np.linalg.norm(axis)
    turn = rotations_np.axis_angle_to_matrix(
        axis * (fraction * twist_angle(local[:, child], axis))[:, None])
    local[:, parent] = local[:, parent] @ turn
    local[:, child] = np.swapaxes(turn, -1, -2) @ local[:, child]
  return local


def bone_direction_errors(motion: motion_lib.Motion, info: RetargetInfo,
                          bones: dict[str, tuple[int, int]] | None = None
                          ) -> dict[str, np.ndarray]:
  """Per-frame angle (degrees) between each source bone and its SMPL bone.

  Both skeletons are posed by their own forward kinematics: the source's from the file, SMPL's
  from the retargeted parameters on ``info.rest``. A bone is compared when both its SMPL ends
  are mapped (the source bone then runs between the two mapped source joints).

  Returns:
    ``{bone_name: [T] degrees}`` for each bone of ``bones`` whose ends are mapped. The default
    is :data:`REPORT_BONES` plus ``lower_spine`` and ``upper_spine``, the trunk split at the
    highest mapped SMPL spine joint.
  """
  if bones is None:
    bones = dict(REPORT_BONES)
    chest = [k for k in (9, 6, 3) if k in info.index]
    if chest:  # the trunk split at the source's highest spine joint
      bones.update(lower_spine=(0, chest[0]), upper_spine=(chest[0], 12))
  smpl_pos = skeleton.forward_joints(info.rest, motion.full_pose, motion.transl)
  out = {}
  for bone, (a, b) in bones.items():
    if a not in info.index or b not in info.index:
      continue
    out[bone] = rotations_np.angle_between(
        smpl_pos[:, b] - smpl_pos[:, a],
        info.source_positions[:, info.index[b]] - info.source_positions[:, info.index[a]])
  return out
