"""SMPL's joint tree, the rest skeleton motions are placed for, and host-side kinematics.

Retargeting and ground placement need SMPL joint positions but no mesh. They use a *rest
skeleton*: the 24 rest (T-pose) joints of a body, in SMPL's frame (y up, facing +z, the
subject's left on +x, metres), plus the height of the soles below the lowest joint.

* ``"default"``: the joints of hsjax's embedded default body at ``betas = 0``
  (``J_regressor @ v_template`` of ``hsjax/assets/default_body.npz``), with the sole at its
  lowest vertex. This is what the shipped clips are placed for.
* ``"generic"``: :data:`GENERIC_REST_JOINTS`, an SMPL-like adult of about 1.70 m written for
  hsjax (round numbers, pelvis at the origin; not taken from any SMPL file). It is used when
  the default body file is absent, and by tests that must not depend on it.

SMPL's own template has its pelvis joint near the origin (about 0.2 m below it) and its soles
about 1.15 m below the pelvis; ``transl`` is always relative to the rest skeleton a clip was
placed for (a clip placed for one skeleton and played on another is off by the difference of
their pelvis heights, which :func:`hsjax.motion.normalize` with ``ground=True`` removes).
"""

from __future__ import annotations

import functools
import os
from importlib import resources

import numpy as np

from hsjax.body import SMPL_JOINT_NAMES  # pylint: disable=unused-import
from hsjax.body import SMPL_PARENTS
from hsjax import rotations_np
NUM_JOINTS = 24
JOINT_INDEX = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

# The child that defines each joint's bone direction (its "bone" runs from the joint to this
# child); None for the leaves and the pelvis (which has three children, none preferred).
BONE_CHILD = {0: None, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 10: None,
              11: None, 12: 15, 13: 16, 14: 17, 15: None, 16: 18, 17: 19, 18: 20, 19: 21, 20: 22,
              21: 23, 22: None, 23: None}

# An SMPL-like adult (about 1.70 m tall), metres, pelvis joint at the origin, T-pose.
GENERIC_REST_JOINTS = np.array([
    [0.000, 0.000, 0.000],  # pelvis
    [0.085, -0.080, 0.000],  # left_hip
    [-0.085, -0.080, 0.000],  # right_hip
    [0.000, 0.110, -0.020],  # spine1
    [0.100, -0.470, 0.005],  # left_knee
    [-0.100, -0.470, 0.005],  # right_knee
    [0.000, 0.240, -0.010],  # spine2
    [0.090, -0.880, -0.030],  # left_ankle
    [-0.090, -0.880, -0.030],  # right_ankle
    [0.000, 0.300, 0.000],  # spine3
    [0.110, -0.940, 0.100],  # left_foot
    [-0.110, -0.940, 0.100],  # right_foot
    [0.000, 0.520, -0.020],  # neck
    [0.070, 0.430, -0.010],  # left_collar
    [-0.070, 0.430, -0.010],  # right_collar
    [0.000, 0.600, 0.030],  # head
    [0.180, 0.460, -0.020],  # left_shoulder
    [-0.180, 0.460, -0.020],  # right_shoulder
    [0.440, 0.450, -0.040],  # left_elbow
    [-0.440, 0.450, -0.040],  # right_elbow
    [0.690, 0.450, -0.040],  # left_wrist
    [-0.690, 0.450, -0.040],  # right_wrist
    [0.770, 0.440, -0.050],  # left_hand
    [-0.770, 0.440, -0.050],  # right_hand
])
# The generic skeleton's soles are 3 cm below its lowest joints (the toe joints, y = -0.94).
GENERIC_SOLE_OFFSET = 0.03

DEFAULT_BODY_FILE = "default_body.npz"


def default_body_path() -> str:
  return str(resources.files("hsjax") / "assets" / DEFAULT_BODY_FILE)


@functools.lru_cache(maxsize=4)
def _default_skeleton(path: str, mtime: float) -> tuple[np.ndarray, float]:
  del mtime  # part of the cache key only: a rebuilt body file is read again
  try:
    with np.load(path, allow_pickle=False) as data:
      v_template = np.asarray(data["v_template"], np.float64)
      j_regressor = np.asarray(data["J_regressor"], np.float64)
  except ValueError:  # object arrays (a pickled sparse regressor): the body loader's reader
    from hsjax import body  # pylint: disable=g-import-not-at-top
    fields = body.read_body_file(path)
    v_template = np.asarray(fields["v_template"], np.float64)
    reg = fields["J_regressor"]
    j_regressor = np.asarray(reg.toarray() if hasattr(reg, "toarray") else reg, np.float64)
  if j_regressor.shape != (NUM_JOINTS, v_template.shape[0]):
    raise ValueError(f"{path}: J_regressor is {j_regressor.shape}, expected "
                     f"({NUM_JOINTS}, {v_template.shape[0]})")
  joints = j_regressor @ v_template
  sole = float(joints[:, 1].min() - v_template[:, 1].min())
  return joints, sole


def rest_mesh(name: str = "auto") -> tuple[np.ndarray, np.ndarray] | None:
  """``(v_template [V, 3], lbs_weights [V, 24])`` of the named rest skeleton's body at
  ``betas = 0``, or None for ``"generic"`` (which has no mesh)."""
  if skeleton_name(name) == "generic":
    return None
  path = default_body_path()
  try:
    with np.load(path, allow_pickle=False) as data:
      return (np.asarray(data["v_template"], np.float64),
              np.asarray(data["weights"], np.float64))
  except ValueError:  # object arrays: the body loader's reader
    from hsjax import body  # pylint: disable=g-import-not-at-top
    fields = body.read_body_file(path)
    return (np.asarray(fields["v_template"], np.float64),
            np.asarray(fields["weights"], np.float64))


def skeleton_name(name: str = "auto") -> str:
  """Resolves ``"auto"`` to ``"default"`` when the default body file exists, else ``"generic"``."""
  if name == "auto":
    return "default" if os.path.exists(default_body_path()) else "generic"
  if name not in ("default", "generic"):
    raise ValueError(f"unknown rest skeleton {name!r}; expected 'auto', 'default' or 'generic'")
  return name


def rest_joints(name: str = "auto") -> np.ndarray:
  """[24, 3] rest joints (metres, SMPL frame) of the named rest skeleton (module docstring)."""
  name = skeleton_name(name)
  if name == "generic":
    return GENERIC_REST_JOINTS.copy()
  path = default_body_path()
  if not os.path.exists(path):
    raise FileNotFoundError(f"rest skeleton 'default' needs the default body file {path}")
  return _default_skeleton(path, os.path.getmtime(path))[0].copy()


def sole_offset(name: str = "auto") -> float:
  """Metres from the lowest rest joint down to the sole of the named rest skeleton."""
  name = skeleton_name(name)
  if name == "generic":
    return GENERIC_SOLE_OFFSET
  path = default_body_path()
  return _default_skeleton(path, os.path.getmtime(path))[1]


def pelvis_height(name: str = "auto") -> float:
  """Height of the rest pelvis joint above the soles, metres."""
  joints = rest_joints(name)
  return float(joints[0, 1] - (joints[:, 1].min() - sole_offset(name)))


def global_rotations(local_rotmats: np.ndarray, parents=SMPL_PARENTS) -> np.ndarray:
  """[..., J, 3, 3] local rotations -> [..., J, 3, 3] world rotations (parents precede)."""
  out = np.empty_like(np.asarray(local_rotmats, np.float64))
  for j, p in enumerate(parents):
    out[..., j, :, :] = local_rotmats[..., j, :, :] if p < 0 else (
        out[..., p, :, :] @ local_rotmats[..., j, :, :])
  return out


def forward_joints(rest: np.ndarray, full_pose: np.ndarray, transl: np.ndarray | None = None,
                   parents=SMPL_PARENTS) -> np.ndarray:
  """SMPL's kinematic chain on joints alone (no mesh), in float64 numpy.

  Args:
    rest: [J, 3] rest joint positions.
    full_pose: [..., J, 3] axis-angle (pelvis first) or [..., J, 3, 3] local rotations.
    transl: [..., 3] added to every joint (SMPL's ``transl``).
    parents: [J] parent indices, root -1.

  Returns:
    [..., J, 3] posed joint positions: ``p_j = p_parent + G_parent (rest_j - rest_parent)``,
    the root rotating about its own rest position, as in SMPL.
  """
  full_pose = np.asarray(full_pose, np.float64)
  rot = full_pose if full_pose.shape[-2:] == (3, 3) else rotations_np.axis_angle_to_matrix(full_pose)
  glob = global_rotations(rot, parents)
  rest = np.asarray(rest, np.float64)
  pos = np.empty(rot.shape[:-1], np.float64)
  for j, p in enumerate(parents):
    if p < 0:
      pos[..., j, :] = rest[j]
    else:
      pos[..., j, :] = pos[..., p, :] + np.einsum("...ij,j->...i", glob[..., p, :, :],
                                                  rest[j] - rest[p])
  if transl is not None:
    pos = pos + np.asarray(transl, np.float64)[..., None, :]
  return pos
