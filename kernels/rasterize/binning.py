"""Tile binning and depth ordering with static shapes.

Each visible Gaussian covers the tiles of its screen box ``means2d +- radii``. The result is,
for every 16x16 tile, the ids of the Gaussians whose box touches it, sorted front to back by
camera depth (ties by Gaussian index), padded with -1 to a static ``capacity`` K.

With ``conics`` and ``opacities`` the box pairs are tested exactly: a pair is kept only if
some pixel centre of the tile lies inside the Gaussian's ``alpha >= 1/255`` ellipse
``d^T conic d <= 2 ln(255 o)`` (:func:`ellipse_touches_rect`; the opacity-aware bound of
gsplat's radius, applied to the ellipse instead of its bounding box). A dropped pair could
only have been skipped by the compositor's 1/255 rule, so a tile that does not overflow
renders the same; one that overflows keeps its K nearest Gaussians that can draw there
rather than the K nearest boxes (a box's corners cover tiles the ellipse never reaches: on
the fit's avatar about a fifth of the box pairs).

Algorithm (all static shapes, O(N log N + M log M)):

1. Exact per-tile counts from a 2D difference array of the boxes (independent of any
   capacity, so the overflow is always exact).
2. Gaussians are sorted by depth and their (Gaussian, tile) pairs are enumerated, in that
   order, into a buffer of ``max_intersections`` M slots (default
   ``n_tiles * min(K, 256)``: room for an average of 256 Gaussians per tile).
3. A stable sort by tile id groups the pairs per tile and keeps the depth order inside each
   tile (3DGS sorts one ``tile << 32 | depth`` key; this is the same order).
   With the ellipse test, pairs that fail it are moved to the end before this sort.
4. Each tile keeps its first (nearest) K pairs.

Overflow: ``overflow = sum_t counts_t - sum_t min(stored_t, K)``, the number of
(Gaussian, tile) intersections that are not rendered. When the pair buffer holds all pairs
(``num_intersections <= M``) this equals ``sum_t max(counts_t - K, 0)``. If the pair buffer
itself overflows, the pairs of the globally farthest Gaussians are the ones dropped, and they
are counted in ``overflow`` too. M costs memory and the sort time (O(M log M), the largest
part of binning), which is why it does not default to the worst case ``n_tiles * K``.

Choosing K: it must cover the number of Gaussians whose box touches a tile (``counts``;
read ``max(counts)`` on a representative frame and round up). Overflow is not benign even
for opaque surfaces: a tile straddling two surfaces keeps the nearest K Gaussians of the
whole tile, so the pixels of the farther surface can lose all of theirs. A large K costs
memory (``n_tiles * K`` ids and pairs) and binning time (the pair sort is over
``n_tiles * K`` slots), but little compositing time: the backends walk each tile's actual
count.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp

from kernels.rasterize import common

# Default pair-buffer room per tile (see bin_gaussians); the avatar workloads of scenes.py
# average 20-150 Gaussians per tile.
DEFAULT_MEAN_TILE_LOAD = 256


@flax.struct.dataclass(kw_only=True)
class TileLists:
  """Per-tile depth-sorted Gaussian lists; tiles are row-major (t = ty * tiles_x + tx)."""

  ids: jax.Array  # [n_tiles, K] int32 Gaussian ids, front to back, -1 padded.
  counts: jax.Array  # [n_tiles] int32 true number of Gaussians touching each tile (may be > K).
  overflow: jax.Array  # [] int32 intersections not rendered (see module docstring).
  num_intersections: jax.Array  # [] int32 total (Gaussian, tile) intersections.


def tile_grid(width: int, height: int, tile_size: int = common.TILE_SIZE) -> tuple[int, int]:
  """``(tiles_x, tiles_y)`` covering a ``width`` x ``height`` image."""
  return math.ceil(width / tile_size), math.ceil(height / tile_size)


def tile_ranges(means2d, radii, *, width: int, height: int, tile_size: int = common.TILE_SIZE):
  """Tile box of every Gaussian: ``(tx0, tx1, ty0, ty1)`` [N] int32, end exclusive.

  Culled Gaussians (radius 0) get empty boxes. A pixel whose centre lies within the screen
  box ``[m - r, m + r]`` always lies in one of these tiles.
  """
  tiles_x, tiles_y = tile_grid(width, height, tile_size)
  radii = jnp.asarray(radii)
  if radii.ndim == 1:
    radii = jnp.stack([radii, radii], axis=-1)
  visible = (radii[:, 0] > 0) & (radii[:, 1] > 0)
  m = jnp.where(visible[:, None], jax.lax.stop_gradient(means2d), 0.0)
  r = radii.astype(m.dtype)

  def axis_range(lo, hi, n):
    t0 = jnp.clip(jnp.floor(lo / tile_size), 0, n).astype(jnp.int32)
    t1 = jnp.clip(jnp.ceil(hi / tile_size), 0, n).astype(jnp.int32)
    return jnp.where(visible, t0, 0), jnp.where(visible, t1, 0)

  tx0, tx1 = axis_range(m[:, 0] - r[:, 0], m[:, 0] + r[:, 0], tiles_x)
  ty0, ty1 = axis_range(m[:, 1] - r[:, 1], m[:, 1] + r[:, 1], tiles_y)
  return tx0, tx1, ty0, ty1


def ellipse_threshold(opacities):
  """[N] largest ``q = d^T conic d`` where ``o exp(-q / 2) >= 1/255``: ``2 ln(255 o)``.

  Negative where ``o < 1/255`` (no pixel can pass the 3DGS alpha test).
  """
  o = jax.lax.stop_gradient(opacities)
  return 2.0 * jnp.log(jnp.maximum(o, 1e-30) / common.ALPHA_MIN)


def ellipse_touches_rect(mx, my, a, b, c, threshold, x0, x1, y0, y1):
  """Whether some point of the rectangle ``[x0, x1] x [y0, y1]`` has ``q <= threshold``.

  ``q(d) = a dx^2 + 2 b dx dy + c dy^2`` with ``d = m - p`` is the Gaussian's exponent
  (``power = -q / 2``, :func:`common.gaussian_power`). q is convex, so its minimum over the
  rectangle is 0 when the centre lies inside, else on an edge, where it is the 1D minimum
  clamped to the edge. The test is exact up to a float tolerance that only ever accepts
  more (a rounding error cannot drop a pixel the compositor would draw).

  Args:
    mx, my, a, b, c, threshold: Gaussian centre, conic and :func:`ellipse_threshold`
      (broadcastable arrays).
    x0, x1, y0, y1: rectangle bounds, pixels (x0 <= x1, y0 <= y1; broadcastable).

  Returns:
    bool array of the broadcast shape.
  """
  u0, u1 = x0 - mx, x1 - mx  # range of -dx over the rectangle
  v0, v1 = y0 - my, y1 - my
  safe_a = jnp.where(a > 0, a, 1.0)
  safe_c = jnp.where(c > 0, c, 1.0)
  candidates = [(u, jnp.clip(-b * u / safe_c, v0, v1)) for u in (u0, u1)]  # vertical edges
  candidates += [(jnp.clip(-b * v / safe_a, u0, u1), v) for v in (v0, v1)]  # horizontal
  best, scale = jnp.inf, 0.0
  for u, v in candidates:
    terms = (a * u * u, 2.0 * b * u * v, c * v * v)
    best = jnp.minimum(best, terms[0] + terms[1] + terms[2])
    scale = jnp.maximum(scale, jnp.abs(terms[0]) + jnp.abs(terms[1]) + jnp.abs(terms[2]))
  inside = (u0 <= 0) & (u1 >= 0) & (v0 <= 0) & (v1 >= 0)
  # Float32 rounding of q is a few ulps of its largest term; 1e-4 of them is ample.
  return inside | (best <= threshold + 1e-4 * scale + 1e-4)


def tile_pixel_bounds(tx, ty, *, width: int, height: int, tile_size: int):
  """Pixel-centre extent ``(x0, x1, y0, y1)`` of tiles ``(tx, ty)`` (clipped to the image)."""
  x0 = tx * tile_size + 0.5
  y0 = ty * tile_size + 0.5
  x1 = jnp.minimum((tx + 1) * tile_size, width) - 0.5
  y1 = jnp.minimum((ty + 1) * tile_size, height) - 0.5
  return x0, x1, y0, y1


def _pairs_touch(gid, tile, means2d, conics, opacities, *, width, height, tile_size):
  """[M] bool: pair (gid, tile) passes :func:`ellipse_touches_rect` (tile may be n_tiles)."""
  tiles_x, _ = tile_grid(width, height, tile_size)
  m, cn = jax.lax.stop_gradient(means2d), jax.lax.stop_gradient(conics)
  thr = ellipse_threshold(opacities)
  x0, x1, y0, y1 = tile_pixel_bounds(tile % tiles_x, tile // tiles_x, width=width,
                                     height=height, tile_size=tile_size)
  return ellipse_touches_rect(m[gid, 0], m[gid, 1], cn[gid, 0], cn[gid, 1], cn[gid, 2],
                              thr[gid], x0, x1, y0, y1)


def bin_gaussians(means2d, radii, depths, *, width: int, height: int,
                  tile_size: int = common.TILE_SIZE, capacity: int,
                  max_intersections: int | None = None, conics=None,
                  opacities=None) -> TileLists:
  """Builds the per-tile, front-to-back Gaussian id lists.

  Args:
    means2d: [N, 2] screen centres, pixels.
    radii: [N] or [N, 2] int32 box half-widths, pixels (0 = culled), from :func:`project`.
    depths: [N] camera depths (sort key; ties broken by index).
    width, height: image size, pixels (static).
    tile_size: tile edge, pixels (static).
    capacity: K, the static per-tile list length.
    max_intersections: static size M of the pair buffer; default ``n_tiles * min(K, 256)``.
      ``n_tiles * K`` is exact whenever no tile overflows.
    conics, opacities: optional [N, 3] and [N]; when given, a (Gaussian, tile) pair is kept
      only if the Gaussian's ``alpha >= 1/255`` ellipse touches the tile's pixel centres
      (:func:`ellipse_touches_rect`), not merely its box: the pairs dropped cannot draw a
      pixel, so tiles hold fewer entries and overflow less. Without them: boxes (3DGS).

  Returns:
    :class:`TileLists`.
  """
  if capacity < 1:
    raise ValueError(f"capacity: expected a positive int, found {capacity}")
  tiles_x, tiles_y = tile_grid(width, height, tile_size)
  n_tiles = tiles_x * tiles_y
  n = means2d.shape[0]
  if max_intersections is None:
    m_slots = n_tiles * min(capacity, DEFAULT_MEAN_TILE_LOAD)
  else:
    m_slots = int(max_intersections)

  tx0, tx1, ty0, ty1 = tile_ranges(means2d, radii, width=width, height=height,
                                   tile_size=tile_size)
  nx, ny = tx1 - tx0, ty1 - ty0
  n_pairs = nx * ny  # [N]; 0 for culled Gaussians.
  has = n_pairs > 0

  # 1. Exact per-tile counts: +1/-1 at the box corners, then a 2D prefix sum.
  diff = jnp.zeros((tiles_y + 1, tiles_x + 1), jnp.int32)
  one = has.astype(jnp.int32)
  diff = diff.at[ty0, tx0].add(one).at[ty0, tx1].add(-one)
  diff = diff.at[ty1, tx0].add(-one).at[ty1, tx1].add(one)
  counts = jnp.cumsum(jnp.cumsum(diff, axis=0), axis=1)[:tiles_y, :tiles_x].reshape(-1)

  # 2. Enumerate pairs Gaussian by Gaussian, nearest first.
  key = jnp.where(has, jax.lax.stop_gradient(depths), jnp.inf)
  order = jnp.argsort(key, stable=True).astype(jnp.int32)
  n_sorted = n_pairs[order]
  ends = jnp.cumsum(n_sorted)
  starts = ends - n_sorted
  total = ends[-1] if n else jnp.int32(0)
  slot = jnp.arange(m_slots, dtype=jnp.int32)
  # owner[m] = position (in depth order) of the Gaussian that emits pair m: scatter each
  # position at its start slot, then a running max fills the slots in between.
  write_at = jnp.where((n_sorted > 0) & (starts < m_slots), starts, m_slots)
  owner = jnp.zeros((m_slots,), jnp.int32).at[write_at].max(
      jnp.arange(n, dtype=jnp.int32), mode="drop")
  owner = jax.lax.cummax(owner)
  gid = order[owner]
  local = slot - starts[owner]
  width_g = jnp.maximum(nx[gid], 1)
  tile = (ty0[gid] + local // width_g) * tiles_x + tx0[gid] + local % width_g
  valid = slot < total
  tile = jnp.where(valid, tile, n_tiles)  # empty slots sort last.
  box_stored = None
  if conics is not None:
    box_stored = jnp.zeros((n_tiles + 1,), jnp.int32).at[tile].add(1)[:n_tiles]
    tile = jnp.where(_pairs_touch(gid, tile, means2d, conics, opacities, width=width,
                                  height=height, tile_size=tile_size), tile, n_tiles)

  # 3. Group by tile; the stable sort keeps the depth order inside a tile.
  tile_sorted, gid_sorted = jax.lax.sort((tile, gid), num_keys=1, is_stable=True)

  # 4. First K entries of every tile.
  tile_ids = jnp.arange(n_tiles, dtype=jnp.int32)
  first = jnp.searchsorted(tile_sorted, tile_ids, side="left").astype(jnp.int32)
  stored = jnp.searchsorted(tile_sorted, tile_ids, side="right").astype(jnp.int32) - first
  kept = jnp.minimum(stored, capacity)
  k = jnp.arange(capacity, dtype=jnp.int32)
  idx = jnp.minimum(first[:, None] + k[None, :], m_slots - 1)
  ids = jnp.where(k[None, :] < kept[:, None], gid_sorted[idx], -1)

  if box_stored is not None:
    # Enumerated box pairs are replaced by those that passed the ellipse test; pairs beyond
    # the buffer (if any) keep their box count, an upper bound.
    counts = counts - box_stored + stored
  num_intersections = jnp.sum(counts)
  overflow = num_intersections - jnp.sum(kept)
  return TileLists(ids=ids, counts=counts, overflow=overflow.astype(jnp.int32),
                   num_intersections=num_intersections.astype(jnp.int32))
