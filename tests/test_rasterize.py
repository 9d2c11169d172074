"""Rasteriser: binning, composite backends and the render front end against brute force."""

import functools

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest

import hsjax
from hsjax import camera as camera_lib
from hsjax.rendering import gaussian_colors
from hsjax.rendering import render as render_fn
from kernels.rasterize import api
from kernels.rasterize import binning
from kernels.rasterize import projection
from kernels.rasterize import reference
from kernels.rasterize import scenes
from kernels.rasterize import xla

FWD_TOL = 1e-5  # acceptance: rgb, alpha, depth vs the brute-force reference
GRAD_RTOL = 1e-4  # float32 gradients vs autodiff of the reference, relative to max |grad|

BACKENDS = ["xla"] + (["pallas"] if api.available_backends()["pallas"] is None else [])


# Everything is jitted (eager control flow recompiles on every call) and the tests share
# scene sizes so that compiled functions are reused.


@jax.jit
def _project(s):
  return projection.project(s.means, s.quats, s.scales, s.opacities, s.K, s.world_to_cam,
                            width=s.width, height=s.height)


@functools.partial(jax.jit, static_argnames=("capacity",))
def _composite_inputs(s, capacity=512):
  p = _project(s)
  tiles = binning.bin_gaussians(p.means2d, p.radii_xy, p.depths, width=s.width,
                                height=s.height, capacity=capacity)
  feats = jnp.concatenate([s.colors, p.depths[:, None]], axis=-1)
  return p, tiles, (tiles.ids, p.means2d, p.conics, p.opacities, feats)


@functools.partial(jax.jit, static_argnames=("backend", "tile_capacity"))
def _rasterize(s, backend, background=None, tile_capacity=512):
  return api.rasterize(s.means, s.quats, s.scales, s.opacities, s.colors, s.K, s.world_to_cam,
                       width=s.width, height=s.height, backend=backend, background=background,
                       tile_capacity=tile_capacity)


@pytest.mark.parametrize("seed", [0, 1])
def test_binning_lists_are_exact_and_depth_sorted(seed):
  """Every tile lists exactly the Gaussians whose box touches it, nearest first."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=seed)
  p, tiles, _ = _composite_inputs(s)
  tx0, tx1, ty0, ty1 = (np.asarray(a) for a in binning.tile_ranges(
      p.means2d, p.radii_xy, width=s.width, height=s.height))
  depths = np.asarray(p.depths)
  tiles_x, tiles_y = binning.tile_grid(s.width, s.height)
  ids = np.asarray(tiles.ids)
  assert int(tiles.overflow) == 0
  for t in range(tiles_x * tiles_y):
    tx, ty = t % tiles_x, t // tiles_x
    inside = np.nonzero((tx0 <= tx) & (tx < tx1) & (ty0 <= ty) & (ty < ty1))[0]
    expect = inside[np.lexsort((inside, depths[inside]))]
    got = ids[t][ids[t] >= 0]
    np.testing.assert_array_equal(got, expect)
    assert tiles.counts[t] == len(expect)
    assert np.all(ids[t][len(expect):] == -1)


def test_tile_reference_matches_brute_force():
  """Binning loses nothing: per-tile lists composite like all Gaussians at every pixel."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=3)
  p, _, args = _composite_inputs(s)
  acc_t, alpha_t = jax.jit(functools.partial(reference.composite_reference, width=s.width,
                                             height=s.height))(*args)
  acc_b, alpha_b = jax.jit(functools.partial(reference.rasterize_reference, width=s.width,
                                             height=s.height))(*args[1:], p.depths, p.radii_xy)
  assert float(jnp.max(alpha_b)) > 0.5  # the scene is not empty
  np.testing.assert_allclose(acc_t, acc_b, atol=FWD_TOL)
  np.testing.assert_allclose(alpha_t, alpha_b, atol=FWD_TOL)


# The Pallas kernels have their own tests (tests/test_pallas.py); here they run once through
# the whole pipeline.
@pytest.mark.parametrize("backend,seed", [("xla", 2), ("xla", 8)] +
                         [(b, 2) for b in BACKENDS if b != "xla"])
def test_forward_matches_brute_force(backend, seed):
  """rgb, alpha and depth of a backend equal the brute-force reference (edge-case scene,
  image size not a multiple of the tile size)."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=seed)
  bg = jnp.array([0.2, 0.5, 0.9])
  out = _rasterize(s, backend, background=bg)
  ref = _rasterize(s, "reference", background=bg)
  assert int(out.overflow) == 0
  assert float(jnp.mean(ref.alpha > 0.5)) > 0.2
  for name in ("rgb", "alpha", "depth"):
    np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=FWD_TOL,
                               err_msg=name)
  np.testing.assert_array_equal(out.radii, ref.radii)


def test_composite_vjp_matches_reference_autodiff(backend="xla"):
  """Hand-written backward == autodiff of the dense reference, for every input."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=4)
  _, _, args = _composite_inputs(s)
  w, h = s.width, s.height
  rng = np.random.default_rng(0)
  cts = (jnp.asarray(rng.normal(size=(h, w, 4)), jnp.float32),
         jnp.asarray(rng.normal(size=(h, w)), jnp.float32))
  fn = api.get_composite(backend)

  # Inputs are jit arguments, not closed-over constants (XLA would constant-fold them).
  @functools.partial(jax.jit, static_argnums=0)
  def vjp(f, args, cts):
    out, pullback = jax.vjp(lambda *x: f(args[0], *x, width=w, height=h), *args[1:])
    return out, pullback(cts)

  (acc, alpha), grads = vjp(fn, args, cts)
  (acc_r, alpha_r), grads_r = vjp(reference.composite_reference, args, cts)
  np.testing.assert_allclose(acc, acc_r, atol=FWD_TOL)
  np.testing.assert_allclose(alpha, alpha_r, atol=FWD_TOL)
  for name, g, g_r in zip(("means2d", "conics", "opacities", "features"), grads, grads_r):
    scale = float(jnp.max(jnp.abs(g_r)))
    assert scale > 0, name
    np.testing.assert_allclose(g, g_r, atol=GRAD_RTOL * scale, err_msg=name)


def test_xla_composite_finite_differences(x64):
  """float64: the custom VJP agrees with central finite differences (check_grads)."""
  del x64
  s = scenes.make_scene("random", n=40, width=20, height=18, seed=5, dtype=jnp.float64)
  _, tiles, args = _composite_inputs(s, capacity=64)
  ids = tiles.ids
  rng = np.random.default_rng(1)
  wa = jnp.asarray(rng.normal(size=(18, 20, 4)))
  wb = jnp.asarray(rng.normal(size=(18, 20)))

  @jax.jit
  def loss_with_ids(ids, means2d, conics, opacities, features):
    acc, alpha = xla.composite_xla(ids, means2d, conics, opacities, features, width=20,
                                   height=18)
    return jnp.sum(acc * wa) + jnp.sum(alpha * wb)

  loss = functools.partial(loss_with_ids, ids)
  assert float(jnp.max(jnp.abs(jax.grad(loss)(*args[1:])))) > 0
  jax.test_util.check_grads(loss, args[1:], order=1, modes=("rev",), eps=1e-6, atol=1e-5,
                            rtol=1e-4)


def test_pipeline_gradients_match_reference(backend="xla"):
  """Gradients to means, quats, scales, opacities, colours, camera pose == brute force."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=6)
  rng = np.random.default_rng(2)
  w_rgb = jnp.asarray(rng.normal(size=(37, 45, 3)), jnp.float32)
  w_a = jnp.asarray(rng.normal(size=(37, 45)), jnp.float32)
  w_d = jnp.asarray(rng.normal(size=(37, 45)), jnp.float32)

  def loss(s, backend):
    out = _rasterize(s, backend)
    return jnp.sum(out.rgb * w_rgb) + jnp.sum(out.alpha * w_a) + 0.1 * jnp.sum(out.depth * w_d)

  g = jax.jit(jax.grad(functools.partial(loss, backend=backend)))(s)
  g_ref = jax.jit(jax.grad(functools.partial(loss, backend="reference")))(s)
  for name in ("means", "quats", "scales", "opacities", "colors", "world_to_cam", "K"):
    a, b = getattr(g, name), getattr(g_ref, name)
    assert bool(jnp.all(jnp.isfinite(a))), name
    scale = float(jnp.max(jnp.abs(b)))
    assert scale > 0, name
    np.testing.assert_allclose(a, b, atol=GRAD_RTOL * scale, err_msg=name)


def test_overflow_count_is_exact_and_keeps_nearest():
  """n Gaussians in one tile with capacity K: overflow = n - K, the nearest K are rendered."""
  n, k = 40, 16
  s = scenes.make_scene("overflow", n=n, width=45, height=37, seed=0)
  out = _rasterize(s, "xla", tile_capacity=k)
  assert int(out.overflow) == n - k
  p, tiles, _ = _composite_inputs(s, capacity=k)
  assert int(jnp.sum(tiles.counts)) == n and int(jnp.max(tiles.counts)) == n
  np.testing.assert_array_equal(tiles.ids[jnp.argmax(tiles.counts)], jnp.arange(k))
  near = s.replace(opacities=s.opacities.at[k:].set(0.0))  # drop the far ones by hand
  ref = _rasterize(near, "reference")
  for name in ("rgb", "alpha", "depth"):
    np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=FWD_TOL)
  assert float(jnp.max(out.alpha)) > 0.9


def test_small_pair_buffer_is_counted_in_overflow():
  """A pair buffer smaller than the intersections drops pairs and counts every one."""
  s = scenes.make_scene("random", n=300, width=45, height=37, seed=7)
  p = _project(s)
  bin_fn = jax.jit(binning.bin_gaussians,
                   static_argnames=("width", "height", "capacity", "max_intersections"))
  full = bin_fn(p.means2d, p.radii_xy, p.depths, width=45, height=37, capacity=256)
  cut = bin_fn(p.means2d, p.radii_xy, p.depths, width=45, height=37, capacity=256,
               max_intersections=100)
  total = int(full.num_intersections)
  assert int(full.overflow) == 0 and total > 100
  assert int(cut.overflow) == total - 100
  assert int(jnp.sum(cut.ids >= 0)) == 100


def test_degenerate_inputs_give_finite_values_and_gradients(backend="xla"):
  """Zero scales, zero/invalid quats, Gaussians at the near plane or behind the camera, zero
  opacity, and empty tiles produce finite images and finite gradients."""
  n = 8
  means = jnp.array([[0.0, 0.0, 2.0], [0.1, 0.0, 0.01], [0.0, 0.0, 0.0], [0.0, 0.1, -1.0],
                     [0.05, 0.05, 1.0], [0.0, 0.0, 3.0], [1e-3, 0.0, 0.0100001],
                     [-0.2, 0.1, 2.0]])
  quats = jnp.array([[1.0, 0, 0, 0]] * 6 + [[0.0, 0, 0, 0]] * 2)
  scales = jnp.array([[0.0, 0.0, 0.0], [0.1] * 3, [0.1] * 3, [0.1] * 3, [0.05, 0.0, 0.05],
                      [0.1] * 3, [1e-3] * 3, [0.05] * 3])
  opac = jnp.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.0, 0.9, 0.5])
  colors = jnp.ones((n, 3)) * 0.5
  cam = hsjax.Camera(K=jnp.asarray(camera_lib.intrinsics(40.0, 48, 48)),
                     world_to_cam=jnp.eye(4), width=48, height=48)
  g = hsjax.Gaussians(means=means, quats=quats, scales=scales, opacities=opac, colors=colors)

  def loss(g, cam):
    out = render_fn(g, cam, backend=backend, antialiased=True)
    return jnp.sum(out.rgb) + jnp.sum(out.alpha) + jnp.sum(out.depth), out

  (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(g, cam)
  for leaf in jax.tree.leaves((out.rgb, out.alpha, out.depth, grads)):
    assert bool(jnp.all(jnp.isfinite(leaf)))
  assert not bool(out.visible[2]) and not bool(out.visible[3])  # at / behind the camera
  assert float(jnp.max(out.alpha)) > 0.5
  assert float(jnp.min(out.alpha)) == 0.0  # some tiles are empty


_render = jax.jit(render_fn, static_argnames=(
    "backend", "tile_capacity", "sh_degree", "antialiased", "near", "far", "eps2d",
    "max_intersections"))


def _avatar_camera_batch(t):
  cams = [camera_lib.look_at((np.sin(a) * 3.0, -0.05, np.cos(a) * 3.0), (0.0, -0.05, 0.0))
          for a in np.linspace(0, 0.6, t)]
  k = camera_lib.intrinsics(40.0, 48, 40)
  return hsjax.Camera(K=jnp.asarray(np.stack([k] * t)), world_to_cam=jnp.asarray(np.stack(cams)),
                      width=48, height=40)


def test_vmap_over_cameras_and_gaussians(backend="xla"):
  """vmap over cameras and over Gaussian sets equals rendering one at a time (and grads)."""
  s = scenes.make_scene("avatar", n=400, width=48, height=40, seed=0)
  g = hsjax.Gaussians(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities,
                      colors=s.colors)
  cams = _avatar_camera_batch(3)
  render = functools.partial(render_fn, backend=backend)
  render_jit = jax.jit(render)

  def loss(g, cams):
    return jnp.sum(jax.vmap(render, in_axes=(None, 0))(g, cams).rgb ** 2)

  batched = jax.jit(jax.vmap(render, in_axes=(None, 0)))(g, cams)
  grads = jax.jit(jax.grad(loss))(g, cams)
  grad_one = jax.jit(jax.grad(lambda g, cam: jnp.sum(render(g, cam).rgb ** 2)))
  grads_loop = None
  for i in range(3):
    cam = jax.tree.map(lambda x, i=i: x[i], cams)
    one = render_jit(g, cam)
    np.testing.assert_allclose(batched.rgb[i], one.rgb, atol=1e-6)
    gi = grad_one(g, cam)
    grads_loop = gi if grads_loop is None else jax.tree.map(jnp.add, grads_loop, gi)
  scale = float(jnp.max(jnp.abs(grads_loop.means)))
  np.testing.assert_allclose(grads.means, grads_loop.means, atol=1e-5 * scale)
  # Over Gaussian sets (e.g. subjects): two jittered copies, one camera.
  cam = jax.tree.map(lambda x: x[0], cams)
  g2 = jax.tree.map(lambda x: jnp.stack([x, x]), g)
  g2 = g2.replace(means=g2.means.at[1].add(0.02))
  both = jax.jit(jax.vmap(render, in_axes=(0, None)))(g2, cam)
  np.testing.assert_allclose(both.rgb[1],
                             render_jit(jax.tree.map(lambda x: x[1], g2), cam).rgb, atol=1e-6)


def test_render_sh_background_depth_and_screen_offsets():
  """SH colours are evaluated for the view; background fills (1 - alpha); depth is 0 where
  nothing was hit; the screen_offsets gradient is the gradient w.r.t. means2d."""
  s = scenes.make_scene("avatar", n=300, width=40, height=40, seed=1)
  rng = np.random.default_rng(3)
  sh = jnp.asarray(rng.normal(0, 0.3, (300, 16, 3)), jnp.float32)
  g = hsjax.Gaussians(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities,
                      sh=sh)
  cam = hsjax.Camera(K=s.K, world_to_cam=s.world_to_cam, width=40, height=40)
  bg = jnp.array([1.0, 0.0, 0.5])
  out = _render(g, cam, background=bg)
  colors = gaussian_colors(g, cam)
  plain = _render(g.replace(sh=None, colors=colors), cam)
  np.testing.assert_allclose(out.rgb, plain.rgb + (1 - plain.alpha)[..., None] * bg, atol=1e-6)
  empty = out.alpha <= 1e-4
  assert bool(jnp.any(empty)) and bool(jnp.all(out.depth[empty] == 0))
  hit = out.alpha > 0.5
  assert bool(jnp.all((out.depth[hit] > 2.0) & (out.depth[hit] < 4.0)))  # body at ~3 m
  # Degree 0 ignores the higher coefficients.
  deg0 = gaussian_colors(g, cam, sh_degree=0)
  np.testing.assert_allclose(deg0, jnp.maximum(sh[:, 0] * 0.28209479177387814 + 0.5, 0),
                             atol=1e-6)

  offsets = jnp.zeros((300, 2))
  target = jnp.asarray(rng.uniform(size=(40, 40, 3)), jnp.float32)

  def loss(offsets):
    return jnp.sum((render_fn(g, cam, screen_offsets=offsets).rgb - target) ** 2)

  g_off = jax.jit(jax.grad(loss))(offsets)
  p = _project(s)
  feats = jnp.concatenate([colors, p.depths[:, None]], -1)
  tiles = jax.jit(binning.bin_gaussians, static_argnames=("width", "height", "capacity"))(
      p.means2d, p.radii_xy, p.depths, width=40, height=40, capacity=api.DEFAULT_TILE_CAPACITY)

  def loss2d(means2d):
    acc, alpha = xla.composite_xla(tiles.ids, means2d, p.conics, p.opacities, feats,
                                   width=40, height=40)
    return jnp.sum((acc[..., :3] - target) ** 2)

  np.testing.assert_allclose(g_off, jax.jit(jax.grad(loss2d))(p.means2d), rtol=1e-5,
                             atol=1e-6)
  assert float(jnp.max(jnp.abs(g_off))) > 0


def test_bad_inputs_raise_clear_errors():
  s = scenes.make_scene("random", n=10, width=32, height=32)
  with pytest.raises(ValueError, match="backend"):
    _rasterize(s, "cuda")
  g = hsjax.Gaussians(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities)
  cam = hsjax.Camera(K=s.K, world_to_cam=s.world_to_cam, width=32, height=32)
  with pytest.raises(ValueError, match="exactly one of"):
    render_fn(g, cam)
  with pytest.raises(ValueError, match="sh"):
    render_fn(g.replace(sh=jnp.zeros((10, 5, 3))), cam)
  with pytest.raises(ValueError, match="ids"):
    xla.composite_xla(jnp.zeros((3, 8), jnp.int32), s.means[:, :2], s.quats[:, :3],
                      s.opacities, s.colors, width=32, height=32)
