"""Pure-JAX (XLA) tile compositor with a hand-written backward pass; the CPU backend.

Composite contract (shared with ``pallas.py``)::

  composite_xla(ids [n_tiles, K] int32, means2d [N, 2], conics [N, 3], opacities [N],
                features [N, F], *, width, height, tile_size=16)
    -> (features_acc [H, W, F], alpha [H, W])

Per pixel (centre ``(x + 0.5, y + 0.5)``) the tile's ids are walked front to back with the
3DGS ``renderCUDA`` rules: ``power = -0.5 (a dx^2 + c dy^2) - b dx dy`` with
``d = mean - centre``, skip if ``power > 0``; ``alpha = min(0.99, o exp(power))``, skip if
``alpha < 1/255``; if ``T (1 - alpha) < 1e-4`` the pixel stops (that Gaussian is not
composited); else ``acc += alpha T f`` and ``T *= 1 - alpha``. ``alpha_out = 1 - T_final``.

How it runs fast in XLA on a CPU:

* Each 16x16 tile is composited as four 8x8 sub-tiles (``subtile``), each walking only the
  entries of its tile's list whose ``alpha >= 1/255`` ellipse reaches it
  (:func:`split_tile_lists`). The skipped entries are ones the 1/255 rule skips at every
  pixel of the sub-tile, so each pixel composites the same Gaussians in the same order (the
  image changes only by float rounding), while the dense per-block work, which grows with
  pixels x list length, drops several-fold for avatar-sized Gaussians of a few pixels.
* Tiles are processed in chunks of ``tiles_per_chunk`` (a ``lax.map`` / ``lax.scan``), busiest
  tiles first, so a chunk's work is bounded by similar list lengths. Each tile's list is walked
  in blocks of ``block_size`` Gaussians inside a ``while_loop`` that ends at the chunk's
  longest list or as soon as every pixel of the chunk has stopped: time follows the actual
  (pixel, overlapping Gaussian) work, not ``K`` nor ``N``, and empty tiles cost nothing.
* Inside a block, alphas form a dense ``[tiles, pixels, block]`` array; the skip rules are
  masks and the transmittance is a cumulative product. The stop rule is a prefix mask because
  the inclusive transmittance is non-increasing along the list.
* Padding ids (-1) point to an extra Gaussian of opacity 0, which the 1/255 rule always skips.

Backward (``jax.custom_vjp``): residuals are the inputs, ``features_acc`` and ``T_final``, i.e.
O(pixels + intersections). It re-walks each tile front to back with exactly the forward's
block code (same skip/stop decisions, no division to recover T) and uses, for every
composited entry i of a pixel with output cotangents ``g`` [F] and ``g_alpha``::

  dL/dalpha_i = T_i (g . f_i) + (g_alpha T_final - sum_{j>i} w_j g . f_j) / (1 - alpha_i)
  dL/df_i     = w_i g,          w_i = alpha_i T_i

where the suffix sum is ``g . features_acc`` minus the running prefix. ``alpha_i`` is chained
to opacity and to the exponent (means2d, conics) where ``o exp(power) < 0.99`` (the clamp has
zero slope). Per-block gradients are scatter-added into a ``[N, 6 + F]`` buffer, so no
``[pixels, Gaussians]`` array ever exists. This is the 3DGS backward with a front-to-back
recomputation instead of the back-to-front division ``T / (1 - alpha)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from kernels.rasterize import binning
from kernels.rasterize import common

# Defaults tuned on 2 CPU cores (experiments/bench_render.py, experiments/bench_fit.py): 8x8
# sub-tiles, 16 per chunk, blocks of 16 Gaussians (16k-element blocks). Forward + backward
# against whole tiles 32 per chunk: x3 on the fit's 4 x 128^2 frames, x1.7 on 256^2 / 10k and
# 512^2 / 50k Gaussians, on par at 1024^2 / 50k (larger Gaussians in pixels, and the split
# tests n_tiles x K list entries). Larger chunks mix busy and empty sub-tiles, stop later.
DEFAULT_TILES_PER_CHUNK = 16
DEFAULT_BLOCK_SIZE = 16
# Tiles are composited as sub-tiles of this size (see split_tile_lists).
DEFAULT_SUBTILE = 8
_NP = 6  # packed per-Gaussian parameters before the features: mx, my, a, b, c, o.


def _pack(means2d, conics, opacities, features):
  """[N + 1, 6 + F] parameters; the extra last row (opacity 0) is the padding Gaussian."""
  params = jnp.concatenate([means2d, conics, opacities[:, None], features], axis=-1)
  return jnp.concatenate([params, jnp.zeros_like(params[:1])], axis=0)


def _tile_pixels(tile_idx, tiles_x, tile_size, dtype):
  """Pixel centres ``(px, py)`` [C, P] of the tiles ``tile_idx`` [C] (row-major pixels)."""
  p = jnp.arange(tile_size * tile_size)
  ox = (tile_idx % tiles_x) * tile_size
  oy = (tile_idx // tiles_x) * tile_size
  px = (ox[:, None] + p[None, :] % tile_size).astype(dtype) + 0.5
  py = (oy[:, None] + p[None, :] // tile_size).astype(dtype) + 0.5
  return px, py


def _block(params, ids_blk, px, py, t, done):
  """Front-to-back compositing of one block of Gaussians for a chunk of tiles.

  Args:
    params: [N + 1, 6 + F] packed parameters.
    ids_blk: [C, B] ids (padding already mapped to N).
    px, py: [C, P] pixel centres.
    t: [C, P] transmittance before the block. done: [C, P] bool, pixel already stopped.

  Returns:
    dict of the block's quantities (arrays [C, P, B] unless noted).
  """
  g = params[ids_blk]  # [C, B, 6 + F]
  mx, my, ca, cb, cc, op = (g[:, None, :, i] for i in range(_NP))
  dx = mx - px[:, :, None]
  dy = my - py[:, :, None]
  power = common.gaussian_power(dx, dy, ca, cb, cc)
  gauss = jnp.exp(power)
  raw = op * gauss
  alpha = jnp.minimum(common.ALPHA_MAX, raw)
  valid = (power <= 0) & (alpha >= common.ALPHA_MIN) & ~done[:, :, None]
  a = jnp.where(valid, alpha, 0.0)
  t_incl = t[:, :, None] * jnp.cumprod(1.0 - a, axis=-1)
  used = valid & (t_incl >= common.T_MIN)
  a_used = jnp.where(used, alpha, 0.0)
  keep = jnp.cumprod(1.0 - a_used, axis=-1)
  t_before = t[:, :, None] * jnp.concatenate([jnp.ones_like(keep[..., :1]), keep[..., :-1]],
                                             axis=-1)
  return dict(
      feats=g[:, :, _NP:], dx=dx, dy=dy, conic=(ca, cb, cc), op=op, gauss=gauss, raw=raw,
      used=used, a_used=a_used, t_before=t_before, w=a_used * t_before,
      t_after=t * keep[..., -1],
      done=done | jnp.any(valid & (t_incl < common.T_MIN), axis=-1))


def _layout(ids, block_size, tiles_per_chunk):
  """Pads ids to whole blocks and chunks; busiest tiles first.

  Returns ``(ids [n_chunks, C, K_pad], tile_idx [n_chunks, C], lengths [n_chunks])`` where
  padding tiles have index ``n_tiles`` (their pixels fall outside the image) and ``lengths`` is
  each chunk's longest list.
  """
  n_tiles, k = ids.shape
  k_pad = math.ceil(k / block_size) * block_size
  n_chunks = math.ceil(n_tiles / tiles_per_chunk)
  pad_t = n_chunks * tiles_per_chunk - n_tiles
  ids = jnp.pad(ids, ((0, pad_t), (0, k_pad - k)), constant_values=-1)
  counts = jnp.sum(ids >= 0, axis=1)
  order = jnp.argsort(-counts, stable=True).astype(jnp.int32)
  ids = ids[order].reshape(n_chunks, tiles_per_chunk, k_pad)
  lengths = counts[order].reshape(n_chunks, tiles_per_chunk).max(axis=1)
  return ids, order.reshape(n_chunks, tiles_per_chunk), lengths


def _to_image(tiles, order, tiles_x, tiles_y, tile_size, width, height):
  """[n_chunks, C, P, ...] chunk-ordered tile values -> [H, W, ...] image."""
  flat = tiles.reshape((-1,) + tiles.shape[2:])
  flat = jnp.zeros_like(flat).at[order.reshape(-1)].set(flat)
  n_tiles = tiles_x * tiles_y
  img = flat[:n_tiles].reshape((tiles_y, tiles_x, tile_size, tile_size) + flat.shape[2:])
  img = jnp.swapaxes(img, 1, 2).reshape((tiles_y * tile_size, tiles_x * tile_size) +
                                        flat.shape[2:])
  return img[:height, :width]


def _to_tiles(img, order, tiles_x, tiles_y, tile_size):
  """Inverse of :func:`_to_image`: [H, W, ...] -> [n_chunks, C, P, ...] (zero padded)."""
  h, w = img.shape[:2]
  rest = img.shape[2:]
  img = jnp.pad(img, ((0, tiles_y * tile_size - h), (0, tiles_x * tile_size - w)) +
                ((0, 0),) * len(rest))
  t = img.reshape((tiles_y, tile_size, tiles_x, tile_size) + rest)
  t = jnp.swapaxes(t, 1, 2).reshape((tiles_x * tiles_y, tile_size * tile_size) + rest)
  t = jnp.concatenate([t, jnp.zeros((1,) + t.shape[1:], t.dtype)], axis=0)
  n_chunks, c = order.shape
  idx = jnp.minimum(order.reshape(-1), tiles_x * tiles_y)
  return t[idx].reshape((n_chunks, c) + t.shape[1:])


@functools.lru_cache(maxsize=None)
def _build(width: int, height: int, tile_size: int, tiles_per_chunk: int, block_size: int):
  tiles_x = math.ceil(width / tile_size)
  tiles_y = math.ceil(height / tile_size)
  n_pix = tile_size * tile_size

  def n_blocks(length):
    return (length + block_size - 1) // block_size

  def forward(ids, means2d, conics, opacities, features):
    params = _pack(means2d, conics, opacities, features)
    n = means2d.shape[0]
    dtype = params.dtype
    f = features.shape[-1]
    ids_c, order, lengths = _layout(ids, block_size, tiles_per_chunk)
    ids_c = jnp.where(ids_c < 0, n, ids_c)

    def chunk(args):
      ids_t, tile_idx, length = args
      px, py = _tile_pixels(tile_idx, tiles_x, tile_size, dtype)
      c = ids_t.shape[0]
      nb = n_blocks(length)

      def cond(state):
        k, _, done, _ = state
        return (k < nb) & ~jnp.all(done)

      def body(state):
        k, t, done, acc = state
        blk = jax.lax.dynamic_slice_in_dim(ids_t, k * block_size, block_size, axis=1)
        r = _block(params, blk, px, py, t, done)
        acc = acc + jnp.einsum("cpb,cbf->cpf", r["w"], r["feats"])
        return k + 1, r["t_after"], r["done"], acc

      init = (jnp.int32(0), jnp.ones((c, n_pix), dtype), jnp.zeros((c, n_pix), bool),
              jnp.zeros((c, n_pix, f), dtype))
      _, t, _, acc = jax.lax.while_loop(cond, body, init)
      return acc, t

    acc, t_final = jax.lax.map(chunk, (ids_c, order, lengths))
    acc_img = _to_image(acc, order, tiles_x, tiles_y, tile_size, width, height)
    t_img = _to_image(t_final, order, tiles_x, tiles_y, tile_size, width, height)
    return (acc_img, 1.0 - t_img), (ids, params, acc_img, t_img)

  def backward(res, cts):
    ids, params, acc_img, t_img = res
    g_acc, g_alpha = cts
    n = params.shape[0] - 1
    dtype = params.dtype
    ids_c, order, lengths = _layout(ids, block_size, tiles_per_chunk)
    ids_c = jnp.where(ids_c < 0, n, ids_c)
    to_tiles = functools.partial(_to_tiles, order=order, tiles_x=tiles_x, tiles_y=tiles_y,
                                 tile_size=tile_size)
    # sum_j w_j g.f_j over the whole list, from the forward output.
    s_total = to_tiles(jnp.sum(g_acc * acc_img, axis=-1))
    ga_t = to_tiles(g_alpha * t_img)  # g_alpha T_final
    g_t = to_tiles(g_acc)

    def chunk(grads, args):
      ids_t, tile_idx, length, s_tot, ga, g = args
      px, py = _tile_pixels(tile_idx, tiles_x, tile_size, dtype)
      c = ids_t.shape[0]
      nb = n_blocks(length)

      def cond(state):
        k, _, done, _, _ = state
        return (k < nb) & ~jnp.all(done)

      def body(state):
        k, t, done, prefix, grads = state
        blk = jax.lax.dynamic_slice_in_dim(ids_t, k * block_size, block_size, axis=1)
        r = _block(params, blk, px, py, t, done)
        gf = jnp.einsum("cpf,cbf->cpb", g, r["feats"])
        cum = prefix[:, :, None] + jnp.cumsum(r["w"] * gf, axis=-1)
        suffix = s_tot[:, :, None] - cum
        d_alpha = r["t_before"] * gf + (ga[:, :, None] - suffix) / (1.0 - r["a_used"])
        slope = r["used"] & (r["raw"] < common.ALPHA_MAX)
        d_alpha = jnp.where(slope, d_alpha, 0.0)
        d_power = d_alpha * r["raw"]
        d_op = jnp.sum(d_alpha * r["gauss"], axis=1)
        dx, dy = r["dx"], r["dy"]
        ca, cb, cc = r["conic"]
        d_mx = -jnp.sum(d_power * (ca * dx + cb * dy), axis=1)
        d_my = -jnp.sum(d_power * (cb * dx + cc * dy), axis=1)
        d_a = -0.5 * jnp.sum(d_power * dx * dx, axis=1)
        d_b = -jnp.sum(d_power * dx * dy, axis=1)
        d_c = -0.5 * jnp.sum(d_power * dy * dy, axis=1)
        d_f = jnp.einsum("cpb,cpf->cbf", r["w"], g)
        d_blk = jnp.concatenate(
            [jnp.stack([d_mx, d_my, d_a, d_b, d_c, d_op], axis=-1), d_f], axis=-1)
        grads = grads.at[blk.reshape(-1)].add(d_blk.reshape(-1, d_blk.shape[-1]))
        return k + 1, r["t_after"], r["done"], cum[:, :, -1], grads

      init = (jnp.int32(0), jnp.ones((c, n_pix), dtype), jnp.zeros((c, n_pix), bool),
              jnp.zeros((c, n_pix), dtype), grads)
      grads = jax.lax.while_loop(cond, body, init)[-1]
      return grads, None

    grads, _ = jax.lax.scan(chunk, jnp.zeros_like(params),
                            (ids_c, order, lengths, s_total, ga_t, g_t))
    grads = grads[:n]
    return (None, grads[:, 0:2], grads[:, 2:5], grads[:, 5], grads[:, _NP:])

  @jax.custom_vjp
  def composite(ids, means2d, conics, opacities, features):
    return forward(ids, means2d, conics, opacities, features)[0]

  composite.defvjp(forward, backward)
  return composite


def split_tile_lists(ids, means2d, conics, opacities, *, width: int, height: int,
                     tile_size: int, subtile: int):
  """Per-tile lists -> per-sub-tile lists holding only the entries that can draw there.

  Sub-tile ``s`` (``subtile`` pixels square, row-major over the ``ceil(W / subtile)`` x
  ``ceil(H / subtile)`` grid) keeps, in order, the entries of its parent tile's list whose
  ``alpha >= 1/255`` ellipse touches its pixel centres
  (:func:`binning.ellipse_touches_rect`). Every pixel then walks exactly the Gaussians it
  walked before minus some that are skipped at it anyway, so the image is unchanged.

  Args:
    ids: [n_tiles, K] int32 front-to-back ids per ``tile_size`` tile, -1 padded.
    means2d: [N, 2]; conics: [N, 3]; opacities: [N].
    width, height, tile_size, subtile: static; ``tile_size % subtile == 0``.

  Returns:
    [n_sub, K] int32 ids per sub-tile, -1 padded after the last.
  """
  ratio = tile_size // subtile
  n_tiles, k = ids.shape
  tiles_x = math.ceil(width / tile_size)
  sub_x, sub_y = math.ceil(width / subtile), math.ceil(height / subtile)
  # Each tile's entries are gathered once and tested against its ratio^2 sub-tiles.
  g = jnp.where(ids >= 0, ids, 0)
  m, cn = jax.lax.stop_gradient(means2d), jax.lax.stop_gradient(conics)
  thr = binning.ellipse_threshold(opacities)
  params = [x[g][:, :, None] for x in (m[:, 0], m[:, 1], cn[:, 0], cn[:, 1], cn[:, 2], thr)]
  t = jnp.arange(n_tiles, dtype=jnp.int32)
  q = jnp.arange(ratio * ratio, dtype=jnp.int32)
  ux = (t % tiles_x)[:, None] * ratio + q[None, :] % ratio  # [n_tiles, ratio^2]
  uy = (t // tiles_x)[:, None] * ratio + q[None, :] // ratio
  x0, x1, y0, y1 = binning.tile_pixel_bounds(ux[:, None], uy[:, None], width=width,
                                             height=height, tile_size=subtile)
  keep = (ids >= 0)[:, :, None] & binning.ellipse_touches_rect(*params, x0, x1, y0, y1)
  # Stable compaction: kept entries move to the front in their order.
  pos = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, k)  # [n_tiles, K, ratio^2]
  inside = (ux < sub_x) & (uy < sub_y)  # sub-tiles of edge tiles may lie off the image
  row = jnp.where(inside, uy * sub_x + ux, sub_x * sub_y)[:, None, :]
  out = jnp.full((sub_x * sub_y, k), -1, ids.dtype)
  return out.at[jnp.broadcast_to(row, pos.shape), pos].set(
      jnp.broadcast_to(ids[:, :, None], pos.shape), mode="drop")


def composite_xla(ids, means2d, conics, opacities, features, *, width: int, height: int,
                  tile_size: int = common.TILE_SIZE,
                  tiles_per_chunk: int = DEFAULT_TILES_PER_CHUNK,
                  block_size: int = DEFAULT_BLOCK_SIZE, subtile: int | None = DEFAULT_SUBTILE):
  """Composites the per-tile lists; see the module docstring for the contract.

  Args:
    ids: [n_tiles, K] int32 front-to-back Gaussian ids per tile, -1 padded after the last.
    means2d: [N, 2] pixels. conics: [N, 3]. opacities: [N]. features: [N, F].
    width, height, tile_size: static image and tile size, pixels.
    tiles_per_chunk, block_size: static work partition (speed only, results identical up to
      float rounding); ``tiles_per_chunk`` counts sub-tiles when ``subtile`` is used.
    subtile: static edge of the sub-tiles composited (:func:`split_tile_lists`; speed only);
      ignored unless it divides ``tile_size``; None composites whole tiles.

  Returns:
    ``(features_acc [H, W, F], alpha [H, W])``.
  """
  tiles_x = math.ceil(width / tile_size)
  tiles_y = math.ceil(height / tile_size)
  if ids.ndim != 2 or ids.shape[0] != tiles_x * tiles_y:
    raise ValueError(f"ids: expected [{tiles_x * tiles_y}, K] for a {width}x{height} image "
                     f"with {tile_size}px tiles, found {ids.shape}")
  if subtile is not None and subtile < tile_size and tile_size % subtile == 0:
    ids = split_tile_lists(ids, means2d, conics, opacities, width=width, height=height,
                           tile_size=tile_size, subtile=subtile)
    tile_size = subtile
  fn = _build(width, height, tile_size, min(tiles_per_chunk, ids.shape[0]),
              min(block_size, ids.shape[1]))
  return fn(ids, means2d, conics, opacities, features)
