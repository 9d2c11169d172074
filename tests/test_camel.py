"""CAMEL terms and the 3D depth term on constructed cases with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import camel
from hsjax import rotations

DELTA = 0.02


def _plane_mesh(n=5, spacing=0.1):
  """A flat grid of vertices in z = 0 with normals +z."""
  xs = np.arange(n) * spacing
  verts = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
  verts = np.concatenate([verts, np.zeros((len(verts), 1))], -1)
  normals = np.tile([0.0, 0.0, 1.0], (len(verts), 1))
  return jnp.asarray(verts, jnp.float32), jnp.asarray(normals, jnp.float32)


def test_nearest_points_matches_brute_force_numpy():
  rng = np.random.default_rng(0)
  q, p = rng.normal(size=(37, 3)), rng.normal(size=(101, 3))
  valid = rng.uniform(size=101) > 0.3
  idx, sq = camel.nearest_points(jnp.asarray(q), jnp.asarray(p), points_valid=jnp.asarray(valid),
                                 chunk=8)
  d = ((q[:, None] - p[None]) ** 2).sum(-1)
  d[:, ~valid] = np.inf
  np.testing.assert_array_equal(np.asarray(idx), d.argmin(1))
  np.testing.assert_allclose(np.asarray(sq), d.min(1), rtol=1e-4, atol=1e-5)


def test_point_to_mesh_free_inside_band_linear_outside():
  verts, normals = _plane_mesh()
  nearest = jnp.array([12])
  inside = jnp.array([[0.2, 0.2, 0.015]])
  assert float(camel.point_to_mesh(inside, verts, normals, nearest, delta=DELTA)) == 0.0
  for height in (0.05, -0.08):  # both sides of the skin
    outside = jnp.array([[0.2, 0.2, height]])
    cost = float(camel.point_to_mesh(outside, verts, normals, nearest, delta=DELTA))
    assert cost == pytest.approx(abs(height) - DELTA, rel=1e-5)


def test_mesh_surface_zero_when_parallel_one_when_perpendicular():
  verts, normals = _plane_mesh()
  nearest = jnp.array([0])
  scales = jnp.array([[0.05, 0.05, 0.001]])  # thinnest axis: local z
  identity = jnp.array([[1.0, 0.0, 0.0, 0.0]])
  assert float(camel.mesh_surface(identity, scales, normals, nearest)) == pytest.approx(0.0,
                                                                                        abs=1e-6)
  tilted = rotations.axis_angle_to_quat(jnp.array([[np.pi / 2, 0.0, 0.0]]))  # local z -> -y
  assert float(camel.mesh_surface(tilted, scales, normals, nearest)) == pytest.approx(1.0,
                                                                                      abs=1e-6)
  flipped = rotations.axis_angle_to_quat(jnp.array([[np.pi, 0.0, 0.0]]))  # axis -z: no cost
  assert float(camel.mesh_surface(flipped, scales, normals, nearest)) == pytest.approx(0.0,
                                                                                       abs=1e-6)


def test_mesh_coverage_zero_when_covered_positive_when_bare():
  verts, _ = _plane_mesh(n=3)
  covered = verts + jnp.array([0.0, 0.0, 0.01])
  assert float(camel.mesh_coverage(covered, verts, delta=DELTA)) == 0.0
  # Remove the Gaussians over one corner vertex: that vertex is now 0.1 m from the nearest.
  bare = covered[1:]
  expected = (np.hypot(0.1, 0.01) - DELTA) / 9
  assert float(camel.mesh_coverage(bare, verts, delta=DELTA)) == pytest.approx(expected, rel=1e-4)
  valid = jnp.ones(9, bool).at[0].set(False)  # an inactive Gaussian covers nothing either
  assert float(camel.mesh_coverage(covered, verts, delta=DELTA, means_valid=valid)) == (
      pytest.approx(expected, rel=1e-4))


def test_flatness_zero_at_and_beyond_target_positive_below():
  tau = 10.0
  at_target = jnp.array([[0.1, 0.1, 0.01]])
  flatter = jnp.array([[0.1, 0.1, 0.001]])
  ball = jnp.array([[0.1, 0.1, 0.1]])
  assert float(camel.flatness(at_target, target_ratio=tau)) == pytest.approx(0.0, abs=1e-6)
  assert float(camel.flatness(flatter, target_ratio=tau)) == 0.0
  assert float(camel.flatness(ball, target_ratio=tau)) == pytest.approx(np.log(tau)**2, rel=1e-5)


def test_values_and_gradients_finite_for_degenerate_inputs():
  """A Gaussian exactly on a vertex, zero scales, and an empty depth mask stay finite."""
  verts, normals = _plane_mesh(n=3)
  means = verts[:2]  # exactly on vertices
  scales = jnp.zeros((2, 3))
  quats = jnp.array([[1.0, 0, 0, 0], [0.0, 0, 0, 0]])  # second one is degenerate too
  nearest = jnp.array([0, 1])

  def total(means, scales):
    return (camel.point_to_mesh(means, verts, normals, nearest, delta=DELTA) +
            camel.mesh_surface(quats.at[1].set(jnp.array([1.0, 0, 0, 0])), scales, normals,
                               nearest) +
            camel.mesh_coverage(means, verts, delta=DELTA) +
            camel.flatness(scales, target_ratio=10.0))

  value, grads = jax.value_and_grad(total, argnums=(0, 1))(means, scales)
  assert np.isfinite(float(value))
  assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)

  depth, mask = jnp.zeros((4, 5)), jnp.zeros((4, 5))
  K = jnp.array([[10.0, 0, 2.5], [0, 10.0, 2.0], [0, 0, 1]])
  f = lambda m: camel.depth_chamfer(m, depth, mask, K, jnp.eye(4))
  value, grad = jax.value_and_grad(f)(means)
  assert float(value) == 0.0
  assert np.all(np.isfinite(np.asarray(grad)))


def _numpy_depth_points(depth, mask, K, world_to_cam) -> np.ndarray:
  """[P, 3] world points of the pixels with mask > 0.5 and depth > 0, row by row."""
  pts = []
  for v in range(depth.shape[0]):
    for u in range(depth.shape[1]):
      if mask[v, u] > 0.5 and depth[v, u] > 0:
        ray = np.linalg.solve(K, [u + 0.5, v + 0.5, 1.0]) * depth[v, u]
        pts.append(np.linalg.solve(world_to_cam[:3, :3], ray - world_to_cam[:3, 3]))
  return np.array(pts)


def _numpy_huber(x, beta):
  return np.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta)


def test_depth_chamfer_matches_numpy_brute_force_and_ignores_invalid_pixels():
  rng = np.random.default_rng(3)
  h, w = 6, 7
  K = np.array([[8.0, 0, 3.5], [0, 8.0, 3.0], [0, 0, 1]])
  world_to_cam = np.eye(4)
  world_to_cam[:3, 3] = [0.1, -0.2, 0.5]
  depth = rng.uniform(1.0, 3.0, size=(h, w))
  depth[0, :3] = 0.0  # no depth here
  mask = (rng.uniform(size=(h, w)) > 0.3).astype(np.float64)
  means = rng.normal(size=(20, 3)) + [0, 0, 1.5]
  beta = 0.3

  # Independent NumPy unprojection and Chamfer.
  pts = _numpy_depth_points(depth, mask, K, world_to_cam)
  dist = np.sqrt(((means[:, None] - pts[None]) ** 2).sum(-1).min(1))
  hub = _numpy_huber(dist, beta)
  assert 0 < np.mean(dist < beta) < 1  # both branches of the Huber are exercised
  ours = camel.depth_chamfer(jnp.asarray(means, jnp.float32), jnp.asarray(depth, jnp.float32),
                             jnp.asarray(mask, jnp.float32), jnp.asarray(K, jnp.float32),
                             jnp.asarray(world_to_cam, jnp.float32), beta=beta, chunk=8)
  assert float(ours) == pytest.approx(hub.mean(), rel=1e-4)
  # Moving a point outside the mask or without depth changes nothing.
  depth2 = depth.copy()
  depth2[mask <= 0.5] = 100.0
  ours2 = camel.depth_chamfer(jnp.asarray(means, jnp.float32), jnp.asarray(depth2, jnp.float32),
                              jnp.asarray(mask, jnp.float32), jnp.asarray(K, jnp.float32),
                              jnp.asarray(world_to_cam, jnp.float32), beta=beta, chunk=8)
  assert float(ours2) == pytest.approx(float(ours), rel=1e-6)


def test_sample_valid_takes_only_valid_entries_spread_over_the_array():
  valid = np.zeros(1000, bool)
  valid[100:900] = True
  index, ok = camel.sample_valid(jnp.asarray(valid), 200)
  index, ok = np.asarray(index), np.asarray(ok)
  assert ok.all() and valid[index].all() and len(set(index.tolist())) == 200
  # A spread subset, not the first 200 valid entries.
  assert index.min() < 200 and index.max() > 800
  few = np.zeros(1000, bool)
  few[[3, 500, 997]] = True
  index, ok = camel.sample_valid(jnp.asarray(few), 200)
  assert np.asarray(ok).sum() == 3
  assert sorted(np.asarray(index)[np.asarray(ok)].tolist()) == [3, 500, 997]


def test_depth_chamfer_two_sided_adds_each_point_to_its_nearest_weighted_centre():
  rng = np.random.default_rng(5)
  h, w = 6, 7
  K = np.array([[8.0, 0, 3.5], [0, 8.0, 3.0], [0, 0, 1]])
  depth = rng.uniform(1.0, 3.0, size=(h, w))
  mask = (rng.uniform(size=(h, w)) > 0.3).astype(np.float64)
  means = rng.normal(size=(20, 3)) * 0.5 + [0, 0, 2.0]
  weights = (rng.uniform(size=20) > 0.4).astype(np.float64)
  beta = 0.3
  pts = _numpy_depth_points(depth, mask, K, np.eye(4))
  dist = np.sqrt(((means[:, None] - pts[None]) ** 2).sum(-1))  # [N, P]
  to_points = np.sum(weights * _numpy_huber(dist.min(1), beta)) / weights.sum()
  to_centres = np.mean(_numpy_huber(dist[weights > 0].min(0), beta))

  def ours(m, wts):
    return camel.depth_chamfer(m, jnp.asarray(depth, jnp.float32),
                               jnp.asarray(mask, jnp.float32), jnp.asarray(K, jnp.float32),
                               jnp.eye(4), beta=beta, means_weights=wts, chunk=8,
                               two_sided=True)

  m = jnp.asarray(means, jnp.float32)
  assert float(ours(m, jnp.asarray(weights, jnp.float32))) == pytest.approx(
      to_points + to_centres, rel=1e-4)
  # No weighted centre: nothing to pull either way, and the gradient stays finite.
  value, grad = jax.value_and_grad(ours)(m, jnp.zeros(20, jnp.float32))
  assert float(value) == 0.0 and np.all(np.isfinite(np.asarray(grad)))


def test_depth_chamfer_stride_and_max_points_match_the_subsampled_brute_force():
  rng = np.random.default_rng(4)
  h, w = 9, 8
  K = jnp.array([[8.0, 0, 4.0], [0, 8.0, 4.5], [0, 0, 1]])
  depth = jnp.asarray(rng.uniform(1.0, 3.0, size=(h, w)), jnp.float32)
  mask = jnp.asarray(rng.uniform(size=(h, w)) > 0.2, jnp.float32)
  means = jnp.asarray(rng.normal(size=(30, 3)) * 0.5 + [0, 0, 2.0], jnp.float32)
  full = camel.depth_chamfer(means, depth, mask, K, jnp.eye(4), beta=0.1)
  # max_points above the number of valid pixels keeps every one of them.
  np.testing.assert_allclose(camel.depth_chamfer(means, depth, mask, K, jnp.eye(4), beta=0.1,
                                                 max_points=h * w), full, rtol=1e-6)
  # stride 2 equals the full-resolution term on a map that is invalid off the stride grid.
  grid = np.zeros((h, w), bool)
  grid[::2, ::2] = True
  sparse = camel.depth_chamfer(means, jnp.where(grid, depth, 0.0), mask, K, jnp.eye(4), beta=0.1)
  strided = camel.depth_chamfer(means, depth, mask, K, jnp.eye(4), beta=0.1, stride=2)
  np.testing.assert_allclose(strided, sparse, rtol=1e-6)
  assert abs(float(strided) - float(full)) > 1e-4  # fewer points: a different answer


def test_depth_chamfer_is_finite_for_a_centre_exactly_on_a_depth_point():
  K = jnp.array([[4.0, 0, 1.0], [0, 4.0, 1.0], [0, 0, 1]])
  depth, mask = jnp.full((2, 2), 2.0), jnp.ones((2, 2))
  on_point = camel.unproject_depth(depth, K, jnp.eye(4))[:1]  # exactly the first pixel's point
  value, grad = jax.value_and_grad(lambda m: camel.depth_chamfer(m, depth, mask, K, jnp.eye(4)))(
      on_point)
  assert float(value) < 1e-9 and np.all(np.isfinite(np.asarray(grad)))
