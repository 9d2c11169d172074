"""One optimisation step, pure: ``train_step(state, data, batch, body_model) -> (state, out)``.

The trainable pytree (:class:`FitParams`: the avatar's parameters and the per-frame poses),
the complete state a checkpoint holds (:class:`FitState`), the optimiser that gives every
parameter group its own learning rate and schedule (:func:`make_optimizer`), the frames each
step draws (:func:`sample_frames`, evaluated by the host, which feeds their observations as a
:class:`~hsjax.fit.data.FrameBatch`), and the step itself: run the forward stages, evaluate
the loss, update with Optax.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import camel
from hsjax import density as density_lib
from hsjax import forward as forward_lib
from hsjax import losses as losses_lib
from hsjax.body import SMPLParams
from hsjax.fit.config import FROZEN
from hsjax.fit.config import POSE_GROUPS
from hsjax.fit.config import FitConfig
from hsjax.fit.data import FitData
from hsjax.fit.data import FrameBatch


@flax.struct.dataclass(kw_only=True)
class FitParams:
  """Everything the optimiser updates."""

  # The trainable half of an hsjax.avatar.Avatar (hsjax.avatar.split: buffers are None).
  avatar: Any
  poses: SMPLParams  # betas [B], body_pose [T, 23, 3], global_orient [T, 3], transl [T, 3].


@flax.struct.dataclass(kw_only=True)
class FitState:
  """The complete state of a fit: what a checkpoint stores."""

  params: FitParams
  buffers: Any  # the untrained half of the hsjax.avatar.Avatar (anchors, active mask, ...).
  opt_state: Any  # optax state of the multi-transform over `params`.
  density: Any  # hsjax.density statistics pytree (gradient accumulators).
  step: jax.Array  # [] int32 steps completed.
  camel_nearest: jax.Array  # [N] int32 nearest template vertex of each Gaussian (CAMEL).
  key: jax.Array  # [2] uint32 raw data of the fit's base PRNG key (jax.random.key_data).


@flax.struct.dataclass(kw_only=True)
class StepOutput:
  """What one step reports to the host."""

  total: jax.Array  # [] weighted loss before the update.
  values: dict  # name -> [] unweighted term values.
  grads_finite: jax.Array  # [] bool, every gradient entry finite.
  overflow: jax.Array  # [] int32 tile-capacity overflow summed over the minibatch.


def resolve_losses(config: FitConfig, losses: losses_lib.Losses | None = None) -> dict:
  """``losses`` (default ``hsjax.losses.DEFAULT_LOSSES``) with ``config.loss_weights``."""
  base = losses_lib.DEFAULT_LOSSES if losses is None else losses
  return losses_lib.with_weights(base, config.loss_weights)


def param_labels(params: FitParams, config: FitConfig) -> FitParams:
  """The optimiser group of every leaf: an avatar group, a pose group, or ``"frozen"``.

  Avatar groups are :func:`hsjax.avatar.param_labels`' names (``means``, ``scales``,
  ``quats``, ``opacity``, ``sh``, ``skinning``, ``nonrigid``); a group without an entry in
  ``config.avatar_lrs`` (or every avatar group when ``train_avatar`` is off) is frozen.
  """
  lrs = dict(config.avatar_lrs)

  def avatar_label(name):
    return name if (config.train_avatar and name in lrs) else FROZEN

  avatar_labels = jax.tree_util.tree_map(avatar_label, avatar_lib.param_labels(params.avatar))
  train = {"global_orient": config.train_global_orient, "body_pose": config.train_body_pose,
           "transl": config.train_transl, "betas": config.train_betas}
  pose_labels = SMPLParams(**{g: g if train[g] else FROZEN for g in POSE_GROUPS})
  return FitParams(avatar=avatar_labels, poses=pose_labels)


def make_optimizer(config: FitConfig) -> optax.GradientTransformation:
  """Per-group Adam with clipping and schedules, as one ``optax.multi_transform``.

  * avatar groups: constant LR, except ``means`` (exponential decay to
    ``means_lr_final_fraction``, as 3DGS);
  * pose groups: cosine decay from their LR to ``pose_lr_final_fraction`` of it from the
    end of the warm-up to ``config.pose_end``, and masked to zero outside that window
    (``optax.transforms.conditionally_mask``: the inner Adam state does not move either);
  * every group clips its own gradient's global norm to ``clip_norm`` first, so a large
    photometric gradient on the avatar cannot shrink the poses' step or vice versa;
  * ``"frozen"`` leaves get ``optax.set_to_zero()``.

  The labels are computed from the parameters (:func:`param_labels`), so the transformation
  depends on ``config`` alone.
  """

  def clipped(tx):
    if config.clip_norm > 0:
      return optax.chain(optax.clip_by_global_norm(config.clip_norm), tx)
    return tx

  transforms = {FROZEN: optax.set_to_zero()}
  for name in POSE_GROUPS:
    lr = getattr(config, f"lr_{name}")
    decay = max(config.pose_end - config.warmup_steps, 1)
    schedule = optax.cosine_decay_schedule(lr, decay, alpha=config.pose_lr_final_fraction)
    transforms[name] = optax.transforms.conditionally_mask(
        clipped(optax.adam(schedule)),
        lambda count, w=config.warmup_steps, e=config.pose_end: (count >= w) & (count < e))
  for name, lr in config.avatar_lrs:
    if name == "means":
      schedule = optax.exponential_decay(
          lr, transition_steps=config.steps, decay_rate=config.means_lr_final_fraction)
    else:
      schedule = optax.constant_schedule(lr)
    # eps 1e-15 as 3DGS: tiny gradients of far-off Gaussians still move them.
    transforms[name] = clipped(optax.adam(schedule, eps=1e-15))
  return optax.multi_transform(transforms, lambda p: param_labels(p, config))


def _stop_frozen(params: FitParams, config: FitConfig) -> FitParams:
  """Stops gradients of frozen pose groups so the backward pass skips them entirely."""
  sg = jax.lax.stop_gradient
  poses = params.poses
  poses = poses.replace(
      global_orient=poses.global_orient if config.train_global_orient else sg(
          poses.global_orient),
      body_pose=poses.body_pose if config.train_body_pose else sg(poses.body_pose),
      transl=poses.transl if config.train_transl else sg(poses.transl),
      betas=poses.betas if config.train_betas else sg(poses.betas))
  avatar = params.avatar if config.train_avatar else sg(params.avatar)
  return params.replace(avatar=avatar, poses=poses)


def _density_init(config: FitConfig):
  """Density statistics, or None when density control is off (nothing is accumulated)."""
  if config.densify_every <= 0:
    return None
  return density_lib.init_stats(config.num_gaussians)


def init_state(data: FitData, config: FitConfig, body_model: body_lib.BodyModel,
               key: jax.Array) -> FitState:
  """A fresh :class:`FitState`: avatar on the template surface, poses at the HMR estimates.

  The avatar's initial colour is the mean colour inside the person masks
  (``data.mean_color``), so the first steps are spent on detail rather than on a global
  colour shift.
  """
  mean_color = data.mean_color
  avatar = avatar_lib.init_avatar(
      jax.random.fold_in(key, 0), body_model, config.num_gaussians,
      sh_degree=config.sh_degree, active_fraction=config.active_fraction,
      init_color=tuple(float(c) for c in np.clip(np.asarray(mean_color), 0.02, 0.98)),
      learn_skinning=config.learn_skinning, nonrigid=config.nonrigid)
  avatar_params, buffers = avatar_lib.split(avatar)
  params = FitParams(avatar=avatar_params, poses=data.init)
  tx = make_optimizer(config)
  return FitState(params=params, buffers=buffers, opt_state=tx.init(params),
                  density=_density_init(config), step=jnp.zeros((), jnp.int32),
                  camel_nearest=camel_nearest_for(avatar, body_model, config),
                  key=jax.random.key_data(key))


def camel_nearest_for(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                   config: FitConfig) -> jax.Array:
  """[N] int32 the CAMEL reference vertex of each Gaussian (see FitConfig)."""
  if config.camel_refresh_every <= 0:
    return avatar_lib.anchor_vertex_ids(avatar, body_model)
  return nearest_template_vertices(avatar.means, body_model)


@jax.jit
def nearest_template_vertices(means: jax.Array, body_model: body_lib.BodyModel) -> jax.Array:
  """[N, 3] canonical centres -> [N] int32 index of the nearest template vertex (exact)."""
  idx, _ = camel.nearest_points(jax.lax.stop_gradient(means), body_model.v_template, chunk=256)
  return idx


def sample_frames(key: jax.Array, step: jax.Array, frame_valid: jax.Array, batch: int
                  ) -> jax.Array:
  """[batch] int32 frame indices of ``step``: epochs of random permutations of valid frames.

  Epoch ``e`` shuffles the valid frames with ``fold_in(key, e)`` and hands them out
  ``batch`` at a time (a trailing remainder smaller than a batch is skipped that epoch), so
  each frame is rendered about once per epoch and the draw is a pure function of
  ``(key, step)`` — the basis of exact resume.
  """
  t = frame_valid.shape[0]
  per_epoch = jnp.maximum(jnp.sum(frame_valid) // batch, 1)
  epoch, position = step // per_epoch, step % per_epoch
  u = jax.random.uniform(jax.random.fold_in(key, epoch), (t,))
  order = jnp.argsort(jnp.where(frame_valid, u, 2.0))
  return jax.lax.dynamic_slice(order, (position * batch,), (batch,)).astype(jnp.int32)


def frame_batch(data: FitData, batch: FrameBatch) -> losses_lib.Frame:
  """The observations of ``batch``'s F frames as the loss terms see them."""
  frames = batch.frames
  return losses_lib.Frame(image=batch.image, mask=batch.mask, depth=batch.depth,
                          depth_K=data.depth_K[frames], depth_weight=data.depth_weight,
                          depth_is_metric=data.depth_is_metric,
                          keypoints=data.keypoints[frames],
                          keypoint_conf=data.keypoint_conf[frames], index=frames)


def loss_fn(params: FitParams, buffers, data: FitData, batch: FrameBatch,
            body_model: body_lib.BodyModel, step: jax.Array, screen_offsets: jax.Array, *,
            config: FitConfig, losses: losses_lib.Losses,
            camel_nearest: jax.Array | None = None):
  """Loss of a minibatch: the forward stages (``hsjax.forward``), then the terms.

  Args:
    params: trainable parameters.
    buffers: the avatar's buffers.
    data: the subject's per-frame parameters.
    batch: the observations of the step's F frames.
    body_model: the body model.
    step: [] int32 current step (for weight schedules).
    screen_offsets: [F, N, 2] zeros; their gradient is the screen-space positional gradient
      density control accumulates.
    config, losses: static.
    camel_nearest: [N] int32 CAMEL reference vertices (``FitState.camel_nearest``); None:
      the terms use the anchor vertices.

  Returns:
    ``(total, (values, render))``.
  """
  params = _stop_frozen(params, config)
  avatar = avatar_lib.combine(params.avatar, buffers)
  poses = params.poses
  frames = batch.frames
  cameras = data.cameras(frames)
  out = forward_lib.forward(avatar, body_model, poses.select(frames), cameras,
                            config.render_settings, screen_offsets)
  ctx = losses_lib.StepContext(
      step=step, body=out.body, deformed=out.deformed,
      sequence_joints=forward_lib.sequence_joints(body_model, poses),
      frame_valid=data.frame_valid, init=data.init, body_model=body_model, camera=cameras,
      camel_nearest=camel_nearest, render_settings=config.render_settings)
  full = FitParams(avatar=avatar, poses=poses)
  # Terms that no weight switches on cost nothing: XLA removes what no term reads.
  total, values = losses_lib.total_loss(losses, out.render, frame_batch(data, batch), full,
                                        ctx)
  return total, (values, out.render)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def step_frames(key_data: jax.Array, step: jax.Array, frame_valid: jax.Array, batch: int
                ) -> jax.Array:
  """[batch] int32 the frames that step ``step`` of a fit draws.

  ``key_data`` is the fit's base key (``FitState.key``, [2] uint32), ``frame_valid`` [T]; a
  pure function of them, so the host knows every step's frames in advance.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(key_data), 1)
  return sample_frames(key, step, frame_valid, batch)


def train_step(state: FitState, data: FitData, batch: FrameBatch,
               body_model: body_lib.BodyModel, *, config: FitConfig, losses: losses_lib.Losses,
               tx: optax.GradientTransformation) -> tuple[FitState, StepOutput]:
  """One optimisation step of one subject (pure; ``jax.jit`` / ``jax.vmap`` it).

  ``batch`` holds the observations of the frames :func:`step_frames` draws for this state
  (the host prepares them; any frames give a valid step, those give the fit that resumes
  exactly). Returns the new state (the caller keeps the old one if the step was not finite)
  and what the host logs.
  """
  offsets = jnp.zeros((config.batch_frames, config.num_gaussians, 2), jnp.float32)
  grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 6), has_aux=True)
  (total, (values, render)), (grads, offset_grads) = grad_fn(
      state.params, state.buffers, data, batch, body_model, state.step, offsets,
      config=config, losses=losses, camel_nearest=state.camel_nearest)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  density = state.density
  if config.densify_every > 0:
    density = density_lib.accumulate(density, offset_grads, render.visible, render.radii,
                                     image_size=(data.width, data.height))
  new_state = state.replace(params=params, opt_state=opt_state, density=density,
                            step=state.step + 1)
  out = StepOutput(total=total, values=values, grads_finite=_all_finite(grads),
                   overflow=jnp.sum(render.overflow))
  return new_state, out
