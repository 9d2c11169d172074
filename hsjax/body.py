"""SMPL body model: the model pytree, loaders, and forward kinematics with linear blend skinning.

The maths follows the SMPL paper (Loper et al., SIGGRAPH Asia 2015) and is numerically
interchangeable with the ``smplx`` package's ``SMPL`` layer (tested against it):

1. shape: ``v_shaped = v_template + shapedirs · betas``;
2. joints regressed from the *shaped, unposed* mesh: ``J = J_regressor @ v_shaped``;
3. pose blend shapes on SMPL's ``lrotmin`` feature, ``(R_j − I)`` of joints 1..23 flattened
   row-major (feature ``9 (j − 1) + 3 row + col``): ``v_posed = v_shaped + P · feature``;
4. the kinematic chain ``G_j = G_parent(j) · [R_j | J_j − J_parent(j)]`` (the root rotates
   about the pelvis joint, not the origin) and the relative transforms
   ``A_j = G_j · [I | −J_j]`` that map rest-pose points to posed points;
5. LBS: ``v = Σ_j w_j A_j v_posed``, then ``transl`` is added (hsjax adds it to ``A`` first,
   which is the same thing since the weights sum to 1). Only the non-zero weights of each
   vertex are blended (``BodyModel.lbs_indices``).

Conventions: 24 joints in SMPL order, axis-angle ``body_pose [..., 23, 3]``,
``global_orient [..., 3]``, ``transl [..., 3]``, metres, y up, the body facing +z.
Batch axes lead and broadcast against each other.

One concept, one module: the model pytree, its file formats and its forward pass belong
together (about 590 lines, with the checks of body files).
"""

from __future__ import annotations

import os
from importlib import resources

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import rotations
from hsjax import rotations_np
from hsjax import smpl_pickle

NUM_JOINTS = 24
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # 207

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand")

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# Name of the embedded CC0 model (see hsjax/assets/DEFAULT_BODY.md).
DEFAULT_BODY_FILE = "default_body.npz"
# The fields of SMPLParams, in smplx's naming.
SMPL_PARAM_FIELDS = ("betas", "body_pose", "global_orient", "transl")


@flax.struct.dataclass(kw_only=True)
class BodyModel:
  """An SMPL-format body model (constant during fitting; never optimised).

  Build it with :func:`load_body_model` or :func:`body_model_from_arrays`, which also derive
  ``has_posedirs`` and ``lbs_indices``.

  Warning: those two are caches of ``posedirs`` and ``lbs_weights``. After
  ``model.replace(posedirs=...)`` or ``model.replace(lbs_weights=...)`` with a different
  sparsity pattern, also pass ``has_posedirs=True`` / ``lbs_indices=None`` (always exact), or
  rebuild the model with :func:`body_model_from_arrays`.
  """

  v_template: jax.Array  # [V, 3] rest (T-pose) vertices, metres.
  shapedirs: jax.Array  # [V, 3, B] shape blend shapes (β ~ N(0, I)).
  posedirs: jax.Array  # [P=207, V*3] pose blend shapes, smplx layout (column 3 v + d).
  J_regressor: jax.Array  # [24, V] joint regressor (dense).
  lbs_weights: jax.Array  # [V, 24] skinning weights, rows sum to 1.
  faces: jax.Array  # [F, 3] int32 triangle vertex indices, outward (counter-clockwise).
  parents: tuple[int, ...] = flax.struct.field(pytree_node=False)  # [24], root = -1.
  # False when posedirs is all zero (the default body): the 207 × 3V product is skipped.
  has_posedirs: bool = flax.struct.field(pytree_node=False, default=True)
  # [V, K] int32 joints with non-zero weight per vertex (K = the most any vertex has, padded
  # with zero-weight joints), or None to blend all 24. Set by the loaders; LBS then gathers K
  # transforms per vertex instead of blending 24. The weights themselves are always read
  # from ``lbs_weights`` (so gradients reach them); only their support is cached here.
  lbs_indices: jax.Array | None = None
  name: str = flax.struct.field(pytree_node=False, default="")

  @property
  def num_vertices(self) -> int:
    return self.v_template.shape[0]

  @property
  def num_betas(self) -> int:
    return self.shapedirs.shape[-1]


@flax.struct.dataclass(kw_only=True)
class BodyOutput:
  """The posed body (batch axes ``...`` as in the inputs)."""

  vertices: jax.Array  # [..., V, 3] posed vertices, metres (``transl`` included).
  joints: jax.Array  # [..., 24, 3] posed joints (``transl`` included).
  # [..., 24, 4, 4] world transforms that LBS applies: rest-pose point -> posed point, with
  # ``transl`` in the translation column (smplx's ``A`` plus ``transl``).
  transforms: jax.Array
  rotmats: jax.Array  # [..., 24, 3, 3] local joint rotations (global orient first).


@flax.struct.dataclass(kw_only=True)
class SMPLParams:
  """SMPL parameters of T frames (HMR estimates, ground truth, or the poses being refined).

  In hsjax these are always expressed in the *world* frame of the sequence's cameras
  (importers convert camera-frame HMR outputs at the edge).
  """

  betas: jax.Array  # [..., B] shape (shared over frames: [B]; per frame: [T, B]).
  body_pose: jax.Array  # [..., T, 23, 3] axis-angle.
  global_orient: jax.Array  # [..., T, 3] axis-angle about the pelvis joint.
  transl: jax.Array  # [..., T, 3] metres.

  @property
  def num_frames(self) -> int:
    return self.body_pose.shape[-3]

  def select(self, frames: jax.Array) -> SMPLParams:
    """The parameters of ``frames`` ([F] indices) of a sequence with shared ``betas [B]``."""
    return self.replace(body_pose=self.body_pose[frames],
                        global_orient=self.global_orient[frames], transl=self.transl[frames])


# ------------------------------------------------------------------------------------------
# Loading


def _as_float(name: str, source: str, value, shape_hint: str, dtype=np.float32) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype == object or not np.issubdtype(array.dtype, np.number):
    raise ValueError(f"{source}: field '{name}' must be a numeric array {shape_hint}, found "
                     f"dtype {array.dtype}")
  if not np.all(np.isfinite(array)):
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    raise ValueError(f"{source}: field '{name}' contains {bad} NaN or inf value(s)")
  return array.astype(dtype)


def _dense(value) -> np.ndarray:
  """A scipy.sparse matrix (or anything array-like) as a dense ndarray."""
  if hasattr(value, "toarray"):
    return np.asarray(value.toarray())
  return np.asarray(value)


# Rows of skinning weights must sum to 1 within this (float32 files round to ~1e-7).
WEIGHT_SUM_TOLERANCE = 1e-3


def check_skinning_weights(weights: np.ndarray, source: str, field: str = "weights") -> None:
  """Refuses skinning weights ``[V, J]`` that are negative or whose rows do not sum to 1.

  Raises:
    ValueError: naming ``source``, the field, the first bad vertex and its sum.
  """
  if np.any(weights < -1e-6):
    v = int(np.argwhere(weights < -1e-6)[0, 0])
    raise ValueError(f"{source}: field '{field}' must be >= 0, found {weights[v].min():g} at "
                     f"vertex {v}")
  sums = weights.sum(axis=1)
  bad = np.abs(sums - 1.0) > WEIGHT_SUM_TOLERANCE
  if np.any(bad):
    v = int(np.argmax(bad))
    raise ValueError(f"{source}: field '{field}' rows must sum to 1, found {sums[v]:.6g} at "
                     f"vertex {v} ({int(bad.sum())} of {len(sums)} vertices off by more than "
                     f"{WEIGHT_SUM_TOLERANCE:g})")


def body_model_from_arrays(data: dict, *, num_betas: int = 10, source: str = "<arrays>",
                           dtype=np.float32) -> BodyModel:
  """Builds a :class:`BodyModel` from SMPL-file fields (the keys of an SMPL ``.pkl``).

  Args:
    data: mapping with ``v_template [V,3]``, ``shapedirs [V,3,B']``, ``posedirs [V,3,207]``
      (or already ``[207, V*3]``), ``J_regressor [24,V]`` (dense or scipy sparse),
      ``weights [V,24]``, ``kintree_table [2,24]`` and ``f [F,3]``.
    num_betas: number of shape components kept (the first ``num_betas`` of ``shapedirs``).
    source: file name used in error messages.
    dtype: float dtype of the model arrays (float64 needs ``jax.enable_x64``).
  """
  required = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")
  missing = [k for k in required if k not in data]
  if missing:
    raise ValueError(f"{source}: missing SMPL field(s) {missing}; found {sorted(data)}")
  v_template = _as_float("v_template", source, data["v_template"], "[V, 3]", dtype)
  if v_template.ndim != 2 or v_template.shape[1] != 3:
    raise ValueError(f"{source}: v_template must be [V, 3], found {v_template.shape}")
  num_verts = v_template.shape[0]

  shapedirs = _as_float("shapedirs", source, data["shapedirs"], "[V, 3, B]", dtype)
  if shapedirs.ndim != 3 or shapedirs.shape[:2] != (num_verts, 3):
    raise ValueError(f"{source}: shapedirs must be [{num_verts}, 3, B], found {shapedirs.shape}")
  if shapedirs.shape[2] < num_betas:
    raise ValueError(f"{source}: num_betas={num_betas} requested but shapedirs has only "
                     f"{shapedirs.shape[2]} components")
  shapedirs = shapedirs[:, :, :num_betas]

  if data.get("posedirs") is None:
    posedirs = np.zeros((NUM_POSE_FEATURES, num_verts * 3), np.float32)
  else:
    posedirs = _as_float("posedirs", source, data["posedirs"], "[V, 3, 207]", dtype)
    if posedirs.shape == (num_verts, 3, NUM_POSE_FEATURES):
      posedirs = posedirs.reshape(num_verts * 3, NUM_POSE_FEATURES).T
    elif posedirs.shape != (NUM_POSE_FEATURES, num_verts * 3):
      raise ValueError(f"{source}: posedirs must be [{num_verts}, 3, 207] (SMPL file) or "
                       f"[207, {num_verts * 3}], found {posedirs.shape}")

  j_regressor = _as_float("J_regressor", source, _dense(data["J_regressor"]), "[24, V]", dtype)
  if j_regressor.shape != (NUM_JOINTS, num_verts):
    raise ValueError(f"{source}: J_regressor must be [24, {num_verts}], found "
                     f"{j_regressor.shape}")
  weights = _as_float("weights", source, data["weights"], "[V, 24]", dtype)
  if weights.shape != (num_verts, NUM_JOINTS):
    raise ValueError(f"{source}: weights must be [{num_verts}, 24], found {weights.shape}")
  check_skinning_weights(np.asarray(weights, np.float64), source)

  kintree = np.asarray(data["kintree_table"]).astype(np.int64)
  if kintree.shape != (2, NUM_JOINTS):
    raise ValueError(f"{source}: kintree_table must be [2, 24], found {kintree.shape}")
  parents = [int(p) for p in kintree[0]]
  parents[0] = -1  # stored as 4294967295 in SMPL files
  if any(not 0 <= p < i for i, p in enumerate(parents) if i > 0):
    raise ValueError(f"{source}: kintree_table parents {parents} are not topologically "
                     "ordered (parent index must be smaller than the joint index)")

  faces = np.asarray(data["f"])
  if faces.ndim != 2 or faces.shape[1] != 3:
    raise ValueError(f"{source}: f (faces) must be [F, 3], found {faces.shape}")
  faces = faces.astype(np.int64)
  if faces.min() < 0 or faces.max() >= num_verts:
    raise ValueError(f"{source}: f (faces) indices must lie in [0, {num_verts}), found "
                     f"[{faces.min()}, {faces.max()}]")

  return BodyModel(
      v_template=jnp.asarray(v_template),
      shapedirs=jnp.asarray(shapedirs),
      posedirs=jnp.asarray(posedirs),
      J_regressor=jnp.asarray(j_regressor),
      lbs_weights=jnp.asarray(weights),
      faces=jnp.asarray(faces.astype(np.int32)),
      parents=tuple(parents),
      has_posedirs=bool(np.any(posedirs != 0)),
      lbs_indices=_influence_indices(weights),
      name=os.path.basename(str(source)),
  )


def _influence_indices(weights: np.ndarray, max_sparse: int = 8) -> jax.Array | None:
  """[V, K] indices of each vertex's non-zero weights, or None if some vertex has > 8."""
  k = int(np.count_nonzero(weights, axis=1).max(initial=0))
  if k == 0 or k > max_sparse or k >= weights.shape[1]:
    return None  # dense blending is as fast
  # A stable sort on "is zero" keeps the non-zero joints first, in joint order.
  order = np.argsort(weights == 0, axis=1, kind="stable")[:, :k]
  return jnp.asarray(order.astype(np.int32))


def default_body_path() -> str:
  """Path of the embedded CC0 default body (SMPL-layout ``.npz``)."""
  return str(resources.files("hsjax") / "assets" / DEFAULT_BODY_FILE)


def read_body_file(path: str) -> dict:
  """Reads the fields of an SMPL-format ``.pkl`` or ``.npz`` file without running code.

  ``.pkl`` files (as distributed by the SMPL site, with chumpy objects and scipy sparse
  matrices) go through a restricted unpickler that refuses every global outside a short
  whitelist; ``.npz`` files are read with ``allow_pickle=False``, and only if they hold object
  arrays (e.g. a pickled sparse ``J_regressor``) are those members read by the same restricted
  unpickler.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"body model file not found: {path}")
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".pkl", ".npz"):
    raise ValueError(f"{path}: unknown body model extension '{ext}'; expected .pkl or .npz")
  if os.path.isdir(path):
    raise ValueError(f"{path}: a body model file expected, found a directory")
  if ext == ".pkl":
    return smpl_pickle.read_naming_the_file(smpl_pickle.load_smpl_pickle, path,
                                            "SMPL pickle")
  return smpl_pickle.read_naming_the_file(smpl_pickle.load_npz_restricted, path, ".npz archive")


def load_body_model(path_or_name: str = "default", num_betas: int = 10, *, dtype=np.float32
                    ) -> BodyModel:
  """Loads an SMPL-format body model.

  Args:
    path_or_name: ``"default"`` for the embedded CC0 body (built from MakeHuman assets), or
      the path of an official SMPL ``.pkl`` (v1.0 / v1.1, any gender; chumpy not needed) or of
      a smplx-style ``.npz``; a directory is searched for ``SMPL_NEUTRAL.pkl`` / ``.npz``.
    num_betas: shape components kept.
    dtype: float dtype of the model arrays (float64 needs ``jax.enable_x64``).
  """
  if path_or_name == "default":
    path = default_body_path()
    if not os.path.exists(path):
      raise FileNotFoundError(f"the embedded default body is missing: {path}; rebuild it with "
                              "`python tools/build_default_body.py`")
  else:
    path = os.fspath(path_or_name)
    if os.path.isdir(path):
      candidates = [os.path.join(path, f"SMPL_NEUTRAL{e}") for e in (".pkl", ".npz")]
      found = [c for c in candidates if os.path.exists(c)]
      if not found:
        raise FileNotFoundError(f"{path}: no SMPL_NEUTRAL.pkl or SMPL_NEUTRAL.npz in directory")
      path = found[0]
  model = body_model_from_arrays(read_body_file(path), num_betas=num_betas, source=path,
                                 dtype=dtype)
  return model.replace(name="default" if path_or_name == "default" else model.name)


# ------------------------------------------------------------------------------------------
# Forward kinematics


def shape_blend(model: BodyModel, betas: jax.Array) -> jax.Array:
  """Shaped rest mesh: [..., B] -> [..., V, 3]."""
  return model.v_template + jnp.einsum("...b,vdb->...vd", betas, model.shapedirs)


def pose_features(rotmats: jax.Array) -> jax.Array:
  """SMPL's ``lrotmin`` feature: [..., 24, 3, 3] -> [..., 207] = (R_j − I), j = 1..23."""
  eye = jnp.eye(3, dtype=rotmats.dtype)
  return (rotmats[..., 1:, :, :] - eye).reshape(*rotmats.shape[:-3], NUM_POSE_FEATURES)


def pose_blend(model: BodyModel, rotmats: jax.Array) -> jax.Array:
  """Pose-corrective offsets: [..., 24, 3, 3] -> [..., V, 3] (zeros without posedirs)."""
  batch = rotmats.shape[:-3]
  if not model.has_posedirs:
    return jnp.zeros((*batch, model.num_vertices, 3), rotmats.dtype)
  offsets = pose_features(rotmats) @ model.posedirs
  return offsets.reshape(*batch, model.num_vertices, 3)


def kinematic_chain(rotmats: jax.Array, joints: jax.Array, parents: tuple[int, ...]
                    ) -> tuple[jax.Array, jax.Array]:
  """Composes local joint rotations along the tree.

  Args:
    rotmats: [..., J, 3, 3] local rotations.
    joints: [..., J, 3] rest-pose joint locations.
    parents: static parent indices, ``parents[i] < i``, root -1.

  Returns:
    ``(posed_joints [..., J, 3], relative_transforms [..., J, 4, 4])``; the latter map
    rest-pose points to posed points (smplx's ``A``).
  """
  parent_joints = joints[..., [max(p, 0) for p in parents], :]
  rel_joints = joints - jnp.where(jnp.asarray(parents)[:, None] >= 0, parent_joints, 0.0)
  # The chain is unrolled at trace time (24 tiny 3x3 products); rotation and translation
  # are kept apart instead of 4x4 products.
  global_rot = [rotmats[..., 0, :, :]]
  global_t = [rel_joints[..., 0, :]]
  for i in range(1, len(parents)):
    p = parents[i]
    global_rot.append(global_rot[p] @ rotmats[..., i, :, :])
    global_t.append(global_t[p] + jnp.einsum("...ij,...j->...i", global_rot[p],
                                             rel_joints[..., i, :]))
  rot = jnp.stack(global_rot, axis=-3)  # [..., J, 3, 3]
  posed_joints = jnp.stack(global_t, axis=-2)  # [..., J, 3]
  t_rel = posed_joints - jnp.einsum("...jik,...jk->...ji", rot, joints)
  return posed_joints, make_transforms(rot, t_rel)


def make_transforms(rot: jax.Array, t: jax.Array) -> jax.Array:
  """[..., 3, 3] and [..., 3] -> [..., 4, 4] homogeneous transforms."""
  top = jnp.concatenate([rot, t[..., None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], rot.dtype), (*rot.shape[:-2], 1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def skinning_transforms(weights: jax.Array, transforms: jax.Array) -> jax.Array:
  """Blended per-point transforms: weights [..., N, J], transforms [..., J, 4, 4] -> [..., N, 4, 4].

  Warning: the blended 3x3 block is in general not a rotation (linear blend skinning).
  """
  return jnp.einsum("...nj,...jab->...nab", weights, transforms)


def apply_transforms(transforms: jax.Array, points: jax.Array) -> jax.Array:
  """[..., N, 4, 4] applied to points [..., N, 3] -> [..., N, 3]."""
  return jnp.einsum("...nij,...nj->...ni", transforms[..., :3, :3], points) + transforms[..., :3, 3]


def full_pose_rotmats(body_pose: jax.Array, global_orient: jax.Array) -> jax.Array:
  """[..., 23, 3] and [..., 3] axis-angle -> [..., 24, 3, 3] rotation matrices."""
  batch = jnp.broadcast_shapes(body_pose.shape[:-2], global_orient.shape[:-1])
  full = jnp.concatenate([jnp.broadcast_to(global_orient, (*batch, 3))[..., None, :],
                          jnp.broadcast_to(body_pose, (*batch, 23, 3))], axis=-2)
  return rotations.axis_angle_to_matrix(full)


def joint_transforms(model: BodyModel, betas: jax.Array, rotmats: jax.Array, transl: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """World LBS transforms of the joints, without touching the mesh.

  Args:
    model: body model.
    betas: [..., B] shape.
    rotmats: [..., 24, 3, 3] local joint rotations.
    transl: [..., 3] root translation.

  Returns:
    ``(joints [..., 24, 3], transforms [..., 24, 4, 4])``, both with ``transl`` applied.
  """
  rest_joints = rest_joints_from_betas(model, betas)
  posed_joints, rel = kinematic_chain(rotmats, rest_joints, model.parents)
  rel = rel.at[..., :3, 3].add(transl[..., None, :])
  return posed_joints + transl[..., None, :], rel


def regress_joints(model: BodyModel, v_shaped: jax.Array) -> jax.Array:
  """[..., V, 3] -> [..., 24, 3] (joints follow the shape, never the pose correctives)."""
  return jnp.einsum("jv,...vd->...jd", model.J_regressor, v_shaped)


def linear_blend_skinning(weights: jax.Array, transforms: jax.Array, points: jax.Array,
                          indices: jax.Array | None = None) -> jax.Array:
  """LBS in one pass: ``Σ_j w_nj T_j p_n`` for points [..., N, 3].

  Args:
    weights: [N, J] skinning weights (shared over the batch) or [..., N, J].
    transforms: [..., J, 4, 4] (or [..., J, 3, 4]) affine transforms.
    points: [..., N, 3] rest-pose points.
    indices: optional [N, K] joints carrying each point's non-zero weights (e.g.
      ``BodyModel.lbs_indices``); weights outside them are treated as zero.

  Returns:
    [..., N, 3] skinned points; equal to
    ``apply_transforms(skinning_transforms(weights, transforms), points)``.
  """
  # Only the 3x4 affine rows are blended (the last row is constant), laid out as 4 column
  # vectors of 3, so that applying the blend is three fused multiply-adds.
  cols = jnp.swapaxes(transforms[..., :3, :], -1, -2)  # [..., J, 4, 3]
  flat = cols.reshape(*cols.shape[:-2], 12)  # [..., J, 12]
  if indices is not None:
    # Skinning weights are sparse (SMPL: <= 4 joints a vertex, the default body <= 6): K
    # gathers of 12 floats per vertex, fused by XLA, cost ~1/3 of the dense
    # [N, 24] x [24, 12] product on CPU.
    index = jnp.broadcast_to(indices, (*weights.shape[:-2], *indices.shape))
    values = jnp.take_along_axis(weights, index, axis=-1)  # [..., N, K]
    blended = sum(values[..., k, None] * flat[..., indices[:, k], :]
                  for k in range(indices.shape[-1]))
  else:
    blended = jnp.matmul(weights, flat)  # [..., N, 12]
  blended = blended.reshape(*blended.shape[:-1], 4, 3)
  return (blended[..., 0, :] * points[..., 0:1] + blended[..., 1, :] * points[..., 1:2]
          + blended[..., 2, :] * points[..., 2:3] + blended[..., 3, :])


def rest_joints_from_betas(model: BodyModel, betas: jax.Array, v_shaped: jax.Array | None = None
                           ) -> jax.Array:
  """Rest-pose joints [..., 24, 3] of shapes betas [..., B].

  ``J_regressor @ (v_template + shapedirs β)`` is linear in β: for large batches the joint
  regressor is applied once to the template and the B shape directions (24 V 3 (B + 1) MACs
  per call) instead of once per item (24 V 3 per item); the result is the same.
  """
  batch = int(np.prod(betas.shape[:-1], dtype=np.int64))
  if v_shaped is not None and batch <= model.num_betas:
    return regress_joints(model, v_shaped)
  j_template = model.J_regressor @ model.v_template  # [24, 3]
  j_shapedirs = jnp.einsum("jv,vdb->jdb", model.J_regressor, model.shapedirs)  # [24, 3, B]
  return j_template + jnp.einsum("...b,jdb->...jd", betas, j_shapedirs)


def body_forward(model: BodyModel, betas: jax.Array, body_pose: jax.Array,
                 global_orient: jax.Array, transl: jax.Array | None = None) -> BodyOutput:
  """SMPL forward pass (shape, pose blend shapes, kinematic chain, LBS).

  Args:
    model: the body model.
    betas: [..., B] shape coefficients (B = ``model.num_betas``).
    body_pose: [..., 23, 3] axis-angle of joints 1..23.
    global_orient: [..., 3] axis-angle of the root (about the pelvis joint).
    transl: [..., 3] translation added after skinning (default zero).

  Returns:
    :class:`BodyOutput` with vertices [..., V, 3], joints [..., 24, 3],
    transforms [..., 24, 4, 4] and rotmats [..., 24, 3, 3]. Leading axes broadcast.
  """
  if betas.ndim == 0 or betas.shape[-1] != model.num_betas:
    raise ValueError(f"betas must be [..., {model.num_betas}], found {betas.shape}: betas has "
                     f"{betas.shape[-1] if betas.ndim else 0} components; the model has "
                     f"{model.num_betas}")
  if body_pose.shape[-2:] != (23, 3):
    raise ValueError(f"body_pose must be [..., 23, 3] axis-angle, found {body_pose.shape}")
  if global_orient.shape[-1:] != (3,):
    raise ValueError(f"global_orient must be [..., 3] axis-angle, found {global_orient.shape}")
  if transl is None:
    transl = jnp.zeros(global_orient.shape, global_orient.dtype)
  elif transl.shape[-1:] != (3,):
    raise ValueError(f"transl must be [..., 3] metres, found {transl.shape}")
  batch = jnp.broadcast_shapes(betas.shape[:-1], body_pose.shape[:-2], global_orient.shape[:-1],
                               transl.shape[:-1])
  transl = jnp.broadcast_to(transl, (*batch, 3))
  rotmats = full_pose_rotmats(body_pose, global_orient)

  # The shape is evaluated at the betas' own batch shape (shared betas: once for all frames).
  v_shaped = shape_blend(model, betas)
  rest_joints = jnp.broadcast_to(rest_joints_from_betas(model, betas, v_shaped),
                                 (*batch, NUM_JOINTS, 3))
  v_posed = v_shaped + pose_blend(model, rotmats) if model.has_posedirs else v_shaped
  posed_joints, rel = kinematic_chain(rotmats, rest_joints, model.parents)
  rel = rel.at[..., :3, 3].add(transl[..., None, :])
  vertices = linear_blend_skinning(model.lbs_weights, rel, v_posed, model.lbs_indices)
  vertices = jnp.broadcast_to(vertices, (*batch, model.num_vertices, 3))
  return BodyOutput(vertices=vertices, joints=posed_joints + transl[..., None, :],
                    transforms=rel, rotmats=rotmats)


def forward_params(model: BodyModel, params: SMPLParams) -> BodyOutput:
  """:func:`body_forward` of :class:`SMPLParams`, shared ``betas`` broadcast over the frames.

  Args:
    model: the body model.
    params: ``betas [B]`` (shared) or ``[..., B]``, ``body_pose [..., 23, 3]``,
      ``global_orient [..., 3]``, ``transl [..., 3]`` (``...`` = no axis for one frame, or
      ``[T]``).

  Returns:
    :class:`BodyOutput` with the frame axes of ``body_pose``.
  """
  betas = jnp.asarray(params.betas)
  body_pose = jnp.asarray(params.body_pose)
  betas = jnp.broadcast_to(betas, (*body_pose.shape[:-2], betas.shape[-1]))
  return body_forward(model, betas, body_pose, jnp.asarray(params.global_orient),
                      jnp.asarray(params.transl))


# One frame's forward pass compiled once and looped over frames on the host: one compilation
# serves every sequence length, and memory stays that of one frame.
_forward_params_frame = jax.jit(forward_params)


def pose_frames_host(model: BodyModel, params: SMPLParams) -> tuple[np.ndarray, np.ndarray]:
  """Posed vertices [T, V, 3] and joints [T, 24, 3] of T frames, as numpy (host side).

  Args:
    model: the body model.
    params: ``betas [B]`` shared, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``,
      ``transl [T, 3]`` (numpy or jax arrays).
  """
  betas = jnp.asarray(params.betas, jnp.float32)
  verts, joints = [], []
  for t in range(len(params.body_pose)):
    frame = SMPLParams(betas=betas, body_pose=jnp.asarray(params.body_pose[t], jnp.float32),
                       global_orient=jnp.asarray(params.global_orient[t], jnp.float32),
                       transl=jnp.asarray(params.transl[t], jnp.float32))
    out = _forward_params_frame(model, frame)
    verts.append(np.asarray(out.vertices))
    joints.append(np.asarray(out.joints))
  return np.stack(verts), np.stack(joints)


def vertex_normals(vertices: jax.Array, faces: jax.Array) -> jax.Array:
  """Area-weighted unit vertex normals: vertices [..., V, 3], faces [F, 3] -> [..., V, 3]."""
  v0 = vertices[..., faces[:, 0], :]
  v1 = vertices[..., faces[:, 1], :]
  v2 = vertices[..., faces[:, 2], :]
  face_normals = jnp.cross(v1 - v0, v2 - v0)  # length = 2 * area
  normals = jnp.zeros_like(vertices)
  for k in range(3):
    normals = normals.at[..., faces[:, k], :].add(face_normals)
  norm = jnp.sqrt(jnp.sum(normals * normals, -1, keepdims=True) + 1e-20)
  return normals / norm


def transform_params(body_model: BodyModel, params: SMPLParams,
                     transform: np.ndarray) -> SMPLParams:
  """SMPL parameters expressed in another frame: ``p' = R p + t`` for ``transform [4, 4]``
  (or [T, 4, 4]); the root rotates about the pelvis joint, so ``transl`` absorbs the pivot."""
  betas = np.asarray(params.betas, np.float32)
  t_frames = np.asarray(params.global_orient).shape[0]
  m = np.broadcast_to(np.asarray(transform, np.float64), (t_frames, 4, 4))
  rot, tr = m[:, :3, :3], m[:, :3, 3]
  j0 = np.asarray(rest_joints_from_betas(body_model, jnp.asarray(betas)))[0]
  go = rotations_np.axis_angle_to_matrix(np.asarray(params.global_orient, np.float64))
  new_go = rotations_np.matrix_to_axis_angle(rot @ go)
  pelvis = np.asarray(params.transl, np.float64) + j0
  new_transl = np.einsum("tij,tj->ti", rot, pelvis) + tr - j0
  return SMPLParams(betas=betas, body_pose=np.asarray(params.body_pose, np.float32),
                    global_orient=new_go.astype(np.float32),
                    transl=new_transl.astype(np.float32))


# A body whose mean up axis lies further than this from the camera's vertical is not taken
# to show the world's vertical (the person lies, crawls or turns cartwheels; the fit failed).
MAX_UPRIGHT_TILT_DEG = 45.0


def mean_up_axis(global_orient: np.ndarray) -> np.ndarray:
  """[3] unit vector: the body's up axis (SMPL's rest +y) carried by each frame's root
  rotation ``global_orient [T, 3]`` (axis-angle), averaged over the frames."""
  ups = rotations_np.axis_angle_to_matrix(np.asarray(global_orient, np.float64))[:, :, 1]
  mean = ups.mean(axis=0)
  return mean / max(float(np.linalg.norm(mean)), 1e-12)


def upright_transform(params: SMPLParams) -> np.ndarray:
  """[4, 4] rotation about the origin that stands a world in an OpenCV camera's own frame (a
  video fit's: y down, the camera at the origin) upright: +y along the body's mean up axis.

  The world's vertical is not observed in a monocular clip; a person who stands, walks or
  dances is upright on average, while the camera may look down or be rolled. The rotation is
  half a turn about x (image up becomes +y, the camera looks along -z) followed by the
  smallest rotation taking the body's mean up axis (:func:`mean_up_axis`) to +y; when that
  axis lies more than ``MAX_UPRIGHT_TILT_DEG`` from the camera's vertical, the half turn
  alone (the camera's vertical is taken for the world's).

  Args:
    params: the fitted poses in the camera frame (``global_orient [T, 3]``).
  """
  half_turn = np.diag([1.0, -1.0, -1.0])
  up = half_turn @ mean_up_axis(params.global_orient)
  rot = half_turn
  if np.degrees(np.arccos(np.clip(up[1], -1.0, 1.0))) <= MAX_UPRIGHT_TILT_DEG:
    rot = rotations_np.rotation_between(up, np.array([0.0, 1.0, 0.0])) @ half_turn
  transform = np.eye(4)
  transform[:3, :3] = rot
  return transform
