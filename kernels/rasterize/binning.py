"""Tile binning and depth ordering with static shapes.

Each visible Gaussian covers the tiles of its screen box ``means2d +- radii``. The result is,
for every 16x16 tile, the ids of the Gaussians whose box touches it, sorted front to back by
camera depth (ties by Gaussian index), padded with -1 to a static ``capacity`` K.

Algorithm (all static shapes, O(N log N + M log M)):

1. Exact per-tile counts from a 2D difference array of the boxes (independent of any
   capacity, so the overflow is always exact).
2. Gaussians are sorted by depth and their (Gaussian, tile) pairs are enumerated, in that
   order, into a buffer of ``max_intersections`` M slots (default
   ``n_tiles * min(K, 256)``: room for an average of 256 Gaussians per tile).
3. A stable sort by tile id groups the pairs per tile and keeps the depth order inside each
   tile (3DGS sorts one ``tile << 32 | depth`` key; this is the same order).
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


def bin_gaussians(means2d, radii, depths, *, width: int, height: int,
                  tile_size: int = common.TILE_SIZE, capacity: int,
                  max_intersections: int | None = None) -> TileLists:
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

  num_intersections = jnp.sum(counts)
  overflow = num_intersections - jnp.sum(kept)
  return TileLists(ids=ids, counts=counts, overflow=overflow.astype(jnp.int32),
                   num_intersections=num_intersections.astype(jnp.int32))
