"""Sort-free selections of the loss terms against the sorts and argmins they replace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import camel
from hsjax.losses import depth as depth_lib


def _cases(rng):
  """Arrays with ties, signed zeros, infinities and tiny values, and a random rank each."""
  for kind in range(6):
    x = rng.normal(size=rng.integers(1, 300)).astype(np.float32)
    if kind == 1:
      x = np.round(x * 2) / 2  # many ties
    elif kind == 2:
      x[rng.uniform(size=x.shape) < 0.4] = -0.0
      x[rng.uniform(size=x.shape) < 0.2] = 0.0
    elif kind == 3:
      x[rng.uniform(size=x.shape) < 0.3] = np.inf
      x[rng.uniform(size=x.shape) < 0.1] = -np.inf
    elif kind == 4:
      x = (x * 1e-38).astype(np.float32)  # subnormals
    elif kind == 5:
      x = np.full_like(x, 3.0)  # all equal
    yield x, int(rng.integers(0, len(x)))


@pytest.mark.parametrize("seed", range(5))
def test_kth_smallest_index_is_the_stable_argsorts(seed):
  """The bisection pick equals ``argsort(x, stable=True)[k]``, ties in index order."""
  fn = jax.jit(depth_lib._kth_smallest_index)  # pylint: disable=protected-access
  for x, k in _cases(np.random.default_rng(seed)):
    expect = int(jnp.argsort(jnp.asarray(x), stable=True)[k])
    assert int(fn(jnp.asarray(x), jnp.int32(k))) == expect, (x, k)


def test_depth_offset_gradient_reaches_the_median_pixel():
  """The median's gradient is one at the selected pixel and zero elsewhere, as a sort's."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(9, 11)), jnp.float32)
  w = jnp.asarray(rng.uniform(size=(9, 11)) > 0.4, jnp.float32)
  grad = jax.grad(lambda x: depth_lib._masked_median(x, w))(x)  # pylint: disable=protected-access
  values = np.sort(np.asarray(x)[np.asarray(w) > 0])
  median = values[(len(values) - 1) // 2]
  assert float(depth_lib._masked_median(x, w)) == median  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(grad), np.asarray(x) == median)


def test_masked_median_without_pixels_is_zero():
  x = jnp.ones((4, 5))
  assert float(depth_lib._masked_median(x, jnp.zeros((4, 5)))) == 0.0  # pylint: disable=protected-access


@pytest.mark.parametrize("chunk", [4, 64, 2048])
def test_nearest_points_picks_argmins_first_index(chunk):
  """Ties (duplicated points, queries on a point) go to the first index as jnp.argmin does;
  the squared distance is exact; a short query set is not padded to a whole chunk."""
  rng = np.random.default_rng(1)
  p = rng.normal(size=(50, 3)).astype(np.float32)
  p[7] = p[3]  # an exact duplicate
  q = rng.normal(size=(23, 3)).astype(np.float32)
  q[0] = p[3]
  valid = rng.uniform(size=50) > 0.2
  valid[3] = valid[7] = True
  idx, sq = camel.nearest_points(jnp.asarray(q), jnp.asarray(p),
                                 points_valid=jnp.asarray(valid), chunk=chunk)
  d = jnp.where(jnp.asarray(valid), jnp.sum(jnp.asarray(p) ** 2, -1), jnp.inf)[None] - 2.0 * (
      jnp.asarray(q) @ jnp.asarray(p).T)
  np.testing.assert_array_equal(idx, jnp.argmin(d, axis=1))
  assert int(idx[0]) == 3
  np.testing.assert_allclose(sq, np.sum((q - p[np.asarray(idx)]) ** 2, -1), rtol=1e-6)
  none = camel.nearest_points(jnp.asarray(q), jnp.asarray(p),
                              points_valid=jnp.zeros(50, bool), chunk=chunk)[1]
  assert np.all(np.isinf(none))
