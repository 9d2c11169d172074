"""Slow, obviously-correct compositors: the oracles of the tests.

Both walk, for every pixel, a depth-sorted list of Gaussians with the 3DGS ``renderCUDA``
rules (see :mod:`kernels.rasterize.common`), written as dense array code and differentiated by
plain autodiff:

* :func:`rasterize_reference` brute force: every pixel x every (non-culled) Gaussian, sorted by
  depth. No tiles, no capacity, so it checks projection + binning + compositing together.
* :func:`composite_reference` the composite contract of the backends (tile id lists in,
  ``(features_acc, alpha)`` out): every pixel walks its own tile's list.

The 3DGS stop rule ("stop before the Gaussian whose compositing would take T below 1e-4")
is a prefix mask: with ``a_i`` the alphas of the valid entries, the inclusive transmittance
``T_i = prod_{k<=i} (1 - a_k)`` is non-increasing, so entry i is composited iff it is valid and
``T_i >= T_MIN``. The composited transmittance is then ``exp(cumsum(log(1 - a)))``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kernels.rasterize import common


def _composite_lists(dx, dy, conics, opacities, features, valid):
  """Composites per-pixel lists (last axis L, front to back).

  Args:
    dx, dy: [P, L] offsets mean - pixel centre.
    conics: [P, L, 3]; opacities: [P, L]; features: [P, L, F]; valid: [P, L] bool.

  Returns:
    ``(acc [P, F], alpha [P])``.
  """
  power = common.gaussian_power(dx, dy, conics[..., 0], conics[..., 1], conics[..., 2])
  alpha, _ = common.gaussian_alpha(power, opacities)
  valid = valid & (power <= 0) & (alpha >= common.ALPHA_MIN)
  a = jnp.where(valid, alpha, 0.0)
  t_incl = jnp.cumprod(1.0 - jax.lax.stop_gradient(a), axis=-1)
  used = valid & (t_incl >= common.T_MIN)
  a = jnp.where(used, alpha, 0.0)
  # Transmittance as exp(sum log(1 - a)): the same product, with a cheap, division-free
  # autodiff (a reverse cumulative sum); alpha <= 0.99 keeps the logs finite.
  log_keep = jnp.log1p(-a)
  log_t = jnp.cumsum(log_keep, axis=-1)
  t_before = jnp.exp(log_t - log_keep)
  w = a * t_before
  acc = jnp.einsum("pl,plf->pf", w, features)
  return acc, 1.0 - jnp.exp(log_t[:, -1])


def rasterize_reference(means2d, conics, opacities, features, depths, radii, *, width: int,
                        height: int, rows_per_chunk: int = 8):
  """Brute-force compositing of all visible Gaussians at every pixel.

  Args:
    means2d: [N, 2] pixels; conics: [N, 3]; opacities: [N]; features: [N, F];
    depths: [N] sort key; radii: [N] or [N, 2] (0 = culled, excluded).
    width, height: image size (static).
    rows_per_chunk: image rows evaluated at once (memory ``rows * W * N`` floats; each
      chunk is rematerialised in the backward pass).

  Returns:
    ``(features_acc [H, W, F], alpha [H, W])``.
  """
  radii = jnp.asarray(radii)
  visible = radii > 0 if radii.ndim == 1 else jnp.all(radii > 0, axis=-1)
  order = jnp.argsort(jnp.where(visible, jax.lax.stop_gradient(depths), jnp.inf), stable=True)
  m, cn, o, f, vis = (x[order] for x in (means2d, conics, opacities, features, visible))
  dtype = means2d.dtype
  n_chunks = math.ceil(height / rows_per_chunk)
  xs, ys = common.pixel_centres(width, n_chunks * rows_per_chunk, dtype)
  xs = xs.reshape(n_chunks, rows_per_chunk * width)
  ys = ys.reshape(n_chunks, rows_per_chunk * width)

  @jax.checkpoint
  def chunk(args):
    px, py = args
    dx = m[None, :, 0] - px[:, None]
    dy = m[None, :, 1] - py[:, None]
    p = px.shape[0]
    return _composite_lists(dx, dy, jnp.broadcast_to(cn, (p,) + cn.shape),
                            jnp.broadcast_to(o, (p,) + o.shape),
                            jnp.broadcast_to(f, (p,) + f.shape),
                            jnp.broadcast_to(vis, (p,) + vis.shape))

  acc, alpha = jax.lax.map(chunk, (xs, ys))
  acc = acc.reshape(-1, width, features.shape[-1])[:height]
  return acc, alpha.reshape(-1, width)[:height]


def composite_reference(ids, means2d, conics, opacities, features, *, width: int, height: int,
                        tile_size: int = common.TILE_SIZE):
  """The composite contract, densely: each pixel walks its tile's list ``ids``.

  Args:
    ids: [n_tiles, K] int32 front-to-back Gaussian ids per tile, -1 padded (row-major tiles).
    means2d: [N, 2]; conics: [N, 3]; opacities: [N]; features: [N, F].
    width, height, tile_size: static.

  Returns:
    ``(features_acc [H, W, F], alpha [H, W])``; memory O(H W K).
  """
  tiles_x = math.ceil(width / tile_size)
  xs, ys = common.pixel_centres(width, height, means2d.dtype)
  tile = (jnp.arange(height)[:, None] // tile_size) * tiles_x + (
      jnp.arange(width)[None, :] // tile_size)
  lists = ids[tile.reshape(-1)]  # [P, K]
  valid = lists >= 0
  g = jnp.where(valid, lists, 0)
  dx = means2d[g, 0] - xs.reshape(-1, 1)
  dy = means2d[g, 1] - ys.reshape(-1, 1)
  acc, alpha = _composite_lists(dx, dy, conics[g], opacities[g], features[g], valid)
  return acc.reshape(height, width, -1), alpha.reshape(height, width)
