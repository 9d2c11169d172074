"""Pallas tile compositor: forward and backward kernels for Mosaic GPU and TPU.

Algorithm (the composite contract shared with ``xla.py``; 3DGS ``renderCUDA``):

* One kernel program per ``tile_size x tile_size`` screen tile, vectorised over the tile's
  pixels (256 for 16 x 16 tiles, laid out as ``[R, 128]`` lanes with ``R = tile_size**2 / 128``).
  The program walks its tile's depth-sorted Gaussian list front to back. For pixel centre
  ``(x + 0.5, y + 0.5)`` and Gaussian ``i`` with ``d = means2d_i - centre``::

      power = -0.5 (a dx^2 + c dy^2) - b dx dy       (a, b, c = conic, inverse 2D covariance)
      alpha = min(0.99, o_i exp(power))              skip if power > 0 or alpha < 1/255
      T_next = T (1 - alpha)                         if T_next < 1e-4: the pixel stops here,
                                                     and this Gaussian is not composited
      acc += alpha T f_i;  T = T_next

  and the output alpha is ``1 - T_final``. ``features`` carry the colours with the camera depth
  appended, so one pass accumulates colour and depth.
* The backward kernel (3DGS ``renderCUDA`` backward) walks the same list back to front from
  the per-pixel final transmittance and last-contributor count saved by the forward pass:
  ``T_before = T_after / (1 - alpha)`` (alpha <= 0.99 keeps the division stable) and
  ``B = alpha f + (1 - alpha) B`` is the colour seen behind Gaussian ``i``, so

      dL/dalpha_i = T_i <dL/dacc, f_i - B_i> + dL/dalpha_out T_final / (1 - alpha_i).

  Where ``o exp(power) > 0.99`` the clamp is active and the gradient through alpha is zero
  (what autodiff of ``min`` gives; the Inria CUDA code ignores the clamp there).

Invariants and layout:

* Per-tile parameters are gathered in XLA (``[n_tiles, P, K]``, ``P = 6 + F``: mean x, mean y,
  conic a, b, c, opacity, features) before the forward kernel; each program reads only its own
  tile's block, with scalar reads per Gaussian (SMEM on both targets).
* The backward kernel writes one gradient per (tile, list slot): each program owns its slots,
  so no atomics are needed and the result is deterministic up to the XLA scatter-add that
  reduces slots to Gaussians. Memory is O(pixels + intersections).
* The trip count of a tile is its number of valid ids (the list stops at the first -1) in the
  forward pass and ``max(last contributor)`` over its pixels in the backward pass; it reaches
  the kernel as a scalar (GMEM on GPU, scalar prefetch on TPU). The forward pass also stops a
  tile once all its pixels are saturated, checked every ``_CHUNK`` Gaussians.
* Pixels outside the image (partial edge tiles) start saturated: they do no work, and the
  wrapper crops them.

Targets (one platform per ``jax.export`` artifact):

* ``cuda``: ``plgpu.kernel`` (Mosaic GPU, Hopper or newer), one warpgroup of 128 threads per
  tile, 2 pixels per thread; the tile's ``[P, K]`` block is bulk-copied into shared memory
  (K is padded to a multiple of 32 so the copy moves whole 128-byte units) and read as
  broadcast scalars; gradients are gathered per slot in shared memory and copied out once.
  ``pl.pallas_call`` for Mosaic GPU is deprecated and the Triton backend is not used.
* ``tpu``: ``pl.pallas_call`` with the per-tile counts by scalar prefetch, the ``[P, K]``
  blocks in SMEM and the pixel blocks ``[.., R, 128]`` in VMEM (last two dims (8, 128)-legal).
* elsewhere (CPU): the TPU call with ``interpret=True``, the same kernel bodies run as XLA.

``vmap`` folds its batch into the tile axis of one larger grid (the kernels take the screen
tile as ``program mod n_tiles``), so batched calls need no batching rule from the backends.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu
from jax.experimental.pallas import tpu as pltpu
import jax.numpy as jnp

from kernels.rasterize import common
from kernels.rasterize.common import ALPHA_MAX
from kernels.rasterize.common import ALPHA_MIN
from kernels.rasterize.common import T_MIN

_LANES = 128  # pixels per vector row: TPU lane count; a GPU warpgroup is 128 threads.
_CHUNK = 32  # forward: Gaussians between checks that the tile still has a live pixel.
# List capacity padding: GPU bulk copies of a [P, K] float32 block must move a multiple of
# 128 bytes (one per warpgroup thread); padded slots are never walked.
_K_ALIGN = 32
_N_GEOM = 6  # leading per-Gaussian parameters: mean x, mean y, conic a, b, c, opacity.

Target = Literal["gpu", "tpu"]


@dataclasses.dataclass(frozen=True)
class _Config:
  """Static description of one composite call (hashable: a custom_vjp nondiff argument)."""

  width: int  # image width W, pixels.
  height: int  # image height H, pixels.
  tile_size: int  # tile side, pixels; a power of two >= 16.
  tiles_x: int  # tiles per image row.
  tiles_y: int  # tiles per image column.
  n_features: int  # F, feature channels (colours + depth).
  interpret: bool | None  # True: interpreter; False: compiled; None: by platform.

  @property
  def rows(self) -> int:
    """R, vector rows of 128 pixels per tile."""
    return self.tile_size * self.tile_size // _LANES


# ------------------------------------------------------------------------------------------
# Kernel bodies.


def _pixel_vector(x: jax.Array, gpu_layout: bool) -> jax.Array:
  """Gives a freshly created [R, 128] per-pixel array the layout Mosaic GPU needs.

  Mosaic GPU cannot infer a layout for new arrays (iota, constants); the warpgroup-strided
  layout (2 f32 per thread for 256 pixels) is the one elementwise code and full reductions
  use. Other targets (and the interpreter, which has no rule for the cast) take ``x`` as is.
  """
  if gpu_layout:
    return plgpu.layout_cast(x, plgpu.Layout.WG_STRIDED(x.shape, 2))
  return x


def _pixel_centres(program, cfg: _Config, gpu_layout: bool) -> tuple[jax.Array, jax.Array]:
  """[R, 128] x and y pixel centres (pixels, +0.5) of the tile of kernel program ``program``."""
  shape = (cfg.rows, _LANES)
  # Batched calls stack whole images along the grid (see `_dispatch`).
  # lax.rem / lax.div: the tile index is non-negative, and Python's floor semantics would
  # need sign handling that Mosaic TPU lowers through chip-specific code. Explicit int32
  # constants keep the types fixed when 64-bit mode is on.
  tile = lax.rem(program, jnp.int32(cfg.tiles_x * cfg.tiles_y))
  tile_x = lax.rem(tile, jnp.int32(cfg.tiles_x))
  tile_y = lax.div(tile, jnp.int32(cfg.tiles_x))
  rows = _pixel_vector(lax.broadcasted_iota(jnp.int32, shape, 0), gpu_layout)
  lanes = _pixel_vector(lax.broadcasted_iota(jnp.int32, shape, 1), gpu_layout)
  pixel = rows * _LANES + lanes  # row-major pixel index inside the tile
  shift = cfg.tile_size.bit_length() - 1
  col = tile_x * cfg.tile_size + (pixel & (cfg.tile_size - 1))
  row = tile_y * cfg.tile_size + (pixel >> shift)
  return col.astype(jnp.float32) + 0.5, row.astype(jnp.float32) + 0.5


def _gaussian_at(params_ref, j, px, py):
  """Evaluates list slot ``j`` of the tile at the pixel centres.

  Returns:
    ``(dx, dy, power, g, raw)``: offsets [R, 128] pixels, exponent, ``exp(power)`` and the
    unclamped alpha ``o exp(power)``.
  """
  dx = params_ref[0, j] - px
  dy = params_ref[1, j] - py
  # The shared expression keeps skip / stop decisions identical to the other backends.
  power = common.gaussian_power(dx, dy, params_ref[2, j], params_ref[3, j], params_ref[4, j])
  g = jnp.exp(power)
  return dx, dy, power, g, params_ref[5, j] * g


def _forward_body(program, count, params_ref, acc_ref, t_final_ref, last_ref, *,
                  cfg: _Config, gpu_layout: bool):
  """Front-to-back composite of one tile (the program ``program``).

  Args:
    program: int32 kernel program index (tile index, plus whole images when batched).
    count: int32 valid list length of the tile.
    params_ref: [P, K] the tile's parameters.
    acc_ref: output [F, R, 128] accumulated features.
    t_final_ref: output [R, 128] final transmittance.
    last_ref: output [R, 128] float32 count of list slots up to and including the pixel's
      last composited Gaussian (0 if none); the backward pass starts there.
    cfg: static configuration.
    gpu_layout: whether new arrays need Mosaic GPU's layout (see `_pixel_vector`).
  """
  shape = (cfg.rows, _LANES)
  n_features = cfg.n_features
  px, py = _pixel_centres(program, cfg, gpu_layout)
  zeros = jnp.zeros(shape, jnp.float32)
  # Pixels beyond the image edge start saturated, so they cost nothing and stay empty.
  outside = (px > cfg.width) | (py > cfg.height)
  done = _pixel_vector(jnp.where(outside, 1.0, zeros), gpu_layout)

  def step(j, carry):
    t, done, last, acc = carry
    _, _, power, _, raw = _gaussian_at(params_ref, j, px, py)
    alpha = jnp.minimum(ALPHA_MAX, raw)
    t_next = t * (1.0 - alpha)
    live = (power <= 0.0) & (alpha >= ALPHA_MIN) & (done < 0.5)
    composited = live & (t_next >= T_MIN)
    weight = jnp.where(composited, alpha * t, 0.0)
    acc = tuple(acc[f] + weight * params_ref[_N_GEOM + f, j] for f in range(n_features))
    last = jnp.where(composited, (j + 1).astype(jnp.float32), last)
    done = jnp.where(live & (t_next < T_MIN), 1.0, done)
    t = jnp.where(composited, t_next, t)
    return t, done, last, acc

  def chunk_cond(carry):
    start, any_live = carry[0], carry[1]
    return (start < count) & (any_live > 0.0)

  def chunk(carry):
    start, _, state = carry
    state = lax.fori_loop(start, jnp.minimum(start + _CHUNK, count), step, state)
    any_live = 1.0 - jnp.min(state[1])
    return start + _CHUNK, any_live, state

  init = (_pixel_vector(zeros + 1.0, gpu_layout), done, _pixel_vector(zeros, gpu_layout),
          tuple(_pixel_vector(zeros, gpu_layout) for _ in range(n_features)))
  _, _, (t, _, last, acc) = lax.while_loop(
      chunk_cond, chunk, (jnp.int32(0), jnp.float32(1.0), init))
  t_final_ref[...] = t
  last_ref[...] = last
  for f in range(n_features):
    acc_ref[f] = acc[f]


def _backward_body(program, count, params_ref, t_final_ref, last_ref, g_acc_ref, g_alpha_ref,
                   grads_ref, *, cfg: _Config, gpu_layout: bool):
  """Back-to-front gradient of one tile, one gradient vector per list slot.

  Args:
    program: int32 kernel program index.
    count: int32 backward trip count of the tile (max over its pixels of ``last``).
    params_ref: [P, K] the tile's parameters.
    t_final_ref, last_ref: [R, 128] from the forward pass.
    g_acc_ref: [F, R, 128] cotangent of the accumulated features.
    g_alpha_ref: [R, 128] cotangent of alpha.
    grads_ref: output [P, K], written for slots ``< count`` (the caller masks the rest).
    cfg: static configuration.
    gpu_layout: whether new arrays need Mosaic GPU's layout.
  """
  n_features = cfg.n_features
  px, py = _pixel_centres(program, cfg, gpu_layout)
  t_final = t_final_ref[...]
  last = last_ref[...]
  g_alpha = g_alpha_ref[...]
  g_acc = tuple(g_acc_ref[f] for f in range(n_features))
  zeros = jnp.zeros(t_final.shape, jnp.float32)

  def step(i, carry):
    t_after, behind = carry
    j = count - 1 - i
    dx, dy, power, g, raw = _gaussian_at(params_ref, j, px, py)
    alpha = jnp.minimum(ALPHA_MAX, raw)
    composited = ((j.astype(jnp.float32) < last) & (power <= 0.0) & (alpha >= ALPHA_MIN))
    one_minus = 1.0 - alpha
    t_before = jnp.where(composited, t_after / one_minus, t_after)
    weight = jnp.where(composited, alpha * t_before, 0.0)
    feats = tuple(params_ref[_N_GEOM + f, j] for f in range(n_features))
    d_alpha = g_alpha * t_final / one_minus
    for f in range(n_features):
      d_alpha = d_alpha + t_before * g_acc[f] * (feats[f] - behind[f])
    # The clamp at ALPHA_MAX has zero slope; skipped pixels contribute nothing.
    d_raw = jnp.where(composited & (raw < ALPHA_MAX), d_alpha, 0.0)
    d_power = d_raw * raw
    grads = (
        -d_power * (params_ref[2, j] * dx + params_ref[3, j] * dy),
        -d_power * (params_ref[4, j] * dy + params_ref[3, j] * dx),
        -0.5 * d_power * dx * dx,
        -d_power * dx * dy,
        -0.5 * d_power * dy * dy,
        d_raw * g,
    ) + tuple(weight * g_acc[f] for f in range(n_features))
    for p, grad in enumerate(grads):
      grads_ref[p, j] = jnp.sum(grad)
    behind = tuple(
        jnp.where(composited, alpha * feats[f] + one_minus * behind[f], behind[f])
        for f in range(n_features))
    return t_before, behind

  init = (t_final, tuple(_pixel_vector(zeros, gpu_layout) for _ in range(n_features)))
  lax.fori_loop(0, count, step, init)


# ------------------------------------------------------------------------------------------
# Kernel launchers: one program per tile on every target.
#
# TPU (and the interpreter): ``pl.pallas_call`` with the per-tile counts as scalar prefetch,
# the tile's [P, K] parameters (and gradients) as SMEM blocks for scalar reads, and
# (8, 128)-compatible VMEM blocks for the pixel arrays.
# GPU: ``plgpu.kernel`` (``pallas_call`` for Mosaic GPU is deprecated) over GMEM refs; each
# program bulk-copies its tile's parameters into shared memory and writes its outputs from
# registers / shared memory itself.


def _tpu_specs(blocks):
  """Squeezed-tile BlockSpecs; ``blocks`` = [(shape without the tile axis, "smem"|"vmem")]."""
  specs = []
  for shape, memory in blocks:
    zeros = (0,) * len(shape)
    space = pltpu.SMEM if memory == "smem" else pltpu.VMEM
    specs.append(pl.BlockSpec((None, *shape), lambda t, counts, z=zeros: (t, *z),
                              memory_space=space))
  return specs


def _tpu_call(body, counts, ins, out_types, in_blocks, out_blocks, *, interpret: bool):
  """Runs ``body(program, count, *in_refs, *out_refs)`` per tile with Mosaic TPU."""

  def kernel(counts_ref, *refs):
    program = pl.program_id(0)
    body(program, counts_ref[program], *refs, gpu_layout=False)

  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=1, grid=(counts.shape[0],), in_specs=_tpu_specs(in_blocks),
      out_specs=tuple(_tpu_specs(out_blocks)))
  return pl.pallas_call(
      kernel, grid_spec=grid_spec, out_shape=tuple(out_types), interpret=interpret,
      compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel",)),
  )(counts, *ins)


def _gpu_call(kernel, counts, ins, out_types, scratch_types, *, interpret):
  """Runs ``kernel(program, counts_ref, *in_refs, *out_refs, *scratch)`` per tile on GPU."""

  def body(counts_ref, *refs):
    kernel(lax.axis_index("tiles"), counts_ref, *refs)

  return plgpu.kernel(
      body, out_type=tuple(out_types), scratch_types=scratch_types, grid=(counts.shape[0],),
      grid_names=("tiles",), interpret=interpret,
      compiler_params=plgpu.CompilerParams(dimension_semantics=("parallel",)),
  )(counts, *ins)


def _copy_tile_in(src_ref, dst_smem, barrier):
  """Bulk-copies one tile's block from GMEM into shared memory and waits for it."""
  plgpu.copy_gmem_to_smem(src_ref, dst_smem, barrier)
  plgpu.barrier_wait(barrier)


def _forward_call(cfg: _Config, counts, tile_params, *, target: Target, interpret):
  """Forward kernel: acc [T, F, R, 128], t_final and last [T, R, 128] for T programs.

  ``interpret`` is passed to the launcher: False compiles; for the GPU launcher an
  interpreter-params object selects the Mosaic GPU interpreter (tests).
  """
  n_tiles, n_params, capacity = tile_params.shape
  pix = (cfg.rows, _LANES)
  f32 = jnp.float32
  out_types = (
      jax.ShapeDtypeStruct((n_tiles, cfg.n_features, *pix), f32),
      jax.ShapeDtypeStruct((n_tiles, *pix), f32),
      jax.ShapeDtypeStruct((n_tiles, *pix), f32),
  )
  body = functools.partial(_forward_body, cfg=cfg)
  if target == "tpu":
    return _tpu_call(
        body, counts, (tile_params,), out_types,
        in_blocks=[((n_params, capacity), "smem")],
        out_blocks=[((cfg.n_features, *pix), "vmem"), (pix, "vmem"), (pix, "vmem")],
        interpret=interpret)

  def kernel(program, counts_ref, params_ref, acc_ref, t_ref, last_ref, params_smem,
             barrier):
    _copy_tile_in(params_ref.at[program], params_smem, barrier)
    body(program, counts_ref[program], params_smem, acc_ref.at[program], t_ref.at[program],
         last_ref.at[program], gpu_layout=interpret is False)

  return _gpu_call(kernel, counts, (tile_params,), out_types,
                   [plgpu.SMEM((n_params, capacity), f32), plgpu.Barrier()],
                   interpret=interpret)


def _backward_call(cfg: _Config, counts, tile_params, t_final, last, g_acc, g_alpha, *,
                   target: Target, interpret):
  """Backward kernel: per-slot gradients [T, P, K] (slots >= counts are not written)."""
  n_tiles, n_params, capacity = tile_params.shape
  pix = (cfg.rows, _LANES)
  f32 = jnp.float32
  out_types = (jax.ShapeDtypeStruct((n_tiles, n_params, capacity), f32),)
  body = functools.partial(_backward_body, cfg=cfg)
  ins = (tile_params, t_final, last, g_acc, g_alpha)
  if target == "tpu":
    (slot_grads,) = _tpu_call(
        body, counts, ins, out_types,
        in_blocks=[((n_params, capacity), "smem"), (pix, "vmem"), (pix, "vmem"),
                   ((cfg.n_features, *pix), "vmem"), (pix, "vmem")],
        out_blocks=[((n_params, capacity), "smem")],
        interpret=interpret)
    return slot_grads

  def kernel(program, counts_ref, params_ref, t_ref, last_ref, g_acc_ref, g_alpha_ref,
             grads_ref, params_smem, grads_smem, barrier):
    _copy_tile_in(params_ref.at[program], params_smem, barrier)
    body(program, counts_ref[program], params_smem, t_ref.at[program], last_ref.at[program],
         g_acc_ref.at[program], g_alpha_ref.at[program], grads_smem,
         gpu_layout=interpret is False)
    # Gradients are gathered per slot in shared memory, then written with one bulk copy.
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(grads_smem, grads_ref.at[program])
    plgpu.wait_smem_to_gmem(0)

  (slot_grads,) = _gpu_call(
      kernel, counts, ins, out_types,
      [plgpu.SMEM((n_params, capacity), f32), plgpu.SMEM((n_params, capacity), f32),
       plgpu.Barrier()],
      interpret=interpret)
  return slot_grads


def _dispatch(call, cfg: _Config, *args):
  """Runs ``call(cfg, *args, target=, interpret=)`` as ``cfg.interpret`` asks.

  ``interpret=None`` picks per lowering platform, so one jitted (or exported) function holds
  the Mosaic GPU kernel for ``cuda``, the Mosaic kernel for ``tpu`` and the interpreter
  elsewhere; ``interpret=False`` fails to lower on other platforms.

  Every argument has a leading tile axis, and the kernels derive a program's screen tile as
  ``program mod n_tiles``. ``vmap`` therefore folds its batch into the tile axis: every
  target sees one larger grid, and no backend batching rule is involved (Mosaic GPU cannot
  lower a batched ``pallas_call``).
  """

  def run(*args):
    if cfg.interpret:
      return call(cfg, *args, target="tpu", interpret=True)
    branches = dict(
        cuda=functools.partial(call, cfg, target="gpu", interpret=False),
        tpu=functools.partial(call, cfg, target="tpu", interpret=False),
    )
    # Other platforms interpret, or (interpret=False) reach Pallas's own refusal.
    default = functools.partial(call, cfg, target="tpu", interpret=cfg.interpret is None)
    return lax.platform_dependent(*args, default=default, **branches)

  run = jax.custom_batching.custom_vmap(run)

  @run.def_vmap
  def _run_batched(axis_size, in_batched, *args):
    args = [a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, batched in zip(args, in_batched)]
    outs = run(*(a.reshape(axis_size * a.shape[1], *a.shape[2:]) for a in args))
    outs = jax.tree.map(lambda o: o.reshape(axis_size, -1, *o.shape[1:]), outs)
    return outs, jax.tree.map(lambda _: True, outs)

  return run(*args)


# ------------------------------------------------------------------------------------------
# Layout helpers (XLA side).


def _pad_capacity(ids: jax.Array) -> jax.Array:
  """[n_tiles, K'] ids with K' a multiple of ``_K_ALIGN``, padded with -1."""
  capacity = ids.shape[1]
  padded = -(-capacity // _K_ALIGN) * _K_ALIGN
  return jnp.pad(ids, ((0, 0), (0, padded - capacity)), constant_values=-1)


def _list_lengths(ids: jax.Array) -> jax.Array:
  """[n_tiles] int32 index of the first -1 in each tile's list (K if none)."""
  valid = jnp.cumprod((ids >= 0).astype(jnp.int32), axis=1)
  return jnp.sum(valid, axis=1, dtype=jnp.int32)


def _pack(means2d, conics, opacities, features) -> jax.Array:
  """[N, P] per-Gaussian kernel parameters, P = 6 + F."""
  return jnp.concatenate([means2d, conics, opacities[:, None], features], axis=1)


def _gather_tiles(packed: jax.Array, ids: jax.Array) -> jax.Array:
  """[n_tiles, P, K] parameters of each tile's list (slots with id -1 read Gaussian 0)."""
  return jnp.swapaxes(packed[jnp.maximum(ids, 0)], 1, 2)


def _tiles_to_image(x: jax.Array, cfg: _Config) -> jax.Array:
  """[n_tiles, C, R, 128] tile-major pixels -> [H, W, C] image (edge padding cropped)."""
  ts = cfg.tile_size
  x = x.reshape(cfg.tiles_y, cfg.tiles_x, x.shape[1], ts, ts)
  x = x.transpose(0, 3, 1, 4, 2).reshape(cfg.tiles_y * ts, cfg.tiles_x * ts, -1)
  return x[:cfg.height, :cfg.width]


def _image_to_tiles(x: jax.Array, cfg: _Config) -> jax.Array:
  """[H, W, C] image -> [n_tiles, C, R, 128] tile-major pixels (edge padding zero)."""
  ts = cfg.tile_size
  x = jnp.pad(x, ((0, cfg.tiles_y * ts - cfg.height), (0, cfg.tiles_x * ts - cfg.width),
                  (0, 0)))
  x = x.reshape(cfg.tiles_y, ts, cfg.tiles_x, ts, -1).transpose(0, 2, 4, 1, 3)
  return x.reshape(cfg.tiles_y * cfg.tiles_x, x.shape[2], cfg.rows, _LANES)


# ------------------------------------------------------------------------------------------
# Public function with its custom VJP.


def _forward(cfg: _Config, ids, means2d, conics, opacities, features):
  ids = _pad_capacity(ids)
  packed = _pack(means2d, conics, opacities, features)
  tile_params = _gather_tiles(packed, ids)
  acc, t_final, last = _dispatch(_forward_call, cfg, _list_lengths(ids), tile_params)
  features_acc = _tiles_to_image(acc, cfg)
  alpha = _tiles_to_image((1.0 - t_final)[:, None], cfg)[..., 0]
  return (features_acc, alpha), (ids, packed, t_final, last)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _composite(cfg: _Config, ids, means2d, conics, opacities, features):
  return _forward(cfg, ids, means2d, conics, opacities, features)[0]


def _composite_fwd(cfg: _Config, ids, means2d, conics, opacities, features):
  return _forward(cfg, ids, means2d, conics, opacities, features)


def _composite_bwd(cfg: _Config, res, cotangents):
  ids, packed, t_final, last = res
  g_acc, g_alpha = cotangents
  g_acc = _image_to_tiles(g_acc.astype(jnp.float32), cfg)
  g_alpha = _image_to_tiles(g_alpha.astype(jnp.float32)[..., None], cfg)[:, 0]
  # Slots beyond a tile's last contributor cannot have a gradient.
  counts = jnp.max(last, axis=(1, 2)).astype(jnp.int32)
  tile_params = _gather_tiles(packed, ids)
  slot_grads = _dispatch(_backward_call, cfg, counts, tile_params, t_final, last, g_acc,
                         g_alpha)
  slots = jnp.arange(ids.shape[1])
  written = (slots[None, :] < counts[:, None]) & (ids >= 0)
  # `where`, not a product: unwritten slots hold whatever the output buffer held.
  slot_grads = jnp.where(written[:, None, :], slot_grads, 0.0)
  slot_grads = jnp.swapaxes(slot_grads, 1, 2).reshape(-1, packed.shape[1])
  grads = jax.ops.segment_sum(slot_grads, jnp.maximum(ids, 0).reshape(-1),
                              num_segments=packed.shape[0])
  return None, grads[:, 0:2], grads[:, 2:5], grads[:, 5], grads[:, _N_GEOM:]


_composite.defvjp(_composite_fwd, _composite_bwd)


def composite_pallas(ids: jax.Array, means2d: jax.Array, conics: jax.Array,
                     opacities: jax.Array, features: jax.Array, *, width: int, height: int,
                     tile_size: int = 16,
                     interpret: bool | None = None) -> tuple[jax.Array, jax.Array]:
  """Alpha-composites depth-sorted per-tile Gaussian lists with Pallas kernels.

  Differentiable with respect to ``means2d``, ``conics``, ``opacities`` and ``features``
  through a hand-written backward kernel (``jax.custom_vjp``, reverse mode only); works under
  ``jit``, ``vmap`` and ``jax.export`` (one platform per exported artifact).

  Warning: on GPU a tile's ``[6 + F, K]`` parameter block and, in the backward pass, its
  gradient block live in shared memory: ``2 (6 + F) K 4`` bytes must fit the device's shared
  memory per block (227 KiB on H100, so K <= ~2900 for F = 4).

  Args:
    ids: [n_tiles, K] int32 Gaussian indices per tile, front to back, -1 padded (the list
      ends at the first -1). Tiles are row-major, ``n_tiles = ceil(H/ts) * ceil(W/ts)``.
    means2d: [N, 2] projected centres, pixels (pixel centres at +0.5).
    conics: [N, 3] inverse 2D covariance (a, b, c), pixels^-2.
    opacities: [N] in [0, 1].
    features: [N, F] per-Gaussian features (colours with the camera depth appended).
    width: image width W, pixels.
    height: image height H, pixels.
    tile_size: tile side, pixels; a power of two >= 16 (a tile fills whole 128-pixel rows).
    interpret: True runs the Pallas interpreter on any backend; False the compiled kernels
      (Mosaic GPU on ``cuda``, needs Hopper or newer; Mosaic on ``tpu``); None (default)
      chooses by the platform the function is lowered for: compiled on ``cuda``/``tpu``,
      interpreted elsewhere (CPU).

  Returns:
    ``(features_acc [H, W, F], alpha [H, W])``: ``sum_i w_i f_i`` and ``1 - T_final``.

  Raises:
    ValueError: if shapes disagree with each other, with ``width``/``height``/``tile_size``,
      or ``tile_size`` is not a power of two >= 16.
  """
  if tile_size < 16 or tile_size & (tile_size - 1):
    raise ValueError(
        f"composite_pallas: tile_size must be a power of two >= 16 (a tile must fill whole "
        f"rows of {_LANES} pixels), found {tile_size}")
  tiles_x = -(-width // tile_size)
  tiles_y = -(-height // tile_size)
  n = means2d.shape[0]
  expected = {
      "ids": ((tiles_x * tiles_y, ids.shape[-1]), ids.shape),
      "means2d": ((n, 2), means2d.shape),
      "conics": ((n, 3), conics.shape),
      "opacities": ((n,), opacities.shape),
      "features": ((n, features.shape[-1]), features.shape),
  }
  for name, (want, found) in expected.items():
    if tuple(want) != tuple(found):
      raise ValueError(
          f"composite_pallas: {name} must have shape {want} for a {width}x{height} image "
          f"with {tile_size}-pixel tiles and N={n} Gaussians, found {found}")
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"composite_pallas: ids must be int32, found {ids.dtype}")
  if features.ndim != 2 or features.shape[-1] < 1:
    raise ValueError(f"composite_pallas: features must be [N, F], F >= 1, found "
                     f"{features.shape}")
  cfg = _Config(width=width, height=height, tile_size=tile_size, tiles_x=tiles_x,
                tiles_y=tiles_y, n_features=features.shape[-1], interpret=interpret)
  # The kernels compute in float32; autodiff of the casts returns cotangents in the
  # callers' dtypes.
  f32 = lambda x: jnp.asarray(x).astype(jnp.float32)
  features_acc, alpha = _composite(cfg, ids.astype(jnp.int32), f32(means2d), f32(conics),
                                   f32(opacities), f32(features))
  return features_acc.astype(features.dtype), alpha.astype(features.dtype)
