"""The LBS-skinned 3D Gaussian avatar: canonical Gaussians bound to the body surface.

An :class:`Avatar` holds N Gaussians in the *canonical* space of the body model (the rest
T-pose of the template, ``betas = 0``). Each Gaussian keeps an anchor on the template surface
(a face and barycentric coordinates) from which it takes the shape and pose blend-shape
offsets, and SMPL skinning weights (fixed, or learnable as logits). :func:`deform` carries the
avatar into a frame:

1. ``x = μ + Σ_k b_k (shapedirs·β + posedirs·f(θ))[face_k]`` (+ optional non-rigid offset):
   the blend-shape offsets of the three anchor vertices, interpolated barycentrically, so a
   Gaussian sitting on a vertex with that vertex's weights moves *exactly* like the vertex;
2. ``x' = Σ_j w_j A_j x`` with the joint transforms ``A`` of :func:`hsjax.body.kinematic_chain`
   (``transl`` included): linear blend skinning of the centre;
3. the blended 3x3 block ``M = Σ_j w_j R_j`` is in general *not* a rotation. hsjax rotates
   each Gaussian by the rotation factor ``R`` of the polar decomposition ``M = R S``, the
   closest rotation to ``M``, and keeps its scales; the symmetric stretch ``S`` (LBS's volume
   loss near joints, ``S = I`` for rigid parts) is dropped. ``R`` is computed by Higham's
   scaled Newton iteration, differentiable wherever ``M`` is non-singular, unlike an SVD,
   whose gradient is undefined at repeated singular values, i.e. exactly at rotations.
   The deformed covariance is ``R Σ Rᵀ``; for a Gaussian rigidly bound to one joint this is
   the exact ``R_j Σ R_jᵀ``.
4. Spherical-harmonic colour is rotated with the Gaussian (exactly, band by band), so the
   appearance learned in canonical space follows the body part.

Every function is pure and written for one frame; ``jax.vmap`` lifts :func:`deform` to frames.

Capacity is fixed (static shapes under ``jit``): slots with ``active = False`` are padding that
density control can fill; :func:`deform` gives them opacity 0.

Optimising: ``face_ids`` (int) and ``active`` (bool) cannot be differentiated, so split the
avatar into trainable parameters and buffers with :func:`split` and join them with
:func:`combine` inside the loss (see :func:`split` for an example with optax).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from scipy import spatial

from hsjax import body as body_lib
from hsjax import nonrigid as nonrigid_lib
from hsjax import rotations
from hsjax.gaussians import Gaussians
from kernels.rasterize import sh as sh_lib

# SH degree-0 basis constant (3DGS): colour = 0.5 + C0 * sh_0.
SH_C0 = 0.28209479177387814

# Fields that hold one row per Gaussian (leading axis N); density control permutes these.
PER_GAUSSIAN_FIELDS = ("means", "log_scales", "quats", "opacity_logits", "sh", "skin_logits",
                       "skin_init", "face_ids", "barycentrics", "active")
# Fields that optax updates (``skin_logits`` only when ``learn_skinning``).
_PARAM_FIELDS = ("means", "log_scales", "quats", "opacity_logits", "sh", "skin_logits",
                 "nonrigid")

# Newton steps of the polar decomposition. With determinant scaling, an even blend of two
# rotations 170° apart converges to float32 precision within these 7 steps (tested); LBS
# blends are far milder.
_POLAR_ITERATIONS = 7
# Smallest determinant the polar iteration divides by; only reached by degenerate blends
# (weights split evenly between opposite rotations), where no rotation is meaningful.
_POLAR_MIN_DET = 1e-6
# Skinning logits start at log(max(w, this)): softmax then reproduces w to ~24 × this.
_SKIN_LOGIT_FLOOR = 1e-6


@flax.struct.dataclass(kw_only=True)
class Avatar:
  """N canonical Gaussians bound to a body model (a pytree; fixed capacity N)."""

  means: jax.Array  # [N, 3] centres, metres, canonical frame (rest pose, betas = 0).
  log_scales: jax.Array  # [N, 3] log standard deviations along the local axes (log metres).
  quats: jax.Array  # [N, 4] canonical rotations (w, x, y, z), any norm > 0.
  opacity_logits: jax.Array  # [N] opacity = sigmoid(logit).
  sh: jax.Array  # [N, (sh_degree + 1)², 3] SH colour coefficients (3DGS basis and order).
  skin_logits: jax.Array  # [N, 24] learnable skinning, weights = softmax (learn_skinning).
  skin_init: jax.Array  # [N, 24] initial skinning weights (rows sum to 1): the fixed weights
  #                       when not learn_skinning, the drift regulariser's target otherwise.
  face_ids: jax.Array  # [N] int32 anchor face of the template mesh.
  barycentrics: jax.Array  # [N, 3] anchor barycentric coordinates in that face (sum to 1).
  active: jax.Array  # [N] bool; inactive slots are padding (rendered with opacity 0).
  nonrigid: Any = None  # non-rigid model parameters (hsjax.nonrigid), or None when off.
  sh_degree: int = flax.struct.field(pytree_node=False, default=1)  # 0..3.
  learn_skinning: bool = flax.struct.field(pytree_node=False, default=False)
  # hsjax.nonrigid.NonRigidConfig (hashable) when ``nonrigid`` is set, else None.
  nonrigid_config: Any = flax.struct.field(pytree_node=False, default=None)

  @property
  def num_gaussians(self) -> int:
    """Capacity N (active and inactive slots)."""
    return self.means.shape[-2]


@flax.struct.dataclass(kw_only=True)
class DeformOutput:
  """What :func:`deform_with_aux` returns besides the Gaussians (for regularisers)."""

  gaussians: Gaussians  # world-space Gaussians of the frame.
  rotations: jax.Array  # [N, 3, 3] per-Gaussian rotation applied (polar factor of LBS).
  canonical_means: jax.Array  # [N, 3] posed-space input of LBS (blend shapes + non-rigid).
  nonrigid_offsets: Any = None  # hsjax.nonrigid.NonRigidOffsets, or None.


# ------------------------------------------------------------------------------------------
# Parameters vs buffers


def split(avatar: Avatar) -> tuple[Avatar, Avatar]:
  """Splits an avatar into ``(params, buffers)``, two Avatars with complementary ``None`` fields.

  ``params`` holds what the optimiser updates (means, log_scales, quats, opacity_logits, sh,
  skin_logits when ``learn_skinning``, nonrigid); ``buffers`` holds the rest (skin_init,
  face_ids, barycentrics, active, and skin_logits when fixed). Both keep the static fields.
  ``jax.grad`` cannot differentiate the int / bool buffers, hence the split::

    params, buffers = hsjax.avatar.split(avatar)
    opt_state = tx.init({"avatar": params, "poses": poses})
    def loss_fn(p):
      gaussians = hsjax.deform(hsjax.avatar.combine(p["avatar"], buffers), ...)

  Density control (:mod:`hsjax.density`) takes the full avatar and an optimiser state built
  over such ``params``.
  """
  param_fields = _param_fields(avatar)
  params = avatar.replace(**{f: None for f in _all_fields() if f not in param_fields})
  buffers = avatar.replace(**{f: None for f in param_fields})
  return params, buffers


def combine(params: Avatar, buffers: Avatar) -> Avatar:
  """Inverse of :func:`split`: takes each field from whichever half holds it."""
  values = {}
  for f in _all_fields():
    p, b = getattr(params, f), getattr(buffers, f)
    values[f] = p if p is not None else b
  return params.replace(**values)


def param_labels(avatar: Avatar) -> Avatar:
  """An Avatar of group names per field (for ``optax.multi_transform`` / ``optax.partition``).

  Labels: ``"means"``, ``"scales"``, ``"quats"``, ``"opacity"``, ``"sh"``, ``"skinning"``,
  ``"nonrigid"`` (every leaf of the non-rigid parameters). Works on a full avatar or on the
  ``params`` half of :func:`split` (``None`` fields stay ``None``).
  """
  names = {"means": "means", "log_scales": "scales", "quats": "quats",
           "opacity_logits": "opacity", "sh": "sh", "skin_logits": "skinning"}
  values = {}
  for f in _all_fields():
    value = getattr(avatar, f)
    if value is None:
      values[f] = None
    elif f == "nonrigid":
      values[f] = jax.tree.map(lambda _: "nonrigid", value)
    elif f in names:
      values[f] = names[f]
    else:
      values[f] = "frozen"
  return avatar.replace(**values)


def _all_fields() -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(Avatar)
               if f.metadata.get("pytree_node", True))


def _param_fields(avatar: Avatar) -> tuple[str, ...]:
  return tuple(f for f in _PARAM_FIELDS if f != "skin_logits" or avatar.learn_skinning)


# ------------------------------------------------------------------------------------------
# Initialisation


def init_avatar(key: jax.Array, body_model: body_lib.BodyModel, num_gaussians: int = 16384, *,
                sh_degree: int = 1, active_fraction: float = 0.75,
                init_color=(0.5, 0.5, 0.5), init_opacity: float = 0.9,
                scale_multiplier: float = 0.5, flatness: float = 0.1,
                skin_init: str = "barycentric", learn_skinning: bool = False,
                nonrigid: bool = False, nonrigid_config=None) -> Avatar:
  """Samples an avatar on the template surface of ``body_model``.

  Positions are sampled area-weighted on the rest mesh (``betas = 0``) with *systematic*
  sampling over the faces' cumulative area (each face gets ⌊n·a_f/A⌋ or ⌈n·a_f/A⌉ samples,
  avoiding the holes of independent draws), uniformly inside each face; the barycentric
  coordinates are kept as the anchor. Each Gaussian is a flat disc tangent to the skin: its
  local z axis is the interpolated vertex normal, its two tangent scales half the mean distance
  to its 3 nearest samples (3DGS takes the full distance for isotropic blobs; on a surface,
  discs of half the spacing already overlap to alpha ≈ 0.9 midway between samples, and the
  silhouette is not dilated), its normal scale ``flatness`` times that.

  Args:
    key: PRNG key.
    body_model: the body; its template, faces, normals and skinning weights are used.
    num_gaussians: capacity N (static). The default 16384 (12288 active, samples ≈ 9 mm
      apart on the default body, ≈ 1.2 px when the body is 220 px tall at 256²) gives the
      initial silhouette a margin over IoU 0.95 with the posed mesh (measured with the
      antialiased renderer: 3072 active 0.93, 6144 active 0.95, 12288 active 0.96) and keeps
      a quarter free for densification; a 256² render step (forward + backward) costs about
      1.7× that of capacity 4096 on CPU.
    sh_degree: SH degree 0..3 of the colour.
    active_fraction: fraction of the capacity active at start; the rest is room for
      densification (those slots hold copies of active Gaussians, inactive).
    init_color: RGB in [0, 1] (the SH DC term; higher bands start at 0).
    init_opacity: initial opacity in (0, 1).
    scale_multiplier: tangent scale / mean 3-nearest-neighbour distance.
    flatness: normal scale / tangent scale (flat discs, as CAMEL's flatness term prefers).
    skin_init: ``"barycentric"`` (weights of the anchor's three vertices interpolated) or
      ``"nearest"`` (the weights of the anchor vertex nearest in barycentric terms).
    learn_skinning: skinning weights become ``softmax(skin_logits)``, trained.
    nonrigid: add the pose-conditioned non-rigid MLP (:mod:`hsjax.nonrigid`), zero at init.
    nonrigid_config: its :class:`hsjax.nonrigid.NonRigidConfig` (default config if None).

  Returns:
    The :class:`Avatar` (arrays on the default device).
  """
  if not 0 <= sh_degree <= 3:
    raise ValueError(f"init_avatar: sh_degree must be in 0..3, found {sh_degree}")
  if not 0.0 < active_fraction <= 1.0:
    raise ValueError(f"init_avatar: active_fraction must be in (0, 1], found {active_fraction}")
  if not 0.0 < init_opacity < 1.0:
    raise ValueError(f"init_avatar: init_opacity must be in (0, 1), found {init_opacity}")
  if skin_init not in ("barycentric", "nearest"):
    raise ValueError(f"init_avatar: skin_init must be 'barycentric' or 'nearest', found "
                     f"{skin_init!r}")
  num_active = max(1, int(round(num_gaussians * active_fraction)))
  if num_active < 4:
    raise ValueError(f"init_avatar: need at least 4 active Gaussians, found {num_active}")
  init_color = np.asarray(init_color, np.float32)
  if init_color.shape != (3,):
    raise ValueError(f"init_avatar: init_color must be RGB [3], found shape {init_color.shape}")

  verts = np.asarray(body_model.v_template, np.float64)
  faces = np.asarray(body_model.faces)
  key_faces, key_bary, key_nonrigid = jax.random.split(key, 3)
  face_ids, bary = _sample_surface(key_faces, key_bary, verts, faces, num_active)
  corners = verts[faces[face_ids]]  # [n, 3, 3]
  points = np.einsum("nk,nkd->nd", bary, corners)

  vnormals = np.asarray(body_lib.vertex_normals(jnp.asarray(verts, jnp.float32),
                                                jnp.asarray(faces)), np.float64)
  normals = np.einsum("nk,nkd->nd", bary, vnormals[faces[face_ids]])
  face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
  # Interpolated vertex normals can vanish on thin or folded geometry; the face normal then.
  normals = np.where(np.linalg.norm(normals, axis=-1, keepdims=True) > 1e-6, normals,
                     face_normals)
  normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
  tangent = corners[:, 1] - corners[:, 0]
  tangent -= np.sum(tangent * normals, -1, keepdims=True) * normals
  tangent /= np.maximum(np.linalg.norm(tangent, axis=-1, keepdims=True), 1e-12)
  bitangent = np.cross(normals, tangent)
  frames = np.stack([tangent, bitangent, normals], axis=-1)  # columns: local x, y, z
  quats = np.asarray(rotations.matrix_to_quat(jnp.asarray(frames, jnp.float32)))

  spacing = _knn_spacing(points, k=3) * scale_multiplier
  scales = np.stack([spacing, spacing, spacing * flatness], -1)

  weights = np.asarray(body_model.lbs_weights, np.float64)
  if skin_init == "barycentric":
    skin = np.einsum("nk,nkj->nj", bary, weights[faces[face_ids]])
  else:
    skin = weights[faces[face_ids, np.argmax(bary, axis=-1)]]
  skin /= skin.sum(-1, keepdims=True)

  num_bases = (sh_degree + 1) ** 2
  sh = np.zeros((num_active, num_bases, 3), np.float32)
  sh[:, 0, :] = (init_color - 0.5) / SH_C0

  # Reserve slots: copies of active Gaussians (overwritten by densification before use).
  fill = np.arange(num_gaussians) % num_active
  active = np.arange(num_gaussians) < num_active
  logit = float(np.log(init_opacity / (1.0 - init_opacity)))
  skin_logits = np.log(np.maximum(skin, _SKIN_LOGIT_FLOOR))

  nonrigid_params = None
  config = None
  if nonrigid:
    config = nonrigid_config or nonrigid_lib.NonRigidConfig()
    nonrigid_params = nonrigid_lib.init_params(key_nonrigid, config, num_gaussians)
  elif nonrigid_config is not None:
    raise ValueError("init_avatar: nonrigid_config given but nonrigid=False")

  return Avatar(
      means=jnp.asarray(points[fill], jnp.float32),
      log_scales=jnp.asarray(np.log(scales[fill]), jnp.float32),
      quats=jnp.asarray(quats[fill], jnp.float32),
      opacity_logits=jnp.full((num_gaussians,), logit, jnp.float32),
      sh=jnp.asarray(sh[fill], jnp.float32),
      skin_logits=jnp.asarray(skin_logits[fill], jnp.float32),
      skin_init=jnp.asarray(skin[fill], jnp.float32),
      face_ids=jnp.asarray(face_ids[fill], jnp.int32),
      barycentrics=jnp.asarray(bary[fill], jnp.float32),
      active=jnp.asarray(active),
      nonrigid=nonrigid_params,
      sh_degree=sh_degree,
      learn_skinning=learn_skinning,
      nonrigid_config=config,
  )


def _sample_surface(key_faces, key_bary, verts: np.ndarray, faces: np.ndarray, n: int
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Area-weighted systematic sampling: (face_ids [n], barycentrics [n, 3])."""
  corners = verts[faces]
  areas = 0.5 * np.linalg.norm(
      np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=-1)
  if not np.all(np.isfinite(areas)) or areas.sum() <= 0:
    raise ValueError("init_avatar: the template mesh has no area (check v_template / faces)")
  cdf = np.cumsum(areas) / areas.sum()
  offset = float(jax.random.uniform(key_faces, ()))
  targets = (np.arange(n) + offset) / n
  face_ids = np.minimum(np.searchsorted(cdf, targets, side="right"), len(faces) - 1)
  # Uniform in the triangle: (1 - √u, √u (1 - v), √u v) (Osada et al. 2002).
  uv = np.asarray(jax.random.uniform(key_bary, (n, 2)), np.float64)
  r = np.sqrt(uv[:, 0])
  bary = np.stack([1.0 - r, r * (1.0 - uv[:, 1]), r * uv[:, 1]], -1)
  return face_ids.astype(np.int64), bary


def _knn_spacing(points: np.ndarray, k: int) -> np.ndarray:
  """Mean distance of each point to its k nearest other points: [n, 3] -> [n]."""

  dist, _ = spatial.cKDTree(points).query(points, k=k + 1)
  spacing = dist[:, 1:].mean(-1)
  # Coincident samples would get zero scale (log = -inf); fall back to the median spacing.
  floor = 0.1 * np.median(spacing) if np.any(spacing > 0) else 1e-3
  return np.maximum(spacing, floor)


# ------------------------------------------------------------------------------------------
# Deformation


def skinning_weights(avatar: Avatar) -> jax.Array:
  """[N, 24] skinning weights in use: ``softmax(skin_logits)`` if learned, else ``skin_init``."""
  if avatar.learn_skinning:
    return jax.nn.softmax(avatar.skin_logits, axis=-1)
  return avatar.skin_init


def anchor_vertex_ids(avatar: Avatar, body_model: body_lib.BodyModel) -> jax.Array:
  """[N] int32: per Gaussian, the vertex of its anchor face with the largest barycentric."""
  corners = body_model.faces[avatar.face_ids]  # [N, 3]
  return jnp.take_along_axis(corners, jnp.argmax(avatar.barycentrics, -1)[:, None], -1)[:, 0]


def interpolate_vertex_values(values: jax.Array, faces: jax.Array, face_ids: jax.Array,
                              barycentrics: jax.Array) -> jax.Array:
  """Barycentric interpolation of per-vertex values [V, D] at anchors -> [N, D]."""
  corners = values[faces[face_ids]]  # [N, 3, D]
  return jnp.einsum("nk,nkd->nd", barycentrics, corners)


def polar_rotation(m: jax.Array, iterations: int = _POLAR_ITERATIONS) -> jax.Array:
  """Rotation factor ``R`` of the polar decomposition ``M = R S``: [..., 3, 3] -> [..., 3, 3].

  Higham's Newton iteration ``X ← (γ X + (γ X)⁻ᵀ) / 2`` with determinant scaling
  ``γ = |det X|^(-1/3)`` (Higham, "Computing the polar decomposition", 1986), unrolled for a
  fixed number of steps so it is jittable and differentiable. ``X⁻ᵀ`` is the cofactor matrix
  over the determinant (columns ``x1 × x2``, ``x2 × x0``, ``x0 × x1``). Exact (one step) when
  ``M`` is a rotation; converges for any ``M`` with ``det M > 0``.

  Warning: for ``det M ≤ 0`` (an LBS blend that folds space, e.g. weights split evenly between
  opposite rotations) the result is finite but not a rotation.
  """
  x = m
  for _ in range(iterations):
    c0 = jnp.cross(x[..., :, 1], x[..., :, 2])
    c1 = jnp.cross(x[..., :, 2], x[..., :, 0])
    c2 = jnp.cross(x[..., :, 0], x[..., :, 1])
    cof = jnp.stack([c0, c1, c2], axis=-1)
    det = jnp.sum(x[..., :, 0] * c0, axis=-1)
    det = jnp.maximum(det, _POLAR_MIN_DET)[..., None, None]
    gamma = det ** (-1.0 / 3.0)
    x = 0.5 * (gamma * x + cof / (gamma * det))
  return x


def rotate_sh(sh: jax.Array, rot: jax.Array, degree: int) -> jax.Array:
  """Rotates SH colour coefficients with their Gaussian.

  Returns ``sh'`` such that ``colour'(d) = colour(Rᵀ d)`` for every unit direction ``d``: the
  appearance learned in canonical space follows the rotation. Each band ``l`` is mapped by the
  exact linear map ``D_l(R)``, found from ``2l + 1``-dimensional band invariance by evaluating
  the basis at fixed directions ``P`` and their rotated copies:
  ``D_l = Y_l(Rᵀ P)ᵀ⁺`` applied as ``c' = pinv(Y_l(P)) Y_l(Rᵀ P) c``.

  Args:
    sh: [N, (degree+1)², C] coefficients (3DGS basis, :mod:`kernels.rasterize.sh`).
    rot: [N, 3, 3] rotations.
    degree: SH degree (static).

  Returns:
    [N, (degree+1)², C].
  """
  if degree == 0:
    return sh

  dirs = jnp.asarray(_SH_SAMPLE_DIRS, rot.dtype)  # [P, 3]
  # Rᵀ p for every Gaussian: row-vector form p R.
  rotated = jnp.einsum("pi,nij->npj", dirs, rot)
  basis_rot = sh_lib.sh_basis(degree, rotated)  # [N, P, M]
  out = [sh[:, :1]]
  for l in range(1, degree + 1):
    lo, hi = l * l, (l + 1) * (l + 1)
    pinv = jnp.asarray(_sh_band_pinv(l), sh.dtype)  # [2l+1, P]
    # values of the old band-l function at Rᵀ p, then least squares (exact) in the new basis.
    values = jnp.einsum("npm,nmc->npc", basis_rot[:, :, lo:hi], sh[:, lo:hi])
    out.append(jnp.einsum("mp,npc->nmc", pinv, values))
  return jnp.concatenate(out, axis=1)


def _fibonacci_sphere(n: int) -> np.ndarray:
  """n well-spread unit directions (golden-angle spiral)."""
  i = np.arange(n) + 0.5
  z = 1.0 - 2.0 * i / n
  r = np.sqrt(1.0 - z * z)
  phi = np.pi * (3.0 - np.sqrt(5.0)) * i
  return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1).astype(np.float32)


# 16 directions: more than the 7 of the largest band (degree 3), well conditioned.
_SH_SAMPLE_DIRS = _fibonacci_sphere(16)


@functools.lru_cache(maxsize=None)
def _sh_band_pinv(band: int) -> np.ndarray:
  """Pseudo-inverse [2l+1, P] of the band-l basis at the sample directions (host constant)."""

  with jax.ensure_compile_time_eval():
    basis = np.asarray(sh_lib.sh_basis(band, jnp.asarray(_SH_SAMPLE_DIRS)), np.float64)
  return np.linalg.pinv(basis[:, band * band:(band + 1) * (band + 1)]).astype(np.float32)


def deform_with_aux(avatar: Avatar, body_model: body_lib.BodyModel, betas: jax.Array,
                    body_pose: jax.Array, global_orient: jax.Array, transl: jax.Array
                    ) -> DeformOutput:
  """:func:`deform` that also returns the per-Gaussian rotations and non-rigid offsets."""
  if betas.shape != (body_model.num_betas,):
    raise ValueError(f"deform: betas must be [{body_model.num_betas}] (the model's count), "
                     f"found {betas.shape}; vmap over frames")
  if body_pose.shape != (23, 3):
    raise ValueError(f"deform: body_pose must be [23, 3] axis-angle, found {body_pose.shape}")
  if global_orient.shape != (3,) or transl.shape != (3,):
    raise ValueError(f"deform: global_orient and transl must be [3], found "
                     f"{global_orient.shape} and {transl.shape}")
  rotmats = body_lib.full_pose_rotmats(body_pose, global_orient)  # [24, 3, 3]

  shape_offsets = jnp.einsum("b,vdb->vd", betas, body_model.shapedirs)  # [V, 3]
  rest_joints = body_lib.regress_joints(body_model, body_model.v_template + shape_offsets)
  vertex_offsets = shape_offsets + body_lib.pose_blend(body_model, rotmats)
  offsets = interpolate_vertex_values(vertex_offsets, body_model.faces, avatar.face_ids,
                                      avatar.barycentrics)
  means = avatar.means + offsets
  quats = avatar.quats
  log_scales = avatar.log_scales

  nonrigid_offsets = None
  if avatar.nonrigid is not None:
    nonrigid_offsets = nonrigid_lib.offsets(avatar, rotmats)
    means = means + nonrigid_offsets.means
    quats = rotations.quat_multiply(rotations.axis_angle_to_quat(nonrigid_offsets.rotations),
                                    quats)
    log_scales = log_scales + nonrigid_offsets.log_scales

  _, transforms = body_lib.kinematic_chain(rotmats, rest_joints, body_model.parents)
  transforms = transforms.at[:, :3, 3].add(transl)
  blended = body_lib.skinning_transforms(skinning_weights(avatar), transforms)  # [N, 4, 4]
  world_means = body_lib.apply_transforms(blended, means)
  rot = polar_rotation(blended[:, :3, :3])
  world_quats = rotations.quat_multiply(rotations.matrix_to_quat(rot), quats)

  opacities = jax.nn.sigmoid(avatar.opacity_logits) * avatar.active
  gaussians = Gaussians(means=world_means, quats=world_quats, scales=jnp.exp(log_scales),
                        opacities=opacities, sh=rotate_sh(avatar.sh, rot, avatar.sh_degree))
  return DeformOutput(gaussians=gaussians, rotations=rot, canonical_means=means,
                      nonrigid_offsets=nonrigid_offsets)


def deform(avatar: Avatar, body_model: body_lib.BodyModel, betas: jax.Array,
           body_pose: jax.Array, global_orient: jax.Array, transl: jax.Array) -> Gaussians:
  """Carries the canonical avatar into one frame by blend shapes and linear blend skinning.

  See the module docstring for the maths (the covariance uses the polar rotation of the blended
  LBS matrix). Pure and jittable; ``jax.vmap`` over the pose arguments renders frames.

  Args:
    avatar: the canonical avatar.
    body_model: the body model it was initialised on.
    betas: [B] shape coefficients.
    body_pose: [23, 3] axis-angle.
    global_orient: [3] axis-angle (about the pelvis joint).
    transl: [3] metres.

  Returns:
    World-space :class:`hsjax.gaussians.Gaussians` with ``sh`` [N, (d+1)², 3] rotated with each
    Gaussian, ``scales = exp(log_scales)``, ``opacities = sigmoid(logit)``, 0 where inactive.
  """
  return deform_with_aux(avatar, body_model, betas, body_pose, global_orient, transl).gaussians


def skinning_drift(avatar: Avatar) -> jax.Array:
  """Scalar regulariser: mean squared difference of learned and initial weights (active only).

  Zero when skinning is fixed.
  """
  if not avatar.learn_skinning:
    return jnp.zeros((), avatar.means.dtype)
  diff = jnp.sum((skinning_weights(avatar) - avatar.skin_init) ** 2, -1)
  mask = avatar.active.astype(diff.dtype)
  return jnp.sum(diff * mask) / jnp.maximum(jnp.sum(mask), 1.0)
