"""Loss terms of the joint avatar + pose fit, as pure functions, and their composition.

Every term has the signature ``term(render, frame, params, aux) -> scalar`` and a loss is a
mapping ``name -> (weight, term)``; :func:`total_loss` evaluates it. Adding, removing or
re-weighting a term never touches the fitting loop (``hsjax.fit``): pass another mapping.

The four arguments (F = frames in the minibatch, T = frames in the sequence, N Gaussians):

``render``: ``kernels.rasterize.RenderOutput`` of the minibatch, every field with a leading
  frame axis: ``rgb [F, H, W, 3]`` (over the fit's background colour), ``alpha [F, H, W]``,
  ``depth [F, H, W]`` (expected camera depth, metres, 0 where nothing was hit),
  ``means2d [F, N, 2]``, ``radii [F, N]``, ``visible [F, N]``, ``overflow [F]``.

``frame``: dict of the minibatch's observations, leading axis F:
  ``"image" [F, H, W, 3]`` in [0, 1], already composited over the fit's background outside
  the person mask (so that the avatar is not asked to explain the scene);
  ``"mask" [F, H, W]`` person mask in [0, 1];
  ``"depth" [F, H, W]`` observed depth, 0 where invalid (all zeros when the sequence has
  none); ``"depth_K" [F, 3, 3]`` the intrinsics to unproject that depth with (the camera's
  unless the depth came with its own estimate); ``"depth_weight" []`` 1.0 when the
  sequence has depth, else 0.0 (depth terms vanish); ``"depth_is_metric" []`` 1.0 when
  that depth is metric (metres; the metric terms apply), 0.0 when it is relative (only the
  scale-and-shift-invariant term applies);
  ``"index" [F]`` int32 frame numbers in the sequence.

``params``: the full trainable pytree ``hsjax.fitting.FitParams`` with fields ``avatar``
  (``hsjax.avatar.Avatar``) and ``poses`` (``hsjax.body.SMPLParams`` of the whole sequence:
  ``betas [B]``, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``, ``transl [T, 3]``,
  axis-angle, world frame).

``aux``: dict of everything else the step computed or knows:
  ``"step"`` [] int32 optimisation step; ``"frames"`` [F] int32 (= ``frame["index"]``);
  ``"body"`` ``BodyOutput`` of the minibatch frames (``joints [F, 24, 3]``,
  ``vertices [F, V, 3]``); ``"gaussians"`` the deformed ``Gaussians`` with leading axis F;
  ``"sequence_joints"`` [T, 24, 3] joints of *every* frame under the current poses (the
  temporal terms use the whole sequence, not the minibatch: all T poses are cheap to pose
  and a random minibatch has no neighbouring frames); ``"frame_valid"`` [T] bool (False on
  padding frames of multi-subject fits); ``"init"`` ``SMPLParams`` the HMR initialisation;
  ``"body_model"`` the ``BodyModel``; ``"camera"`` the minibatch's ``Camera``
  (``K [F, 3, 3]``); ``"camel_nearest"`` [N] int32 each Gaussian's nearest template vertex
  (refreshed every ``FitConfig.camel_refresh_every`` steps; absent when not searched);
  ``"canonical_normals"``/anything an avatar regulariser needs comes from
  ``params.avatar`` and ``aux["body_model"]``.

Terms return *unweighted* scalars; :func:`total_loss` applies the weights, which are floats
or schedules ``step -> float`` (an ``optax.Schedule`` works).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import jax
import jax.numpy as jnp
import numpy as np


Term = Callable[[Any, Mapping[str, jax.Array], Any, Mapping[str, Any]], jax.Array]
Weight = Union[float, Callable[[jax.Array], jax.Array]]
Losses = Mapping[str, tuple[Weight, Term]]

# Keeps ratios finite where a mask or a depth map is empty.
_EPS = 1e-6


# ------------------------------------------------------------------------------------------
# Image terms


def rgb_l1(render, frame, params, aux) -> jax.Array:
  """Mean absolute colour error over all pixels and channels (3DGS's L1)."""
  del params, aux
  return jnp.mean(jnp.abs(render.rgb - frame["image"]))


def _gaussian_band(n: int, size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """[n - size + 1, n] banded matrix: row i holds the normalised Gaussian window at i."""
  coords = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-0.5 * (coords / sigma) ** 2)
  g /= g.sum()
  band = np.zeros((n - size + 1, n), np.float32)
  for i in range(n - size + 1):
    band[i, i:i + size] = g
  return band


def _gaussian_filter_valid(x: jax.Array, size: int = 11, sigma: float = 1.5) -> jax.Array:
  """Separable Gaussian filter, 'valid' region: [F, H, W, C] -> [F, H-size+1, W-size+1, C].

  Written as two products with banded matrices: on CPU, XLA runs these (and their
  transposes in the backward pass) about 10x faster than depthwise convolutions, whose
  grouped-convolution path is slow, or than chains of shifted slices.
  """
  band_h = jnp.asarray(_gaussian_band(x.shape[1], size, sigma), x.dtype)
  band_w = jnp.asarray(_gaussian_band(x.shape[2], size, sigma), x.dtype)
  y = jnp.einsum("ih,fhwc->fiwc", band_h, x)
  return jnp.einsum("jw,fiwc->fijc", band_w, y)


def ssim_maps(x: jax.Array, y: jax.Array, data_range: float = 1.0) -> jax.Array:
  """Per-pixel SSIM of image batches: [F, H, W, C] x2 -> [F, H-10, W-10] (channel mean).

  Wang et al. (2004) with an 11x11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03 and
  population covariances: the same numbers as :func:`hsjax.metrics.ssim_map` and
  scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` (tested), written with banded matrix products for the
  training loop.
  """
  c1 = (0.01 * data_range) ** 2
  c2 = (0.03 * data_range) ** 2
  stacked = jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1)
  filtered = _gaussian_filter_valid(stacked)
  mu_x, mu_y, xx, yy, xy = jnp.split(filtered, 5, axis=-1)
  var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
  num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
  den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
  return jnp.mean(num / den, axis=-1)


def dssim(render, frame, params, aux) -> jax.Array:
  """Structural dissimilarity ``1 - SSIM`` (11x11 Gaussian window, σ = 1.5), frame mean.

  SSIM is :func:`ssim_maps` (equal to scikit-image's ``structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False``), averaged over the valid region.
  3DGS weights this 0.2 against L1, GART 0.1.
  """
  del params, aux
  return 1.0 - jnp.mean(ssim_maps(render.rgb, frame["image"]))


def mask_l1(render, frame, params, aux) -> jax.Array:
  """Mean absolute difference of rendered alpha and the person mask, over all pixels.

  Silhouette agreement is the strongest cue for the limbs' pose: it moves the pose even where
  the avatar's colours are still wrong.
  """
  del params, aux
  return jnp.mean(jnp.abs(render.alpha - frame["mask"]))


def _depth_weights(render, frame) -> jax.Array:
  """[F, H, W] pixels where both depths are defined and the person is (mask > 0.5)."""
  valid = (frame["depth"] > 0) & (frame["mask"] > 0.5) & (render.alpha > 0.5)
  return valid.astype(render.depth.dtype)


def depth_l1(render, frame, params, aux) -> jax.Array:
  """Metric depth: masked L1 between rendered and observed depth, metres.

  Averaged over the pixels inside the person mask where the observation is valid and the
  render covers the pixel (alpha > 0.5; elsewhere the expected depth of a few faint
  Gaussians is meaningless and the mask term takes over). This is the term that pins the
  root translation along the optical axis, which HMR estimates worst.
  Zero when the sequence has no depth or only relative depth.
  """
  del params, aux
  w = _depth_weights(render, frame)
  err = jnp.sum(w * jnp.abs(render.depth - frame["depth"])) / (jnp.sum(w) + _EPS)
  return frame["depth_weight"] * frame["depth_is_metric"] * err


def align_scale_shift(pred: jax.Array, target: jax.Array, weight: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Least-squares ``(scale, shift)`` with ``scale * pred + shift ≈ target`` on ``weight``.

  Args:
    pred, target, weight: [H, W] (one frame).

  Returns:
    ``(scale [], shift [])``; ``(1, 0)`` when fewer than two weighted pixels (or no depth
    variation) make the system singular.
  """
  # Normal equations of min_{s,b} sum w (s p + b - t)^2 (MiDaS, Ranftl et al. 2020, eq. 4).
  sw = jnp.sum(weight)
  sp, st = jnp.sum(weight * pred), jnp.sum(weight * target)
  spp, spt = jnp.sum(weight * pred * pred), jnp.sum(weight * pred * target)
  det = sw * spp - sp * sp
  ok = det > 1e-8 * jnp.maximum(sw * sw, 1.0)
  safe_det = jnp.where(ok, det, 1.0)
  scale = jnp.where(ok, (sw * spt - sp * st) / safe_det, 1.0)
  shift = jnp.where(ok, (spp * st - sp * spt) / safe_det, 0.0)
  return scale, shift


def depth_ssi(render, frame, params, aux) -> jax.Array:
  """Scale-and-shift-invariant depth for monocular (relative) depth maps.

  Per frame, the rendered depth is aligned to the observation with the least-squares scale
  and shift inside the mask (:func:`align_scale_shift`), then the masked L1 is taken, in the
  observation's units. The alignment is differentiated through, so the term is exactly
  invariant to an affine change of the rendered depth: it constrains the *shape* of the
  body's depth (limb ordering, bending towards the camera), not its distance.
  """
  del params, aux
  w = _depth_weights(render, frame)
  scale, shift = jax.vmap(align_scale_shift)(render.depth, frame["depth"], w)
  aligned = scale[:, None, None] * render.depth + shift[:, None, None]
  err = jnp.sum(w * jnp.abs(aligned - frame["depth"])) / (jnp.sum(w) + _EPS)
  return frame["depth_weight"] * err


# ------------------------------------------------------------------------------------------
# Pose terms

# Per-joint weights of the pose prior (SMPL order, root first). The spine and the
# collars are poorly observed in a silhouette, so they are held closer to HMR; wrists and
# hands (tiny in the image, and HMR's own weakest joints) are left freer. Users replace
# this by building their own term with :func:`make_pose_prior`.
PRIOR_JOINT_WEIGHTS = (
    1.0,  # pelvis (global_orient)
    1.0, 1.0, 2.0,  # left_hip, right_hip, spine1
    1.0, 1.0, 2.0,  # left_knee, right_knee, spine2
    1.0, 1.0, 2.0,  # left_ankle, right_ankle, spine3
    1.0, 1.0, 1.0,  # left_foot, right_foot, neck
    2.0, 2.0, 1.0,  # left_collar, right_collar, head
    1.0, 1.0, 1.0, 1.0,  # shoulders, elbows
    0.5, 0.5, 0.5, 0.5)  # wrists, hands


def _valid_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of x [T, ...] over frames where valid [T] (other axes averaged too)."""
  per_frame = jnp.mean(x.reshape(x.shape[0], -1), axis=-1)
  v = valid.astype(per_frame.dtype)
  return jnp.sum(per_frame * v) / jnp.maximum(jnp.sum(v), 1.0)


def make_pose_prior(joint_weights=PRIOR_JOINT_WEIGHTS) -> Term:
  """A pose prior ``Σ_j w_j |θ_j - θ_j^HMR|²`` over every frame of the sequence.

  Args:
    joint_weights: 24 non-negative weights, root (``global_orient``) first, then the 23
      ``body_pose`` joints.

  Returns:
    A loss term: the weighted squared axis-angle distance to the HMR initialisation
    (radians²), averaged over joints and valid frames. The axis-angle difference equals the
    geodesic angle to first order, which is all that matters for the small corrections
    refinement makes.
  """
  weights = jnp.asarray(joint_weights, jnp.float32)
  if weights.shape != (24,):
    raise ValueError(f"make_pose_prior: joint_weights must have 24 entries (root first), "
                     f"found {weights.shape}")

  def pose_prior(render, frame, params, aux) -> jax.Array:
    del render, frame
    poses, init = params.poses, aux["init"]
    full = jnp.concatenate([poses.global_orient[:, None], poses.body_pose], axis=1)
    full0 = jnp.concatenate([init.global_orient[:, None], init.body_pose], axis=1)
    sq = jnp.sum((full - full0) ** 2, axis=-1) * weights  # [T, 24]
    return _valid_mean(sq, aux["frame_valid"])

  return pose_prior


pose_prior = make_pose_prior()


def betas_prior(render, frame, params, aux) -> jax.Array:
  """Squared distance of the shared shape to its initialisation (betas are ~N(0, I))."""
  del render, frame
  return jnp.mean((params.poses.betas - aux["init"].betas) ** 2)


def _finite_difference(x: jax.Array, order: int) -> jax.Array:
  """``order``-th forward difference along axis 0: [T, ...] -> [T - order, ...]."""
  for _ in range(order):
    x = x[1:] - x[:-1]
  return x


def _window_valid(valid: jax.Array, order: int) -> jax.Array:
  """[T - order] True where all order+1 frames of a difference stencil are valid."""
  out = valid
  for _ in range(order):
    out = out[1:] & out[:-1]
  return out


def make_smoothness(order: int = 2, on: str = "joints") -> Term:
  """Temporal smoothness over the whole sequence (not the minibatch).

  Args:
    order: 1 penalises velocity, 2 acceleration (the default: it leaves constant-velocity
      motion free, so genuine movement is not damped).
    on: ``"joints"`` — the 24 posed joints in world coordinates (``aux["sequence_joints"]``,
      root translation included), or ``"transl"`` — the root translation alone.

  Returns:
    A term: mean squared ``order``-th finite difference, m² / frame^(2·order), over valid
    stencils (padding frames of multi-subject fits excluded).
  """
  if order not in (1, 2):
    raise ValueError(f"make_smoothness: order must be 1 (velocity) or 2 (acceleration), "
                     f"found {order}")
  if on not in ("joints", "transl"):
    raise ValueError(f"make_smoothness: on must be 'joints' or 'transl', found {on!r}")

  def smoothness(render, frame, params, aux) -> jax.Array:
    del render, frame
    x = aux["sequence_joints"] if on == "joints" else params.poses.transl
    diff = _finite_difference(x, order)
    sq = jnp.sum(diff * diff, axis=-1)
    return _valid_mean(sq, _window_valid(aux["frame_valid"], order))

  smoothness.__name__ = f"smooth_{on}_order{order}"
  return smoothness


smooth_joints = make_smoothness(2, "joints")
smooth_transl = make_smoothness(2, "transl")


# ------------------------------------------------------------------------------------------
# Composition


def resolve_weight(weight: Weight, step: jax.Array) -> jax.Array:
  """A constant weight or a schedule ``step -> float`` evaluated at ``step``."""
  if callable(weight):
    return jnp.asarray(weight(step), jnp.float32)
  return jnp.asarray(weight, jnp.float32)


def total_loss(losses: Losses, render, frame, params, aux
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Weighted sum of the terms of ``losses``.

  Args:
    losses: mapping ``name -> (weight, term)``; a constant weight of exactly 0 skips the
      term (it is not even traced); a schedule is evaluated at ``aux["step"]``.
    render, frame, params, aux: see the module docstring.

  Returns:
    ``(total [], values)`` where ``values[name]`` is the *unweighted* term (what the
    progress bar shows and what a NaN is traced to). The pair is the ``has_aux`` output
    ``jax.value_and_grad`` expects.
  """
  total = jnp.zeros((), jnp.float32)
  values = {}
  for name, (weight, term) in losses.items():
    if not callable(weight) and float(weight) == 0.0:
      continue
    value = jnp.asarray(term(render, frame, params, aux), jnp.float32)
    if value.shape != ():
      raise ValueError(f"loss term {name!r} must return a scalar, found shape {value.shape}")
    values[name] = value
    total = total + resolve_weight(weight, aux["step"]) * value
  return total, values


def with_weights(losses: Losses, weights: Mapping[str, Weight] | Any) -> dict:
  """A copy of ``losses`` with some weights replaced.

  Args:
    losses: the base mapping.
    weights: mapping (or sequence of pairs) ``name -> weight``; every name must exist.

  Raises:
    ValueError: naming an unknown term and listing the valid ones.
  """
  out = dict(losses)
  for name, weight in dict(weights).items():
    if name not in out:
      raise ValueError(f"unknown loss term {name!r}; valid names: {sorted(out)}")
    out[name] = (weight, out[name][1])
  return out


# ------------------------------------------------------------------------------------------
# Avatar regularisers (on params.avatar, the full hsjax.avatar.Avatar)


def _active_mean(values: jax.Array, active: jax.Array) -> jax.Array:
  a = active.astype(values.dtype)
  return jnp.sum(values * a) / jnp.maximum(jnp.sum(a), 1.0)


def make_scale_regularizer(max_scale: float = 0.02) -> Term:
  """Penalises Gaussians whose largest standard deviation exceeds ``max_scale`` metres.

  ``mean_active(max(s_max / max_scale − 1, 0)²)``: large Gaussians blur the silhouette and,
  skinned by one set of weights, smear across joints.
  """

  def scale_reg(render, frame, params, aux) -> jax.Array:
    del render, frame, aux
    avatar = params.avatar
    s_max = jnp.exp(jnp.max(avatar.log_scales, axis=-1))
    return _active_mean(jax.nn.relu(s_max / max_scale - 1.0) ** 2, avatar.active)

  return scale_reg


scale_reg = make_scale_regularizer()


def opacity_reg(render, frame, params, aux) -> jax.Array:
  """``mean_active(o (1 − o))``: pushes opacities to 0 or 1.

  Half-transparent Gaussians at the border can fake a soft silhouette that no pose explains;
  binary opacities make the mask term a statement about geometry.
  """
  del render, frame, aux
  o = jax.nn.sigmoid(params.avatar.opacity_logits)
  return _active_mean(o * (1.0 - o), params.avatar.active)


def skinning_drift(render, frame, params, aux) -> jax.Array:
  """Mean squared drift of learned skinning weights from SMPL's (0 when skinning is fixed)."""
  del render, frame, aux
  from hsjax import avatar as avatar_lib  # pylint: disable=g-import-not-at-top
  return avatar_lib.skinning_drift(params.avatar)


def nonrigid_reg(render, frame, params, aux) -> jax.Array:
  """Squared non-rigid offsets of the minibatch's frames (0 without a non-rigid model)."""
  del render, frame
  avatar = params.avatar
  offsets = aux["deform"].nonrigid_offsets
  if avatar.nonrigid is None or offsets is None:
    return jnp.zeros((), jnp.float32)
  from hsjax import nonrigid as nonrigid_lib  # pylint: disable=g-import-not-at-top
  per_frame = jax.vmap(nonrigid_lib.regularizer, in_axes=(0, None, None))(
      offsets, avatar.active, avatar.nonrigid_config)
  return jnp.mean(per_frame)


# ------------------------------------------------------------------------------------------
# CAMEL (hsjax.camel) and the 3D depth term


def camel_nearest_vertices(params, aux) -> jax.Array:
  """[N] int32 each Gaussian's reference vertex for the CAMEL terms.

  ``aux["camel_nearest"]`` when the fit provides it (the nearest template vertex of each
  canonical centre, searched every ``FitConfig.camel_refresh_every`` steps), else the anchor
  vertex the Gaussian is skinned with (``hsjax.avatar.anchor_vertex_ids``).
  """
  cached = aux.get("camel_nearest")
  if cached is not None:
    return cached
  from hsjax import avatar as avatar_lib  # pylint: disable=g-import-not-at-top
  return avatar_lib.anchor_vertex_ids(params.avatar, aux["body_model"])


def _camel_geometry(params, aux, space: str):
  """The Gaussians and the mesh the CAMEL terms compare, with a leading frame axis.

  ``space="canonical"``: the canonical avatar against the template mesh (one "frame"; the
  terms do not depend on the pose and cost no per-frame work). ``space="posed"``: the
  minibatch's deformed Gaussians against the posed body meshes of the body forward pass
  (gradients reach the pose through both).

  Returns:
    ``(means [F, N, 3], quats [F, N, 4], scales [F, N, 3], vertices [F, V, 3],
    normals [F, V, 3])``.
  """
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top
  model = aux["body_model"]
  if space == "canonical":
    avatar = params.avatar
    vertices = model.v_template[None]
    return (avatar.means[None], avatar.quats[None], jnp.exp(avatar.log_scales)[None], vertices,
            body_lib.vertex_normals(vertices, model.faces))
  if space == "posed":
    gaussians, vertices = aux["gaussians"], aux["body"].vertices
    return (gaussians.means, gaussians.quats, gaussians.scales, vertices,
            body_lib.vertex_normals(vertices, model.faces))
  raise ValueError(f"CAMEL space must be 'canonical' or 'posed', found {space!r}")


def make_camel_point_to_mesh(delta: float = 0.01, space: str = "canonical") -> Term:
  """CAMEL point-to-mesh band (``hsjax.camel.point_to_mesh``), frame mean.

  ``space`` as :func:`_camel_geometry`. In the canonical space the band is measured once per
  step against the template; under LBS the signed distance of a Gaussian skinned like its
  reference vertex is nearly pose-independent, so both spaces hold the avatar to the body.
  """

  def camel_point_to_mesh(render, frame, params, aux) -> jax.Array:
    del render, frame
    from hsjax import camel  # pylint: disable=g-import-not-at-top
    means, _, _, vertices, normals = _camel_geometry(params, aux, space)
    nearest = camel_nearest_vertices(params, aux)
    per_frame = jax.vmap(lambda m, v, n: camel.point_to_mesh(
        m, v, n, nearest, delta=delta, weights=params.avatar.active))(means, vertices, normals)
    return jnp.mean(per_frame)

  return camel_point_to_mesh


def make_camel_surface(space: str = "canonical") -> Term:
  """CAMEL mesh-surface alignment of each Gaussian's thinnest axis, frame mean."""

  def camel_surface(render, frame, params, aux) -> jax.Array:
    del render, frame
    from hsjax import camel  # pylint: disable=g-import-not-at-top
    _, quats, scales, _, normals = _camel_geometry(params, aux, space)
    nearest = camel_nearest_vertices(params, aux)
    per_frame = jax.vmap(lambda q, s, n: camel.mesh_surface(
        q, s, n, nearest, weights=params.avatar.active))(quats, scales, normals)
    return jnp.mean(per_frame)

  return camel_surface


camel_surface = make_camel_surface()


def make_camel_flatness(target_ratio: float = 3.0) -> Term:
  """CAMEL flatness: Gaussians at least ``target_ratio`` times wider than thick.

  Scales are pose-independent (LBS rotates Gaussians, it does not stretch them), so there is
  no posed variant.
  """

  def camel_flatness(render, frame, params, aux) -> jax.Array:
    del render, frame, aux
    from hsjax import camel  # pylint: disable=g-import-not-at-top
    avatar = params.avatar
    return camel.flatness(jnp.exp(avatar.log_scales), target_ratio=target_ratio,
                          weights=avatar.active)

  return camel_flatness


def make_camel_coverage(delta: float = 0.01) -> Term:
  """CAMEL coverage: every template vertex has an active Gaussian within ``delta`` metres.

  Canonical space. Warning: a brute-force V x N nearest search each step (about 70 ms at
  V = 13,380, N = 2,000 on the 2-core CPU; BENCHMARKS.md): off by default (weight 0).
  """

  def camel_coverage(render, frame, params, aux) -> jax.Array:
    del render, frame
    from hsjax import camel  # pylint: disable=g-import-not-at-top
    avatar = params.avatar
    return camel.mesh_coverage(avatar.means, aux["body_model"].v_template, delta=delta,
                               means_valid=avatar.active)

  return camel_coverage


def visible_gaussians(render, params, aux, *, margin: float = 0.03) -> jax.Array:
  """[F, N] float: 1 for the Gaussians each camera sees, 0 for the others.

  A Gaussian is seen when it projects inside the image (``render.visible``), its reference
  vertex's posed normal faces the camera, and its centre is no more than ``margin`` metres
  behind the rendered depth at its pixel (self-occlusion: the torso behind an arm). The
  test uses the render itself, not the observation, so it holds under a biased depth map;
  it is a selection, not differentiated.
  """
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top
  sg = jax.lax.stop_gradient
  model, camera = aux["body_model"], aux["camera"]
  means = sg(aux["gaussians"].means)  # [F, N, 3]
  normals = body_lib.vertex_normals(sg(aux["body"].vertices), model.faces)
  n = normals[:, camel_nearest_vertices(params, aux)]  # [F, N, 3]
  rot, t = camera.world_to_cam[:, :3, :3], camera.world_to_cam[:, :3, 3]
  centre = -jnp.einsum("fji,fj->fi", rot, t)  # camera centre R^T (-t), world
  facing = jnp.sum(n * (centre[:, None] - means), -1) > 0
  z = jnp.einsum("fij,fnj->fni", rot, means)[..., 2] + t[:, None, 2]
  h, w = render.depth.shape[1:]
  px = jnp.clip(jnp.floor(sg(render.means2d)).astype(jnp.int32), 0,
                jnp.array([w - 1, h - 1]))
  rendered = jax.vmap(lambda d, p: d[p[:, 1], p[:, 0]])(sg(render.depth), px)
  covered = jax.vmap(lambda a, p: a[p[:, 1], p[:, 0]])(sg(render.alpha), px) > 0.5
  unoccluded = jnp.where(covered, z <= rendered + margin, True)
  return (render.visible & facing & unoccluded).astype(jnp.float32)


def make_depth_chamfer(beta: float = 0.02, stride: int = 1, max_points: int = 512,
                       max_means: int = 1024, margin: float = 0.03) -> Term:
  """The method's 3D depth term: one-sided Huber Chamfer of visible centres to the depth.

  Per minibatch frame, ``hsjax.camel.depth_chamfer`` from the centres of the Gaussians the
  camera sees (:func:`visible_gaussians`) to the observed depth map inside the mask,
  unprojected with ``frame["depth_K"]`` (the intrinsics the depth comes with: a monocular
  network's own estimate can differ from the camera's). Only the visible side is used
  because a depth map shows nothing of the back: pulling every Gaussian to the observed
  surface would flatten the avatar onto its front. Zero without metric depth.

  Args:
    beta: Huber transition, metres.
    stride: every ``stride``-th depth row and column is unprojected.
    max_points: at most this many valid depth pixels per frame, a random subset drawn anew
      every step (``hsjax.camel.sample_valid``).
    max_means: at most this many of the visible Gaussians per frame, likewise (a third of
      the avatar faces the camera unoccluded). The search costs max_means × max_points per
      frame.
    margin: occlusion tolerance of :func:`visible_gaussians`, metres.
  """

  def depth_chamfer(render, frame, params, aux) -> jax.Array:
    from hsjax import camel  # pylint: disable=g-import-not-at-top
    seen = visible_gaussians(render, params, aux, margin=margin)
    step_key = jax.random.fold_in(jax.random.key(0), aux["step"])
    keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(aux["frames"])
    per_frame = jax.vmap(lambda m, d, msk, k, w2c, wt, key: camel.depth_chamfer(
        m, d, msk, k, w2c, beta=beta, means_weights=wt, stride=stride, max_points=max_points,
        max_means=max_means, key=key))(
            aux["gaussians"].means, frame["depth"], frame["mask"], frame["depth_K"],
            aux["camera"].world_to_cam, seen, keys)
    return frame["depth_weight"] * frame["depth_is_metric"] * jnp.mean(per_frame)

  return depth_chamfer


# ------------------------------------------------------------------------------------------
# The default loss

# name -> (weight, term). Photometric L1 + 0.2 D-SSIM as 3DGS; the other weights were tuned
# on the default synthetic sequence (BENCHMARKS.md, Fitting; the CAMEL and 3D depth settings
# with `experiments/ablate.py --grid=camel_sweep`, docs/results/camel_sweep_unidepth.md).
# A weight of 0 keeps the term listed (so `--losses=name:w` can switch it on) but does not
# evaluate it.
DEFAULT_LOSSES: dict[str, tuple[Weight, Term]] = {
    "rgb": (1.0, rgb_l1),
    "dssim": (0.2, dssim),
    "mask": (2.0, mask_l1),
    "depth": (0.5, depth_l1),
    "depth_ssi": (0.0, depth_ssi),
    "pose_prior": (0.001, pose_prior),
    "betas_prior": (0.01, betas_prior),
    "smooth_joints": (10.0, smooth_joints),
    "smooth_transl": (10.0, smooth_transl),
    "scale": (0.01, scale_reg),
    "opacity": (0.0, opacity_reg),
    "skinning_drift": (1.0, skinning_drift),
    "nonrigid": (1.0, nonrigid_reg),
    "depth_3d": (1.0, make_depth_chamfer()),
    "camel_point_to_mesh": (10.0, make_camel_point_to_mesh()),
    "camel_surface": (0.01, camel_surface),
    "camel_flatness": (0.01, make_camel_flatness()),
    "camel_coverage": (0.0, make_camel_coverage()),
}
