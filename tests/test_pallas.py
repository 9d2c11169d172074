"""The Pallas composite kernels in interpret mode against the brute-force reference.

Oracle: ``kernels.rasterize.reference.composite_reference`` (dense per-pixel walk of the same
tile lists, differentiated by plain autodiff). Scenes are tiny (interpret mode runs the grid
as a sequential loop) but cover partial edge tiles, empty tiles, overflowing tiles (lists cut
at the capacity), saturated pixels (the T < 1e-4 stop and the 0.99 clamp) and tiles that
saturate early (the forward pass leaves them before the end of their list).
"""

import functools
import math

import jax
# The Mosaic GPU interpreter (simulated shared memory, barriers and bulk copies) has no
# public name yet; it is what runs the GPU launcher on a CPU.
from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.rasterize import binning
from kernels.rasterize import pallas
from kernels.rasterize import projection
from kernels.rasterize import reference
from kernels.rasterize import scenes
from kernels.rasterize import xla

# Forward: the contract's tolerance (float32, same expressions in the same order).
FORWARD_ATOL = 1e-5
# Backward: relative to the largest reference gradient of each argument; the kernel recovers
# T by division back to front, the reference by autodiff of cumulative products.
GRAD_RTOL = 2e-5

_ARG_NAMES = ("means2d", "conics", "opacities", "features")


def _synthetic(seed, *, n, width, height, capacity, sigma=(0.7, 6.0), opacity=(0.05, 1.0),
               x_range=None):
  """Random screen-space Gaussians binned by the project's binning.

  A tenth of them have opacity above 0.99 and lie in front (pixels near their centres hit
  the 0.99 clamp), some lie partly off screen, and ``x_range`` (fraction of the width) can
  leave tiles empty.
  """
  rng = np.random.default_rng(seed)
  lo, hi = (-0.1, 1.1) if x_range is None else x_range
  means2d = np.stack([rng.uniform(lo, hi, n) * width,
                      rng.uniform(-0.1, 1.1, n) * height], -1)
  angle = rng.uniform(0, np.pi, n)
  sig = rng.uniform(*sigma, (n, 2))
  rot = np.stack([np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)], -1)
  rot = rot.reshape(n, 2, 2)
  cov = rot @ (sig[:, :, None] ** 2 * np.eye(2)) @ np.swapaxes(rot, 1, 2)
  inv = np.linalg.inv(cov)
  conics = np.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)
  opacities = rng.uniform(*opacity, n)
  opacities[: n // 10] = rng.uniform(0.991, 1.0, n // 10)
  colors = rng.uniform(0, 1, (n, 3))
  depths = rng.uniform(1.0, 5.0, n)
  depths[: n // 10] = rng.uniform(0.5, 1.0, n // 10)  # the clamped ones in front: it matters
  features = np.concatenate([colors, depths[:, None]], -1)  # depth channel as the front end
  radii = np.ceil(3.0 * sig.max(-1)).astype(np.int32)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  tiles = binning.bin_gaussians(f32(means2d), jnp.asarray(radii), f32(depths), width=width,
                                height=height, capacity=capacity)
  return dict(ids=tiles.ids, means2d=f32(means2d), conics=f32(conics),
              opacities=f32(opacities), features=f32(features), width=width, height=height,
              overflow=int(tiles.overflow))


def _projected_scene(name, seed, *, n, width, height, capacity):
  """A shared workload of ``scenes.py`` projected and binned as the front end does."""
  s = scenes.make_scene(name, n=n, width=width, height=height, seed=seed)
  p = projection.project(s.means, s.quats, s.scales, s.opacities, s.K, s.world_to_cam,
                         width=width, height=height)
  tiles = binning.bin_gaussians(p.means2d, p.radii_xy, p.depths, width=width, height=height,
                                capacity=capacity)
  features = jnp.concatenate([s.colors, p.depths[:, None]], -1)
  return dict(ids=tiles.ids, means2d=p.means2d, conics=p.conics, opacities=p.opacities,
              features=features, width=width, height=height, overflow=int(tiles.overflow))


# name -> builder; each is tiny enough for interpret mode.
_SCENES = {
    # 40x24: partial edge tiles in both directions; capacity 8 < counts: overflowing tiles;
    # Gaussians only in the left 30% of the width: the right tiles are empty.
    "edges_overflow_empty": functools.partial(
        _synthetic, 0, n=48, width=40, height=24, capacity=8, sigma=(0.7, 4.0),
        x_range=(0.0, 0.3)),
    # Large, nearly opaque Gaussians: every pixel saturates (T < 1e-4 stop, clamp) within
    # the first few of 64 list entries, so tiles leave their list early.
    "saturated": functools.partial(
        _synthetic, 1, n=64, width=48, height=32, capacity=64, sigma=(8.0, 30.0),
        opacity=(0.6, 1.0)),
    # Projected 3D scene with the awkward cases of `scenes.py` (near plane, thin, huge).
    "projected": functools.partial(_projected_scene, "random", 2, n=64, width=48, height=32,
                                   capacity=24),
}


@pytest.fixture(scope="module", params=sorted(_SCENES))
def scene(request):
  return _SCENES[request.param]()


def _args(s):
  return tuple(s[k] for k in _ARG_NAMES)


def _pallas_fn(s, **kw):
  return jax.jit(lambda ids, *a: pallas.composite_pallas(
      ids, *a, width=s["width"], height=s["height"], interpret=True, **kw))


def _reference_fn(s):
  return jax.jit(lambda ids, *a: reference.composite_reference(
      ids, *a, width=s["width"], height=s["height"]))


def _assert_grads_close(got, want):
  for name, g, w in zip(_ARG_NAMES, got, want):
    assert g.shape == w.shape and g.dtype == w.dtype, name
    scale = max(float(jnp.max(jnp.abs(w))), 1e-6)
    err = float(jnp.max(jnp.abs(g - w)))
    assert err <= GRAD_RTOL * scale, f"{name}: max |diff| {err} vs max |ref| {scale}"


def test_forward_matches_reference(scene):
  acc, alpha = _pallas_fn(scene)(scene["ids"], *_args(scene))
  ref_acc, ref_alpha = _reference_fn(scene)(scene["ids"], *_args(scene))
  assert acc.shape == (scene["height"], scene["width"], 4)
  assert alpha.shape == (scene["height"], scene["width"])
  np.testing.assert_allclose(acc, ref_acc, rtol=0, atol=FORWARD_ATOL)
  np.testing.assert_allclose(alpha, ref_alpha, rtol=0, atol=FORWARD_ATOL)
  assert float(jnp.max(alpha)) > 0.1  # the scene renders something


def test_scenes_cover_the_edge_cases():
  """The workloads really contain what the module docstring promises."""
  s = _SCENES["edges_overflow_empty"]()
  assert s["width"] % 16 and s["height"] % 16
  assert s["overflow"] > 0
  assert bool(jnp.any(jnp.all(s["ids"] < 0, axis=1)))  # an empty tile
  sat = _SCENES["saturated"]()
  _, alpha = _reference_fn(sat)(sat["ids"], *_args(sat))
  # Nearly opaque everywhere, while every tile's list is still long: pixels stop early.
  assert float(jnp.min(alpha)) > 0.99
  assert int(jnp.min(jnp.sum(sat["ids"] >= 0, axis=1))) > 40


def test_vjp_matches_reference_autodiff(scene):
  args = _args(scene)
  ids = scene["ids"]
  out, vjp = jax.vjp(lambda *a: _pallas_fn(scene)(ids, *a), *args)
  ref_out, ref_vjp = jax.vjp(lambda *a: _reference_fn(scene)(ids, *a), *args)
  keys = jax.random.split(jax.random.key(3), 2)
  cot = (jax.random.normal(keys[0], out[0].shape), jax.random.normal(keys[1], out[1].shape))
  _assert_grads_close(vjp(cot), ref_vjp(cot))
  np.testing.assert_allclose(out[0], ref_out[0], rtol=0, atol=FORWARD_ATOL)


def test_avatar_matches_xla_backend():
  """The avatar workload (surface splats, overflowing tiles) against the XLA backend, forward
  and VJP: the two hand-written backward passes (back-to-front division here, front-to-back
  recomputation there) must agree."""
  s = _projected_scene("avatar", 4, n=160, width=48, height=48, capacity=32)
  args, ids = _args(s), s["ids"]
  out, vjp = jax.vjp(lambda *a: _pallas_fn(s)(ids, *a), *args)
  xla_fn = jax.jit(lambda *a: xla.composite_xla(ids, *a, width=48, height=48))
  want, xla_vjp = jax.vjp(xla_fn, *args)
  for g, w in zip(out, want):
    np.testing.assert_allclose(g, w, rtol=0, atol=FORWARD_ATOL)
  assert float(jnp.mean(out[1] > 0.5)) > 0.3  # the body covers a good part of the frame
  assert s["overflow"] > 0  # and its densest tiles are cut at the capacity
  cot = (jax.random.normal(jax.random.key(4), out[0].shape),
         jax.random.normal(jax.random.key(5), out[1].shape))
  _assert_grads_close(vjp(cot), xla_vjp(cot))


def test_list_ends_at_first_padding_id():
  """Ids after the first -1 of a tile are not composited (the contract's stop rule)."""
  s = _SCENES["edges_overflow_empty"]()
  ids = s["ids"].at[:, 2].set(-1)  # cut every list after two entries
  got = _pallas_fn(s)(ids, *_args(s))
  cut = jnp.where(jnp.arange(ids.shape[1]) >= 2, -1, ids)
  want = _reference_fn(s)(cut, *_args(s))
  full = _reference_fn(s)(s["ids"], *_args(s))
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=0, atol=FORWARD_ATOL)
  assert float(jnp.max(jnp.abs(full[1] - want[1]))) > 1e-3  # the cut changes the image


def test_vmap_matches_per_item():
  """A batch folds into the kernel grid; it must equal separate calls, forward and VJP."""
  a = _SCENES["edges_overflow_empty"]()
  b = _synthetic(5, n=48, width=40, height=24, capacity=8)
  ids = jnp.stack([a["ids"], b["ids"]])
  means2d = jnp.stack([a["means2d"], b["means2d"]])
  rest = _args(a)[1:]  # conics, opacities, features shared (unbatched)
  f = lambda i, m: pallas.composite_pallas(i, m, *rest, width=40, height=24, interpret=True)
  cot = jax.random.normal(jax.random.key(1), (24, 40, 4))

  def value_and_grad(i, m):
    (acc, alpha), vjp = jax.vjp(lambda m: f(i, m), m)
    return (acc, alpha), vjp((cot, jnp.ones_like(alpha)))[0]

  batched, grads = jax.jit(jax.vmap(value_and_grad))(ids, means2d)
  single = jax.jit(value_and_grad)
  for k in range(2):
    (acc, alpha), grad = single(ids[k], means2d[k])
    np.testing.assert_allclose(batched[0][k], acc, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batched[1][k], alpha, rtol=0, atol=1e-6)
    np.testing.assert_allclose(grads[k], grad, rtol=0, atol=1e-5)
    assert float(jnp.max(jnp.abs(grad))) > 0


def test_gpu_and_tpu_launchers_agree():
  """The GPU launcher (``plgpu.kernel``: GMEM refs, bulk copies into shared memory, barriers)
  run by the Mosaic GPU interpreter, and the TPU launcher (scalar prefetch, SMEM/VMEM blocks)
  run by the generic interpreter, must agree exactly, forward and backward."""
  s = _SCENES["edges_overflow_empty"]()
  tiles_x, tiles_y = binning.tile_grid(s["width"], s["height"])
  cfg = pallas._Config(width=s["width"], height=s["height"], tile_size=16, tiles_x=tiles_x,
                       tiles_y=tiles_y, n_features=4, interpret=True)
  ids = pallas._pad_capacity(s["ids"])
  params = pallas._gather_tiles(pallas._pack(*_args(s)), ids)
  lengths = pallas._list_lengths(ids)
  forward = jax.jit(pallas._forward_call, static_argnums=0,
                    static_argnames=("target", "interpret"))
  backward = jax.jit(pallas._backward_call, static_argnums=0,
                     static_argnames=("target", "interpret"))
  interpret = {"gpu": InterpretGPUParams(), "tpu": True}
  outs = {t: forward(cfg, lengths, params, target=t, interpret=interpret[t])
          for t in ("gpu", "tpu")}
  for x, y in zip(outs["gpu"], outs["tpu"]):
    np.testing.assert_array_equal(x, y)
  _, t_final, last = outs["tpu"]
  counts = jnp.max(last, axis=(1, 2)).astype(jnp.int32)
  g_acc = jax.random.normal(jax.random.key(2), outs["tpu"][0].shape)
  g_alpha = jax.random.normal(jax.random.key(3), t_final.shape)
  grads = {t: backward(cfg, counts, params, t_final, last, g_acc, g_alpha, target=t,
                       interpret=interpret[t]) for t in ("gpu", "tpu")}
  written = jnp.arange(ids.shape[1])[None, None, :] < counts[:, None, None]
  np.testing.assert_array_equal(jnp.where(written, grads["gpu"], 0),
                                jnp.where(written, grads["tpu"], 0))


def test_tile_size_32_matches_reference():
  s = _SCENES["edges_overflow_empty"]()
  tiles = binning.bin_gaussians(s["means2d"], jnp.full((48,), 6, jnp.int32),
                                s["features"][:, 3], width=40, height=24, tile_size=32,
                                capacity=16)
  got = jax.jit(functools.partial(pallas.composite_pallas, width=40, height=24, tile_size=32,
                                  interpret=True))(tiles.ids, *_args(s))
  want = reference.composite_reference(tiles.ids, *_args(s), width=40, height=24,
                                       tile_size=32)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=0, atol=FORWARD_ATOL)


def test_float64_inputs_keep_their_dtype(x64):
  """The kernels compute in float32; outputs and gradients come back in the callers' dtype."""
  del x64
  s = _SCENES["edges_overflow_empty"]()
  args = tuple(a.astype(jnp.float64) for a in _args(s))
  f = jax.jit(lambda *a: pallas.composite_pallas(s["ids"], *a, width=40, height=24,
                                                 interpret=True))
  (acc, alpha), vjp = jax.vjp(f, *args)
  assert acc.dtype == alpha.dtype == jnp.float64
  grads = vjp((jnp.ones_like(acc), jnp.ones_like(alpha)))
  assert all(g.dtype == jnp.float64 for g in grads)
  ref_acc, _ = reference.composite_reference(s["ids"], *args, width=40, height=24)
  np.testing.assert_allclose(acc, ref_acc, rtol=0, atol=FORWARD_ATOL)


def test_gradients_finite_on_degenerate_input():
  """Zero opacity, Gaussians exactly on a pixel centre and far off screen: finite values
  and gradients, and nothing is drawn by the transparent ones."""
  means2d = jnp.array([[8.5, 8.5], [8.5, 8.5], [-1e4, 5.0], [20.0, 20.0]], jnp.float32)
  conics = jnp.array([[0.5, 0.0, 0.5], [1e-6, 0.0, 1e-6], [1.0, 0.0, 1.0], [0.1, 0.05, 0.1]],
                     jnp.float32)
  opacities = jnp.array([0.0, 1.0, 1.0, 0.5], jnp.float32)
  features = jnp.ones((4, 2), jnp.float32)
  ids = jnp.array([[0, 1, 2, 3], [3, -1, -1, -1], [3, -1, -1, -1], [3, -1, -1, -1]],
                  jnp.int32)
  f = jax.jit(lambda *a: pallas.composite_pallas(ids, *a, width=32, height=32,
                                                 interpret=True))
  (acc, alpha), vjp = jax.vjp(f, means2d, conics, opacities, features)
  grads = vjp((jnp.ones_like(acc), jnp.ones_like(alpha)))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in (acc, alpha, *grads))
  assert float(grads[3][0, 0]) == 0.0  # transparent: no feature gradient
  want = reference.composite_reference(ids, means2d, conics, opacities, features, width=32,
                                       height=32)
  np.testing.assert_allclose(alpha, want[1], rtol=0, atol=FORWARD_ATOL)


@pytest.mark.parametrize("change, message", [
    (dict(tile_size=8), "tile_size"),
    (dict(tile_size=24), "tile_size"),
    (dict(width=80), "ids"),
    (dict(opacities=jnp.zeros((3,))), "opacities"),
    (dict(conics=jnp.zeros((4, 2))), "conics"),
    (dict(ids=jnp.zeros((4, 4), jnp.float32)), "int32"),
])
def test_bad_input_raises(change, message):
  kw = dict(ids=jnp.zeros((4, 4), jnp.int32), means2d=jnp.zeros((4, 2)),
            conics=jnp.zeros((4, 3)), opacities=jnp.zeros((4,)), features=jnp.zeros((4, 3)),
            width=32, height=32, interpret=True)
  kw.update(change)
  with pytest.raises(ValueError, match=message):
    pallas.composite_pallas(**kw)


def test_list_lengths_and_tile_layout_round_trip():
  ids = jnp.array([[3, 1, -1, 2], [-1, 0, 0, 0], [0, 1, 2, 3]], jnp.int32)
  np.testing.assert_array_equal(pallas._list_lengths(ids), [2, 0, 4])
  cfg = pallas._Config(width=40, height=24, tile_size=16, tiles_x=3, tiles_y=2,
                       n_features=2, interpret=True)
  img = jax.random.normal(jax.random.key(0), (24, 40, 2))
  tiles = pallas._image_to_tiles(img, cfg)
  assert tiles.shape == (6, 2, 2, 128)
  # Pixel (y=17, x=35) is in tile (1, 2) = 5 at in-tile (1, 3), row-major index 19.
  np.testing.assert_array_equal(tiles[5, :, 0, 19], img[17, 35])
  np.testing.assert_array_equal(pallas._tiles_to_image(tiles, cfg), img)
  assert math.prod(tiles.shape) == 6 * 256 * 2
