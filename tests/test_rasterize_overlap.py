"""Exact tile overlap: the ellipse binning and the sub-tile compositor against brute force."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.rasterize import api
from kernels.rasterize import binning
from kernels.rasterize import common
from kernels.rasterize import projection
from kernels.rasterize import reference
from kernels.rasterize import scenes
from kernels.rasterize import xla

FWD_TOL = 1e-5  # as tests/test_rasterize.py: rgb, alpha, depth vs the brute-force reference
GRAD_RTOL = 1e-4  # float32 gradients, relative to max |grad|


@jax.jit
def _project(s):
  return projection.project(s.means, s.quats, s.scales, s.opacities, s.K, s.world_to_cam,
                            width=s.width, height=s.height)


@functools.partial(jax.jit, static_argnames=("capacity", "ellipse", "max_intersections"))
def _bin(s, capacity=512, ellipse=True, max_intersections=None):
  p = _project(s)
  extra = dict(conics=p.conics, opacities=p.opacities) if ellipse else {}
  return binning.bin_gaussians(p.means2d, p.radii_xy, p.depths, width=s.width,
                               height=s.height, capacity=capacity,
                               max_intersections=max_intersections, **extra)


@functools.partial(jax.jit, static_argnames=("backend", "tile_overlap", "tile_capacity"))
def _rasterize(s, backend, tile_overlap="ellipse", tile_capacity=512):
  return api.rasterize(s.means, s.quats, s.scales, s.opacities, s.colors, s.K, s.world_to_cam,
                       width=s.width, height=s.height, backend=backend,
                       background=jnp.array([0.2, 0.5, 0.9]), tile_capacity=tile_capacity,
                       tile_overlap=tile_overlap)


def _drawn_pixels(p, width, height):
  """[N, H, W] bool: pixel centres where a Gaussian passes the 1/255 test (dense, numpy)."""
  xs, ys = common.pixel_centres(width, height)
  dx = p.means2d[:, 0, None, None] - xs[None]
  dy = p.means2d[:, 1, None, None] - ys[None]
  power = common.gaussian_power(dx, dy, *(p.conics[:, i, None, None] for i in range(3)))
  alpha, _ = common.gaussian_alpha(power, p.opacities[:, None, None])
  visible = np.asarray(p.radii > 0)[:, None, None]
  return np.asarray((power <= 0) & (alpha >= common.ALPHA_MIN)) & visible


def test_ellipse_rect_test_never_misses_a_drawn_pixel():
  """Random Gaussians (thin, large, rotated, faint) against random pixel rectangles: every
  rectangle holding a pixel centre that passes the 3DGS alpha test is accepted, and most
  rectangles that hold none are rejected (the test is tight, not merely conservative)."""
  rng = np.random.default_rng(0)
  n = 20000
  scale = np.exp(rng.uniform(np.log(0.3), np.log(30.0), (n, 2)))
  angle = rng.uniform(0, np.pi, n)
  c, s = np.cos(angle), np.sin(angle)
  rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
  cov = rot @ (scale[:, :, None] ** 2 * np.eye(2)) @ np.swapaxes(rot, -1, -2)
  inv = np.linalg.inv(cov)
  conic = np.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1).astype(np.float32)
  opac = rng.uniform(0.002, 1.0, n).astype(np.float32)
  mean = rng.uniform(-40, 60, (n, 2)).astype(np.float32)
  x0, y0 = rng.integers(0, 16, n) + 0.5, rng.integers(0, 16, n) + 0.5
  x1, y1 = x0 + rng.integers(0, 8, n), y0 + rng.integers(0, 8, n)
  touch = np.asarray(binning.ellipse_touches_rect(
      mean[:, 0], mean[:, 1], conic[:, 0], conic[:, 1], conic[:, 2],
      binning.ellipse_threshold(jnp.asarray(opac)), x0, x1, y0, y1))
  # Dense check over the (at most 8 x 8) pixel centres of each rectangle.
  ox, oy = np.meshgrid(np.arange(8), np.arange(8), indexing="xy")
  px = x0[:, None] + ox.reshape(-1)[None]
  py = y0[:, None] + oy.reshape(-1)[None]
  inside = (px <= x1[:, None]) & (py <= y1[:, None])
  power = common.gaussian_power(mean[:, 0, None] - px.astype(np.float32),
                                mean[:, 1, None] - py.astype(np.float32),
                                *(conic[:, i, None] for i in range(3)))
  alpha, _ = common.gaussian_alpha(power, opac[:, None])
  drawn = np.any(np.asarray((power <= 0) & (alpha >= common.ALPHA_MIN)) & inside, axis=1)
  assert drawn.sum() > 1000 and (~drawn).sum() > 1000  # both cases are well represented
  assert not np.any(drawn & ~touch)
  assert np.mean(touch[~drawn]) < 0.05


@pytest.mark.parametrize("seed", [0, 1])
def test_ellipse_lists_are_the_drawing_subset_of_the_box_lists(seed):
  """Each tile's ellipse list is its box list without the Gaussians that draw no pixel of
  the tile, in the same (depth) order; counts and pair totals follow."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=seed)
  p = _project(s)
  box, ell = _bin(s, ellipse=False), _bin(s)
  assert int(box.overflow) == 0 and int(ell.overflow) == 0
  drawn = _drawn_pixels(p, s.width, s.height)
  tiles_x, tiles_y = binning.tile_grid(s.width, s.height)
  for t in range(tiles_x * tiles_y):
    tx, ty = t % tiles_x, t // tiles_x
    in_tile = drawn[:, ty * 16:(ty + 1) * 16, tx * 16:(tx + 1) * 16].any(axis=(1, 2))
    box_list = np.asarray(box.ids[t])[np.asarray(box.ids[t]) >= 0]
    ell_list = np.asarray(ell.ids[t])[np.asarray(ell.ids[t]) >= 0]
    assert set(ell_list) <= set(box_list)
    np.testing.assert_array_equal(ell_list, [g for g in box_list if g in set(ell_list)])
    assert set(np.nonzero(in_tile)[0]) <= set(ell_list)  # nothing that draws is dropped
    assert int(ell.counts[t]) == len(ell_list)
  assert int(ell.num_intersections) < int(box.num_intersections)


@pytest.mark.parametrize("seed", [2, 8])
def test_ellipse_binning_renders_like_brute_force(seed):
  """rgb, alpha and depth with the ellipse lists equal the brute-force reference."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=seed)
  out = _rasterize(s, "xla")
  ref = _rasterize(s, "reference")
  assert int(out.overflow) == 0
  assert float(jnp.mean(ref.alpha > 0.5)) > 0.2
  for name in ("rgb", "alpha", "depth"):
    np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=FWD_TOL,
                               err_msg=name)


def test_ellipse_binning_overflows_less_and_keeps_what_draws():
  """At a capacity that overflows, the ellipse lists drop fewer pairs than the box lists,
  and what they render is the reference compositing of exactly those lists."""
  s = scenes.make_scene("avatar", n=3000, width=64, height=64, seed=0)
  box, ell = _bin(s, capacity=32, ellipse=False), _bin(s, capacity=32)
  assert 0 < int(ell.overflow) < int(box.overflow)
  assert int(ell.num_intersections) < int(box.num_intersections)
  assert np.all(np.asarray(ell.counts) <= np.asarray(box.counts))
  p = _project(s)
  feats = jnp.concatenate([s.colors, p.depths[:, None]], axis=-1)
  args = (ell.ids, p.means2d, p.conics, p.opacities, feats)
  acc, alpha = xla.composite_xla(*args, width=s.width, height=s.height)
  acc_r, alpha_r = reference.composite_reference(*args, width=s.width, height=s.height)
  np.testing.assert_allclose(acc, acc_r, atol=FWD_TOL)
  np.testing.assert_allclose(alpha, alpha_r, atol=FWD_TOL)


def test_small_pair_buffer_with_ellipse_counts_every_dropped_pair():
  """A pair buffer smaller than the box pairs: overflow is what is not rendered, counted
  with the box pairs beyond the buffer (an upper bound), and never negative."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=7)
  full, cut = _bin(s, capacity=256), _bin(s, capacity=256, max_intersections=100)
  box = _bin(s, capacity=256, ellipse=False)
  stored = int(jnp.sum(cut.ids >= 0))
  assert int(full.overflow) == 0 and stored <= 100
  assert int(cut.overflow) == int(cut.num_intersections) - stored
  assert int(full.num_intersections) <= int(cut.num_intersections) <= int(
      box.num_intersections)


@pytest.mark.parametrize("capacity,ellipse", [(512, False), (512, True), (24, False)])
def test_subtile_compositing_matches_whole_tiles_and_reference(capacity, ellipse):
  """Compositing 8x8 sub-tiles with their filtered lists gives the whole-tile image and the
  same gradients (image size not a multiple of the tile size; with and without overflow)."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=4)
  p = _project(s)
  tiles = _bin(s, capacity=capacity, ellipse=ellipse)
  feats = jnp.concatenate([s.colors, p.depths[:, None]], axis=-1)
  args = (tiles.ids, p.means2d, p.conics, p.opacities, feats)

  def run(subtile):
    fn = jax.jit(functools.partial(xla.composite_xla, width=s.width, height=s.height,
                                   subtile=subtile))
    out, vjp = jax.vjp(lambda *a: fn(tiles.ids, *a), *args[1:])
    cts = (jax.random.normal(jax.random.key(1), out[0].shape),
           jax.random.normal(jax.random.key(2), out[1].shape))
    return out, vjp(cts)

  (acc, alpha), grads = run(8)
  (acc_w, alpha_w), grads_w = run(None)
  acc_r, alpha_r = reference.composite_reference(*args, width=s.width, height=s.height)
  assert float(jnp.max(alpha)) > 0.5
  for a, b in ((acc, acc_w), (alpha, alpha_w), (acc, acc_r), (alpha, alpha_r)):
    np.testing.assert_allclose(a, b, atol=FWD_TOL)
  for a, b in zip(grads, grads_w):
    np.testing.assert_allclose(a, b, atol=GRAD_RTOL * float(jnp.max(jnp.abs(b))))


def test_split_tile_lists_keep_order_and_every_drawing_entry():
  """Each sub-tile list is its parent's list, in order, without entries that draw nothing
  in the sub-tile; sub-tiles off the image edge of a partial tile do not exist."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=5)
  p = _project(s)
  tiles = _bin(s, ellipse=False)
  sub = np.asarray(xla.split_tile_lists(tiles.ids, p.means2d, p.conics, p.opacities,
                                        width=45, height=37, tile_size=16, subtile=8))
  sub_x, sub_y = 6, 5  # ceil(45 / 8), ceil(37 / 8)
  assert sub.shape == (sub_x * sub_y, tiles.ids.shape[1])
  drawn = _drawn_pixels(p, 45, 37)
  for u in range(sub_x * sub_y):
    ux, uy = u % sub_x, u // sub_x
    parent = np.asarray(tiles.ids[(uy // 2) * 3 + ux // 2])
    parent = parent[parent >= 0]
    got = sub[u][sub[u] >= 0]
    assert np.all(sub[u][len(got):] == -1)
    np.testing.assert_array_equal(got, [g for g in parent if g in set(got)])
    in_sub = drawn[:, uy * 8:(uy + 1) * 8, ux * 8:(ux + 1) * 8].any(axis=(1, 2))
    assert set(np.nonzero(in_sub)[0]) <= set(got)
  assert (sub >= 0).sum() < 4 * (np.asarray(tiles.ids) >= 0).sum()


def test_bad_tile_overlap_raises():
  s = scenes.make_scene("random", n=10, width=32, height=32)
  with pytest.raises(ValueError, match="tile_overlap"):
    _rasterize(s, "xla", tile_overlap="circle")
