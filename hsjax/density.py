"""Adaptive density control of the avatar inside its fixed capacity (3DGS, Kerbl et al. 2023).

3DGS grows and shrinks its point cloud: Gaussians whose view-space positional gradient,
averaged over the views that saw them, exceeds a threshold are *cloned* (small ones: a copy
that the optimiser pulls apart) or *split* (large ones: two children sampled from the parent's
density, scales divided by 1.6); nearly transparent or oversized Gaussians are *pruned*; every
few thousand steps opacities are reset low so that useless Gaussians fade and get pruned.

hsjax does the same with static shapes, so every function here jits once and never retraces:
the avatar has a fixed capacity N and an ``active`` mask; pruning clears ``active``, and a new
Gaussian is written into a free (inactive) slot. When there are more candidates than free
slots, the ones with the largest gradient win and the rest are counted in ``info["dropped"]``.
A split writes one child into the parent's slot and one into a free slot.

The optimiser state follows the Gaussians. Assumption: the optax state is built over a params
pytree that contains the avatar's parameters as an :class:`hsjax.avatar.Avatar` node (the
``params`` half of :func:`hsjax.avatar.split`, possibly inside a dict with the poses), so every
params-shaped moment in the state (Adam's ``mu``/``nu``, also inside ``optax.partition``,
``multi_transform``, ``masked``, ``chain``, ``inject_hyperparams``) holds an ``Avatar`` node with
arrays of leading size N in its per-Gaussian fields (or ``optax.MaskedNode`` where a transform
does not act). Those rows are reset to zero for every slot that was written (new clones, both
split children) or pruned, as 3DGS gives new points fresh Adam moments; scalar state (step
counts) and non-avatar parameters (poses, MLP weights) are untouched.

Typical loop (every ``densify_every`` steps during the first part of the fit)::

  stats = density.accumulate(stats, dL_dscreen_offsets, out.visible, out.radii,
                             image_size=(W, H))
  ...
  avatar, opt_state, info = density.densify_and_prune(avatar, opt_state, stats, key, config)
  stats = density.init_stats(avatar.num_gaussians)
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp

from hsjax import avatar as avatar_lib
from hsjax import rotations


@flax.struct.dataclass(kw_only=True)
class DensityStats:
  """Screen-space statistics accumulated between two densification steps."""

  grad_norm_sum: jax.Array  # [N] sum over visible views of |dL/dmeans2d| (NDC-like units).
  count: jax.Array  # [N] float number of views in which the Gaussian was visible.
  max_radii: jax.Array  # [N] largest screen radius seen, pixels.


@dataclasses.dataclass(frozen=True)
class DensityConfig:
  """Thresholds of density control (3DGS defaults where they apply)."""

  grad_threshold: float = 0.0002  # mean |view-space grad| to densify (3DGS, NDC units).
  percent_dense: float = 0.01  # split if max scale > this × extent, else clone (3DGS).
  extent: float = 1.0  # scene size, metres: a standing body's half-diagonal is about 1 m.
  min_opacity: float = 0.005  # prune below (3DGS).
  max_world_size: float | None = 0.1  # prune if max scale > this × extent (3DGS's 0.1).
  max_screen_size: float | None = None  # prune if max radius > this, pixels (3DGS: 20).
  split_scale_divisor: float = 1.6  # children's scales = parent's / this (3DGS's 0.8 · 2).
  min_views: int = 1  # only Gaussians seen at least this often are densified.


def init_stats(num_gaussians: int) -> DensityStats:
  """Zero statistics for a capacity of ``num_gaussians``."""
  zeros = jnp.zeros((num_gaussians,), jnp.float32)
  return DensityStats(grad_norm_sum=zeros, count=zeros, max_radii=zeros)


def accumulate(stats: DensityStats, screen_grad: jax.Array, visible: jax.Array,
               radii: jax.Array, *, image_size: tuple[int, int] | None = None) -> DensityStats:
  """Adds one step's screen-space gradients.

  Args:
    stats: running statistics.
    screen_grad: [N, 2] or [F, N, 2] gradient of the loss w.r.t. the projected means, pixels
      (``render(..., screen_offsets=...)``'s gradient), one row per view.
    visible: [N] or [F, N] bool, the renderer's ``visible``.
    radii: [N] or [F, N] screen radii, pixels.
    image_size: ``(width, height)``; if given, the gradient is scaled by ``(W/2, H/2)`` into
      normalised-device units as 3DGS/gsplat do, so ``grad_threshold = 0.0002`` applies at any
      resolution.

  Returns:
    Updated :class:`DensityStats`.
  """
  if screen_grad.ndim == 2:
    screen_grad, visible, radii = screen_grad[None], visible[None], radii[None]
  if screen_grad.shape[-1] != 2 or visible.shape != screen_grad.shape[:-1]:
    raise ValueError(f"accumulate: screen_grad must be [F, N, 2] and visible [F, N], found "
                     f"{screen_grad.shape} and {visible.shape}")
  if image_size is not None:
    screen_grad = screen_grad * jnp.asarray([image_size[0] / 2.0, image_size[1] / 2.0],
                                            screen_grad.dtype)
  vis = visible.astype(jnp.float32)
  norms = jnp.linalg.norm(screen_grad, axis=-1) * vis
  return DensityStats(
      grad_norm_sum=stats.grad_norm_sum + jnp.sum(norms, 0),
      count=stats.count + jnp.sum(vis, 0),
      max_radii=jnp.maximum(stats.max_radii,
                            jnp.max(jnp.where(visible, radii, 0).astype(jnp.float32), 0)))


def densify_and_prune(avatar: avatar_lib.Avatar, opt_state, stats: DensityStats,
                      key: jax.Array, config: DensityConfig = DensityConfig()):
  """One round of pruning, cloning and splitting, with the optimiser state remapped.

  Order: prune first (its slots become free), then densify the surviving candidates into free
  slots, largest average gradient first. Children and clones keep their parent's anchor
  (face, barycentrics) and skinning.

  Args:
    avatar: the full avatar (capacity N).
    opt_state: optax state over params that contain the avatar (see the module docstring), or
      None.
    stats: statistics since the last call.
    key: PRNG key (split children's positions).
    config: thresholds.

  Returns:
    ``(avatar, opt_state, info)``; ``info`` holds int32 scalars ``pruned``, ``cloned``,
    ``split``, ``dropped`` (candidates without a free slot) and ``active``.
  """
  n = avatar.num_gaussians
  log_max_scale = jnp.max(avatar.log_scales, -1)
  opacity = jax.nn.sigmoid(avatar.opacity_logits)
  prune = avatar.active & (opacity < config.min_opacity)
  if config.max_world_size is not None:
    prune |= avatar.active & (jnp.exp(log_max_scale) > config.max_world_size * config.extent)
  if config.max_screen_size is not None:
    prune |= avatar.active & (stats.max_radii > config.max_screen_size)
  active = avatar.active & ~prune

  mean_grad = stats.grad_norm_sum / jnp.maximum(stats.count, 1.0)
  candidate = active & (stats.count >= config.min_views) & (mean_grad >= config.grad_threshold)
  is_split = jnp.exp(log_max_scale) > config.percent_dense * config.extent

  # Pair the k-th strongest candidate with the k-th free slot (static shapes throughout).
  order = jnp.argsort(jnp.where(candidate, -mean_grad, jnp.inf))
  free_slots = jnp.argsort(active, stable=True)  # inactive slots first, by index
  served = jnp.minimum(jnp.sum(candidate), jnp.sum(~active))
  rank = jnp.arange(n)
  valid = rank < served
  src = order
  dst = jnp.where(valid, free_slots, n)  # n: out of range, dropped by the scatters

  def copy_rows(x):
    return x.at[dst].set(x[src], mode="drop")

  new = {f: copy_rows(getattr(avatar, f)) for f in avatar_lib.PER_GAUSSIAN_FIELDS}
  new["active"] = active.at[dst].set(True, mode="drop")
  nonrigid = avatar.nonrigid
  if nonrigid is not None and "latent" in nonrigid:
    nonrigid = {**nonrigid, "latent": copy_rows(nonrigid["latent"])}

  # Split: the parent's slot and its new slot both become children.
  served_src = jnp.zeros((n,), bool).at[src].set(valid)
  parent_split = served_src & is_split
  written = jnp.zeros((n,), bool).at[dst].set(True, mode="drop")
  child_split = jnp.zeros((n,), bool).at[dst].set(is_split[src], mode="drop")
  split_slot = parent_split | child_split
  noise = jax.random.normal(key, (n, 3), avatar.means.dtype)
  rot = rotations.quat_to_matrix(new["quats"])
  offset = jnp.einsum("nij,nj->ni", rot, jnp.exp(new["log_scales"]) * noise)
  new["means"] = jnp.where(split_slot[:, None], new["means"] + offset, new["means"])
  new["log_scales"] = jnp.where(split_slot[:, None],
                                new["log_scales"] - jnp.log(config.split_scale_divisor),
                                new["log_scales"])
  out = avatar.replace(nonrigid=nonrigid, **new)

  # Fresh optimiser moments wherever a slot changed meaning.
  reset = prune | written | parent_split
  opt_state = _map_avatar_moments(opt_state, n, lambda x: _zero_rows(x, reset))

  info = {
      "pruned": jnp.sum(prune).astype(jnp.int32),
      "cloned": jnp.sum(valid & ~is_split[src]).astype(jnp.int32),
      "split": jnp.sum(valid & is_split[src]).astype(jnp.int32),
      "dropped": (jnp.sum(candidate) - served).astype(jnp.int32),
      "active": jnp.sum(out.active).astype(jnp.int32),
  }
  return out, opt_state, info


def reset_opacity(avatar: avatar_lib.Avatar, opt_state, *, max_opacity: float = 0.01):
  """3DGS opacity reset: opacities above ``max_opacity`` drop to it; their moments are zeroed.

  Returns:
    ``(avatar, opt_state)``.
  """
  if not 0.0 < max_opacity < 1.0:
    raise ValueError(f"reset_opacity: max_opacity must be in (0, 1), found {max_opacity}")
  cap = math.log(max_opacity) - math.log1p(-max_opacity)
  out = avatar.replace(opacity_logits=jnp.minimum(avatar.opacity_logits, cap))
  n = avatar.num_gaussians
  everything = jnp.ones((n,), bool)
  opt_state = _map_avatar_moments(opt_state, n, lambda x: _zero_rows(x, everything),
                                  fields=("opacity_logits",), include_latent=False)
  return out, opt_state


def _zero_rows(x, rows: jax.Array):
  """Zeroes the rows ``rows [N]`` of a per-Gaussian array (anything else passes through)."""
  if not isinstance(x, jax.Array) or x.ndim == 0 or x.shape[0] != rows.shape[0]:
    return x
  mask = rows.reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(mask, jnp.zeros_like(x), x)


def _map_avatar_moments(opt_state, n: int, fn, fields=avatar_lib.PER_GAUSSIAN_FIELDS,
                        include_latent: bool = True):
  """Applies ``fn`` to the per-Gaussian fields of every Avatar node in ``opt_state``."""
  if opt_state is None:
    return None

  def visit(node):
    if not isinstance(node, avatar_lib.Avatar):
      return node
    changes = {}
    for f in fields:
      value = getattr(node, f)
      if isinstance(value, jax.Array) and value.ndim and value.shape[0] == n:
        changes[f] = fn(value)
    if include_latent:
      nonrigid = node.nonrigid
      if isinstance(nonrigid, dict) and isinstance(nonrigid.get("latent"), jax.Array):
        changes["nonrigid"] = {**nonrigid, "latent": fn(nonrigid["latent"])}
    return node.replace(**changes)

  return jax.tree.map(visit, opt_state, is_leaf=lambda x: isinstance(x, avatar_lib.Avatar))
