"""CAMEL: cloth-aware mesh-embedded regularisers, and the 3D depth (Chamfer) term.

HumanSplatHMR holds the Gaussians *loosely* to the posed body mesh: inside a band of
half-width ``delta`` around the skin a Gaussian moves freely (clothing), beyond it it is pulled
back; its normal axis aligns with the skin normal; every vertex is covered; and Gaussians are
flat discs. Without this coupling the avatar drifts from the body and absorbs image error
that the pose should explain. The four terms below follow the paper's CAMEL figure; their
exact formulas and weights are not published (see ``notes/paper.md``), so the forms here are
hsjax's choices, documented per function:

1. :func:`point_to_mesh` — ``mean(max(|⟨μ − v, n⟩| − δ, 0))`` with ``v, n`` the nearest posed
   vertex and its normal (signed point-to-plane distance, a symmetric band);
2. :func:`mesh_surface` — ``mean(1 − |⟨a, n⟩|)`` with ``a`` the Gaussian's shortest axis;
3. :func:`mesh_coverage` — ``mean_v(max(min_g ‖μ_g − v‖ − δ, 0))``: zero when every vertex has
   a Gaussian within ``δ``;
4. :func:`flatness` — ``mean(max(log τ − log(s_t / s_n), 0)²)`` with ``s_n`` the smallest
   scale and ``s_t`` the geometric mean of the other two: zero once a Gaussian is at least
   ``τ`` times wider than thick.

Nearest-neighbour lookups have static shapes: :func:`nearest_points` is an exact brute force
over chunks of queries (memory ``chunk × M``); callers that cannot afford it every step pass
cached indices instead. ``hsjax.losses`` evaluates the terms on the canonical avatar against
the template mesh (or, optionally, on the posed avatar against the posed mesh) with each
Gaussian's nearest template vertex searched every ``FitConfig.camel_refresh_every`` steps
outside the jitted step: the search costs about 70 ms for 2,000 Gaussians and 13,380
vertices on 2 CPU cores, most of a step, while between refreshes a centre moves by far less
than the vertex spacing. The coverage term, which needs the opposite search (vertex to
Gaussian) every step, is off by default.

The 3D depth term (:func:`depth_chamfer`) is a one-sided Huber Chamfer distance from the
Gaussian centres to the depth map unprojected with the intrinsics, restricted to pixels inside
the person mask with valid (> 0) depth; ``hsjax.losses`` applies it to the Gaussians the
camera sees (:func:`hsjax.losses.visible_gaussians`), since a depth map shows one side of the
body only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hsjax import rotations

# Gaussians thinner than this (metres) are treated as this thin in log-ratios, so values and
# gradients stay finite for degenerate (zero) scales.
_MIN_SCALE = 1e-8


def nearest_points(queries: jax.Array, points: jax.Array, *, points_valid: jax.Array | None = None,
                   chunk: int = 2048) -> tuple[jax.Array, jax.Array]:
  """Exact nearest neighbour of each query among ``points`` (brute force, chunked).

  Args:
    queries: [Q, 3].
    points: [M, 3].
    points_valid: optional [M] bool; invalid points are never chosen.
    chunk: queries per chunk (peak memory ``chunk × M`` floats).

  Returns:
    ``(index [Q] int32, squared_distance [Q])``; the distance is +inf if no point is valid.
  """
  num_q, num_p = queries.shape[0], points.shape[0]
  chunk = max(min(chunk, num_q), 1)  # a single short chunk is not padded to `chunk` rows
  pad = (-num_q) % chunk
  q = jnp.pad(queries, ((0, pad), (0, 0))).reshape(-1, chunk, 3)
  p_sq = jnp.sum(points * points, -1)
  if points_valid is not None:
    p_sq = jnp.where(points_valid, p_sq, jnp.inf)
  column = jnp.arange(num_p, dtype=jnp.int32)

  def one_chunk(qc):
    # |q - p|² = |q|² - 2 q·p + |p|²; the argmin ignores |q|², added back for the distance.
    d = p_sq[None, :] - 2.0 * qc @ points.T
    # The first index of the minimum (jnp.argmin's, NaN first) as two plain reductions:
    # XLA's CPU argmin (a variadic reduction) is several times slower.
    d_min = jnp.min(d, axis=1)
    hit = (d == d_min[:, None]) | jnp.isnan(d)
    idx = jnp.min(jnp.where(hit, column, num_p - 1), axis=1)
    nearest = points[idx]
    return idx, jnp.sum((qc - nearest) ** 2, -1) + jnp.where(jnp.isinf(d_min), jnp.inf, 0.0)

  idx, sq = jax.lax.map(one_chunk, q)
  return idx.reshape(-1)[:num_q], sq.reshape(-1)[:num_q]


def _masked_mean(values: jax.Array, weights: jax.Array | None) -> jax.Array:
  if weights is None:
    return jnp.mean(values)
  weights = weights.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def signed_normal_distance(means: jax.Array, vertices: jax.Array, normals: jax.Array,
                           nearest: jax.Array) -> jax.Array:
  """[N] signed distance of each mean from its nearest vertex's tangent plane, metres."""
  return jnp.sum((means - vertices[nearest]) * normals[nearest], axis=-1)


def point_to_mesh(means: jax.Array, vertices: jax.Array, normals: jax.Array, nearest: jax.Array,
                  *, delta: float, weights: jax.Array | None = None) -> jax.Array:
  """Band penalty ``mean(max(|d| − δ, 0))`` on the signed point-to-plane distance ``d``.

  Args:
    means: [N, 3] posed Gaussian centres.
    vertices: [V, 3] posed mesh vertices; normals: [V, 3] unit vertex normals.
    nearest: [N] index of each Gaussian's nearest vertex.
    delta: band half-width (metres): clothing may sit this far off the skin at no cost.
    weights: optional [N] (e.g. the active mask).
  """
  d = signed_normal_distance(means, vertices, normals, nearest)
  return _masked_mean(jax.nn.relu(jnp.abs(d) - delta), weights)


def shortest_axis(quats: jax.Array, scales: jax.Array) -> jax.Array:
  """[N, 4] (wxyz), [N, 3] -> [N, 3] unit direction of each Gaussian's thinnest axis."""
  rot = rotations.quat_to_matrix(quats)
  axis = jnp.argmin(scales, axis=-1)
  return jnp.take_along_axis(rot, axis[:, None, None], axis=2)[..., 0]


def mesh_surface(quats: jax.Array, scales: jax.Array, normals: jax.Array, nearest: jax.Array,
                 *, weights: jax.Array | None = None) -> jax.Array:
  """Alignment ``mean(1 − |⟨a, n⟩|)``: 0 when the thinnest axis is along the normal, 1 across.

  The absolute value makes the sign of the axis irrelevant (a Gaussian has no front side).
  """
  a = shortest_axis(quats, scales)
  cos = jnp.sum(a * normals[nearest], axis=-1)
  return _masked_mean(1.0 - jnp.abs(cos), weights)


def mesh_coverage(means: jax.Array, vertices: jax.Array, *, delta: float,
                  means_valid: jax.Array | None = None, vertex_weights: jax.Array | None = None,
                  nearest_gaussian: jax.Array | None = None, chunk: int = 2048) -> jax.Array:
  """Coverage ``mean_v(max(min_g ‖μ_g − v‖ − δ, 0))``: every vertex wants a Gaussian within δ.

  Args:
    means: [N, 3] posed Gaussian centres.
    vertices: [V, 3] posed mesh vertices.
    delta: coverage radius, metres.
    means_valid: optional [N] bool (inactive Gaussians cover nothing).
    vertex_weights: optional [V] (e.g. visibility in the current view).
    nearest_gaussian: optional cached [V] index of each vertex's nearest Gaussian; when given,
      no search is done (the distance is still exact for that Gaussian and differentiable).
    chunk: vertices per chunk of the brute-force search.
  """
  if nearest_gaussian is None:
    nearest_gaussian, _ = nearest_points(jax.lax.stop_gradient(vertices),
                                         jax.lax.stop_gradient(means),
                                         points_valid=means_valid, chunk=chunk)
  diff = vertices - means[nearest_gaussian]
  dist = jnp.sqrt(jnp.sum(diff * diff, -1) + 1e-12)
  return _masked_mean(jax.nn.relu(dist - delta), vertex_weights)


def flatness(scales: jax.Array, *, target_ratio: float, weights: jax.Array | None = None
             ) -> jax.Array:
  """``mean(max(log τ − log(s_t / s_n), 0)²)``: zero for discs at least τ:1 wide:thin.

  Args:
    scales: [N, 3] linear standard deviations.
    target_ratio: τ > 1.
  """
  log_s = jnp.log(jnp.maximum(scales, _MIN_SCALE))
  log_n = jnp.min(log_s, axis=-1)
  log_t = (jnp.sum(log_s, axis=-1) - log_n) / 2.0  # geometric mean of the two larger scales
  deficit = jax.nn.relu(jnp.log(target_ratio) - (log_t - log_n))
  return _masked_mean(deficit**2, weights)


def huber(x: jax.Array, beta: float) -> jax.Array:
  """Smooth-L1 / Huber with transition at ``beta`` (PyTorch's ``smooth_l1_loss`` form)."""
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def unproject_depth(depth: jax.Array, K: jax.Array, world_to_cam: jax.Array, *,
                    stride: int = 1) -> jax.Array:
  """Depth map [H, W] (camera z, metres) -> world points [h*w, 3] through pixel centres.

  With ``stride > 1`` only every ``stride``-th row and column is unprojected
  (``h = ceil(H / stride)``, same for ``w``), each at its own pixel centre.
  """
  h, w = depth.shape
  rows, cols = jnp.arange(0, h, stride), jnp.arange(0, w, stride)
  v, u = jnp.meshgrid(rows + 0.5, cols + 0.5, indexing="ij")
  pix = jnp.stack([u, v, jnp.ones_like(u)], -1).reshape(-1, 3)
  rays = pix @ jnp.linalg.inv(K).T  # z = 1
  p_cam = rays * depth[::stride, ::stride].reshape(-1, 1)
  rot, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
  return (p_cam - t) @ rot  # R^T (p - t)


def sample_valid(valid: jax.Array, max_points: int, key: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
  """Up to ``max_points`` of the True entries of ``valid`` [M], with a static shape.

  The entries are taken in a pseudo-random order, so that a subset is spread over the whole
  array (an image: not its top rows): a fixed permutation (drawn at trace time), started at
  an offset drawn with ``key`` — a different subset every call at the cost of a roll, not of
  a new permutation — or at its beginning without a key (the same entries every call).

  Returns:
    ``(index [P] int32, ok [P] bool)`` with ``P = min(max_points, M)``; ``ok`` is False on
    the slots left over when fewer entries are valid.
  """
  m = valid.shape[0]
  p = min(max_points, m)
  order = jnp.asarray(np.random.default_rng(0).permutation(m), jnp.int32)
  if key is not None:
    order = jnp.roll(order, jax.random.randint(key, (), 0, m))
  shuffled = valid[order]
  picked = jnp.nonzero(shuffled, size=p, fill_value=0)[0]
  ok = jnp.arange(p) < jnp.sum(shuffled)
  return order[picked], ok


def depth_chamfer(means: jax.Array, depth: jax.Array, mask: jax.Array, K: jax.Array,
                  world_to_cam: jax.Array, *, beta: float = 0.02,
                  means_weights: jax.Array | None = None, stride: int = 1,
                  max_points: int | None = None, max_means: int | None = None,
                  key: jax.Array | None = None, chunk: int = 2048,
                  two_sided: bool = False) -> jax.Array:
  """One-sided Huber Chamfer from Gaussian centres to the unprojected depth map.

  ``Σ_g w_g ρ_β(min_p ‖μ_g − p‖) / Σ_g w_g`` over the points ``p`` of pixels with
  ``mask > 0.5`` and ``depth > 0``: quadratic for centres within ``β`` of the observed
  surface, linear beyond (a Gaussian the depth map cannot explain — an occluded one, or an
  outlier of the depth network — pulls with a bounded force). With no valid pixel, or no
  weighted Gaussian, the term is 0 (it carries no information).

  Args:
    means: [N, 3] world Gaussian centres.
    depth: [H, W] camera-z depth, 0 where invalid; mask: [H, W] person mask.
    K: [3, 3] the intrinsics to unproject ``depth`` with; world_to_cam: [4, 4].
    beta: Huber transition, metres.
    means_weights: optional [N] (active / visible Gaussians).
    stride: unproject every ``stride``-th pixel row and column only.
    max_points: keep at most this many valid pixels (:func:`sample_valid`); None: all.
    max_means: keep at most this many of the Gaussians with a positive weight (needs
      ``means_weights``); None: all. Weighting selects a few hundred Gaussians of thousands
      (those the camera sees), and the search costs as many rows as are kept.
    key: PRNG key of the pixel and Gaussian subsets (None: fixed subsets).
    chunk: Gaussians per chunk of the brute-force search.
    two_sided: add the other direction, the mean Huber distance from each kept point to its
      nearest kept weighted centre. A depth map samples a surface seen at a grazing angle
      only at pixel centres inside the silhouette, so the centres there find their nearest
      points in front of them; the points there, in turn, pull the nearest centres out to
      the surface they sample.

  Warning: the cost is O(N × P) with N the Gaussians and P the pixels kept (H·W / stride²,
  or ``max_points``).
  """
  points = unproject_depth(depth, K, world_to_cam, stride=stride)
  valid = ((mask[::stride, ::stride] > 0.5) & (depth[::stride, ::stride] > 0)).reshape(-1)
  key_points, key_means = (None, None) if key is None else jax.random.split(key)
  if max_points is not None:
    index, valid = sample_valid(valid, max_points, key_points)
    points = points[index]
  if max_means is not None:
    if means_weights is None:
      raise ValueError("depth_chamfer: max_means needs means_weights")
    index, ok = sample_valid(means_weights > 0, max_means, key_means)
    means, means_weights = means[index], means_weights[index] * ok
  _, sq = nearest_points(means, points, points_valid=valid, chunk=chunk)
  any_valid = jnp.any(valid)
  # sqrt(0) has an infinite derivative: a centre exactly on a point gets a tiny floor.
  dist = jnp.sqrt(jnp.where(any_valid, sq, 0.0) + 1e-12)
  to_points = jnp.where(any_valid, _masked_mean(huber(dist, beta), means_weights), 0.0)
  if not two_sided:
    return to_points
  centres = jnp.ones(means.shape[:1], bool) if means_weights is None else means_weights > 0
  any_centre = jnp.any(centres)
  _, sq_back = nearest_points(points, means, points_valid=centres, chunk=chunk)
  dist_back = jnp.sqrt(jnp.where(any_centre, sq_back, 0.0) + 1e-12)
  to_centres = _masked_mean(huber(dist_back, beta), valid)
  return to_points + jnp.where(any_valid & any_centre, to_centres, 0.0)


def gaussian_drift(means: jax.Array, vertices: jax.Array, *, weights: jax.Array | None = None,
                   chunk: int = 2048) -> jax.Array:
  """Mean distance (metres) of the Gaussian centres from their nearest body vertex."""
  _, sq = nearest_points(means, vertices, chunk=chunk)
  return _masked_mean(jnp.sqrt(sq), weights)
