"""Joint avatar + pose optimisation (HumanSplatHMR's loop).

One optimisation step (:func:`train_step`, a single ``jax.jit``):

1. sample a minibatch of F frames (an epoch-wise random permutation of the valid frames, so
   every frame is seen once per epoch; the order depends only on the fit key and the step);
2. pose them with SMPL (``hsjax.body``), skin the canonical Gaussians into each frame
   (``hsjax.avatar.deform``) and render them (``hsjax.rendering.render``, vmapped over frames);
3. evaluate the loss mapping ``name -> (weight, term)`` (``hsjax.losses``);
4. differentiate with respect to *both* the avatar and the per-frame poses and update them
   with one Optax transformation that gives every parameter group its own learning rate,
   schedule and gradient clipping (``optax.multi_transform``).

Pose parameterisation: per frame ``global_orient [3]`` and ``body_pose [23, 3]`` in
**axis-angle**, ``transl [3]`` in metres, and one shared ``betas [B]``, all initialised from
the HMR estimates (an :class:`hsjax.body.SMPLParams`). Why axis-angle and not 6D: refinement
makes small corrections (a few degrees to tens of degrees) around the HMR pose, far from the
angle-π wrap where axis-angle is discontinuous; it is minimal (no redundant coordinates whose
norm Adam would also move), its gradient is finite at zero (``hsjax.rotations``), a learning
rate means radians per step, and the prior "stay near HMR" is a plain squared difference.
6D's advantage, continuity over all of SO(3), matters for regressing arbitrary rotations,
not for polishing a good initial guess.

Schedule: for ``warmup_steps`` only the avatar trains (the pose groups' updates are masked
with ``optax.transforms.conditionally_mask``, which also freezes their Adam moments), so the
Gaussians first explain the images at the HMR poses; then avatar and poses train jointly.
Density control (``hsjax.density``; off by default, see ``FitConfig.densify_every``) runs
every ``densify_every`` steps *outside* the jitted step, on fixed-capacity arrays, so it never
retraces. So does the search of each Gaussian's nearest template vertex for the CAMEL terms
(every ``camel_refresh_every`` steps). The temporal terms see the joints of every frame each
step (posing all T frames' joints is cheap), not only the minibatch's.

Checkpoints (``hsjax.checkpoint``) hold the complete state (parameters, optimiser state, step,
density statistics, history); every random draw is ``fold_in(key, step)``, so a fit killed
and resumed from its last checkpoint ends bit for bit where an uninterrupted fit ends.
A non-finite loss stops the fit with :class:`FitDivergedError` naming the term and the step;
no checkpoint is written for a non-finite state, so the last good one stays on disk.

Many subjects: :func:`fit_many` runs the same step under ``jax.vmap`` over a leading subject
axis S (equal capacities: Gaussians, image size; sequences of different lengths are padded to
the longest and the padding frames are never sampled nor smoothed), optionally sharded over
the ``"subject"`` axis of a ``jax.sharding.Mesh``.

Usage::

  from hsjax.data import synthetic_sequence
  from hsjax.fitting import FitConfig, fit

  sequence = synthetic_sequence("default", seed=0, hmr_noise="hmr2_like")
  result = fit(sequence, FitConfig(), key=jax.random.key(0), checkpoint_dir="runs/ckpt")
  result.poses  # refined SMPLParams; result.avatar: the trained hsjax.avatar.Avatar
  baseline = fit(sequence, FitConfig().avatar_only(), key=jax.random.key(0))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any, Callable, Mapping, Sequence

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import camel
from hsjax import checkpoint as ckpt_lib
from hsjax import density as density_lib
from hsjax import losses as losses_lib
from hsjax.body import SMPLParams
from hsjax.camera import Camera
# Imported by name: the package exports a function `render` that shadows the module.
from hsjax.rendering import render as render_gaussians

POSE_GROUPS = ("global_orient", "body_pose", "transl", "betas")
FROZEN = "frozen"


# ------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
  """Everything that shapes a fit (hashable; a static argument of the jitted step).

  The defaults are tuned for the default synthetic sequence on 2 CPU cores (see
  ``BENCHMARKS.md``, section Fitting).
  """

  # --- schedule
  steps: int = 900  # optimisation steps in total (warm-up included).
  warmup_steps: int = 150  # avatar-only steps (10 epochs of the default 60 frames).
  batch_frames: int = 4  # frames rendered per step (vmapped); <= frames in the sequence.
  # --- avatar
  body_model: str = "default"  # body model for hsjax.body.load_body_model (name or path).
  num_gaussians: int = 2000  # avatar capacity N (static; density control works inside it).
  active_fraction: float = 0.75  # fraction of N active at start (the rest: densification room).
  sh_degree: int = 1  # SH degree of the avatar's colour (0: view-independent).
  learn_skinning: bool = False  # learn skinning weights (regularised towards SMPL's).
  nonrigid: bool = False  # pose-dependent non-rigid MLP (hsjax.nonrigid).
  background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # render/target background, RGB.
  mask_background: bool = True  # replace the image outside the person mask by `background`.
  # --- renderer
  # Integer factor by which images, masks, depth and intrinsics are reduced for fitting
  # (area averaging). 2 renders a quarter of the pixels; the avatar itself has no resolution.
  downsample: int = 2
  backend: str = "auto"  # rasteriser backend: auto | xla | pallas | reference.
  tile_capacity: int = 128  # Gaussians kept per 16x16 tile (overflow is counted).
  # --- which parameter groups train
  train_avatar: bool = True  # Gaussian parameters (those listed in avatar_lrs).
  train_global_orient: bool = True  # per-frame root rotation.
  train_body_pose: bool = True  # per-frame joint rotations.
  train_transl: bool = True  # per-frame root translation.
  train_betas: bool = False  # the shared shape (HMR's shape is usually fine; off by default).
  # --- learning rates (Adam)
  # Avatar group (hsjax.avatar.param_labels) -> Adam learning rate; groups not listed stay
  # fixed. 3DGS's rates, except means: 10x 3DGS's 1.6e-4, so that the avatar can follow
  # clothing; the CAMEL terms keep it from drifting off the body, which at this rate it
  # otherwise does (README, "CAMEL and depth").
  avatar_lrs: tuple[tuple[str, float], ...] = (
      ("means", 1.6e-3), ("quats", 1e-3), ("scales", 5e-3), ("opacity", 5e-2), ("sh", 2.5e-3),
      ("skinning", 1e-3), ("nonrigid", 1e-3))
  means_lr_final_fraction: float = 0.01  # means LR decays exponentially to this (3DGS).
  lr_global_orient: float = 1e-2  # radians / step (the scale of Adam's step).
  lr_body_pose: float = 1e-2  # radians / step.
  lr_transl: float = 1e-2  # metres / step.
  lr_betas: float = 1e-3  # shape units / step.
  pose_lr_final_fraction: float = 0.1  # pose LRs decay (cosine) to this by the last step.
  clip_norm: float = 1.0  # per-group global-norm gradient clipping (0 disables).
  # --- loss weights that override hsjax.losses.DEFAULT_LOSSES (or the `losses` argument)
  loss_weights: tuple[tuple[str, float], ...] = ()
  # --- density control (hsjax.density); 0 disables
  density: density_lib.DensityConfig = density_lib.DensityConfig()  # 3DGS thresholds.
  # Steps between densify-and-prune passes. Off by default: the default fit was tuned
  # without it (2000 Gaussians already cover a 128 px body); see BENCHMARKS.md, Fitting.
  densify_every: int = 0
  densify_from: int = 100  # first step at which density control may run.
  densify_until: int = 900  # no density control after this step.
  # --- CAMEL reference vertices (hsjax.losses.camel_nearest_vertices)
  # Steps between exact searches of each Gaussian's nearest template vertex (canonical
  # space, outside the jitted step: ~70 ms a search at N = 2,000). 0: no search, the CAMEL
  # terms use each Gaussian's anchor vertex. See BENCHMARKS.md, CAMEL.
  camel_refresh_every: int = 50
  # --- bookkeeping
  log_every: int = 10  # steps between history records / progress-bar refreshes.
  eval_every: int = 0  # steps between evaluation callbacks (0: only at the end).
  checkpoint_every: int = 200  # steps between checkpoints (when a directory is given).
  keep_checkpoints: int = 2  # checkpoints kept on disk.
  progress: bool = True  # show a tqdm progress bar.

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"FitConfig.steps must be >= 1, found {self.steps}")
    if not 0 <= self.warmup_steps <= self.steps:
      raise ValueError(f"FitConfig.warmup_steps must lie in [0, steps={self.steps}], found "
                       f"{self.warmup_steps}")
    if self.batch_frames < 1:
      raise ValueError(f"FitConfig.batch_frames must be >= 1, found {self.batch_frames}")
    if self.num_gaussians < 1:
      raise ValueError(f"FitConfig.num_gaussians must be >= 1, found {self.num_gaussians}")
    if self.downsample < 1:
      raise ValueError(f"FitConfig.downsample must be an integer >= 1, found {self.downsample}")
    if len(self.background) != 3:
      raise ValueError(f"FitConfig.background must be 3 floats (RGB), found {self.background}")

  @property
  def refines_poses(self) -> bool:
    """Whether any pose group trains (False: the avatar-only baseline)."""
    return (self.train_global_orient or self.train_body_pose or self.train_transl
            or self.train_betas)

  def avatar_only(self) -> FitConfig:
    """The same fit with every pose group frozen at the HMR estimates (the baseline)."""
    return dataclasses.replace(self, train_global_orient=False, train_body_pose=False,
                               train_transl=False, train_betas=False)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


# Fields that may differ between a checkpoint and the fit resuming from it.
_RESUMABLE_FIELDS = ("progress", "log_every", "eval_every", "checkpoint_every",
                     "keep_checkpoints")


# ------------------------------------------------------------------------------------------
# Pytrees


@flax.struct.dataclass(kw_only=True)
class FitParams:
  """Everything the optimiser updates."""

  # The trainable half of an hsjax.avatar.Avatar (hsjax.avatar.split: buffers are None).
  avatar: Any
  poses: SMPLParams  # betas [B], body_pose [T, 23, 3], global_orient [T, 3], transl [T, 3].


@flax.struct.dataclass(kw_only=True)
class FitData:
  """The observations of one subject on device (a leading S axis in multi-subject fits)."""

  images: jax.Array  # [T, H, W, 3] in [0, 1], composited over the background outside the mask.
  masks: jax.Array  # [T, H, W] person masks in [0, 1].
  depth: jax.Array  # [T, H, W] metres (0 = invalid); zeros when the sequence has none.
  depth_weight: jax.Array  # [] 1.0 when the sequence has depth, else 0.0.
  depth_is_metric: jax.Array  # [] 1.0 for metric depth (metres), 0.0 for relative depth.
  K: jax.Array  # [T, 3, 3] intrinsics per frame, pixels.
  # [T, 3, 3] intrinsics to unproject `depth` with: the sequence's metadata["depth_K"] (a
  # monocular network's own estimate) when present, else K.
  depth_K: jax.Array
  world_to_cam: jax.Array  # [T, 4, 4] OpenCV extrinsics per frame.
  init: SMPLParams  # the HMR initialisation (world frame), T frames, betas [B].
  frame_valid: jax.Array  # [T] bool; False on padding frames (multi-subject fits).
  width: int = flax.struct.field(pytree_node=False)  # W, pixels.
  height: int = flax.struct.field(pytree_node=False)  # H, pixels.

  @property
  def num_frames(self) -> int:
    return self.frame_valid.shape[-1]


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


@dataclasses.dataclass
class FitResult:
  """The outcome of :func:`fit` (of :func:`fit_many`: lists / leading S axes)."""

  avatar: Any  # the trained hsjax.avatar.Avatar.
  poses: SMPLParams  # refined poses of every frame (world frame, axis-angle).
  history: dict  # "step", "time", "total", one list per loss term, and "eval" records.
  config: FitConfig
  state: FitState | None = None  # the final state (to continue or inspect the optimiser).


class FitDivergedError(FloatingPointError):
  """A non-finite loss or gradient; carries the last good state."""

  def __init__(self, message: str, *, step: int, terms: list[str], state: FitState | None,
               checkpoint: str | None):
    super().__init__(message)
    self.step = step
    self.terms = terms
    self.state = state
    self.checkpoint = checkpoint


@dataclasses.dataclass
class FitProgress:
  """What an evaluation callback receives."""

  step: int
  params: FitParams  # current parameters (for fit_many: leading S axis).
  history: dict
  config: FitConfig
  body_model: body_lib.BodyModel


Callback = Callable[[FitProgress], Mapping[str, float] | None]


# ------------------------------------------------------------------------------------------
# Data preparation (host side, at the edge)


def _check(cond: bool, message: str):
  if not cond:
    raise ValueError(message)


def prepare_data(sequence, config: FitConfig) -> FitData:
  """Turns a ``hsjax.data.Sequence`` into a :class:`FitData` on device.

  Validates shapes (naming the field, expected and found) and composites the images over
  ``config.background`` outside the mask when ``config.mask_background``.
  """
  images = np.asarray(sequence.images, np.float32)
  _check(images.ndim == 4 and images.shape[-1] == 3,
         f"sequence.images: expected [T, H, W, 3], found {images.shape}")
  t, h, w, _ = images.shape
  if images.max(initial=0.0) > 1.0 + 1e-3:
    raise ValueError(f"sequence.images: expected floats in [0, 1], found max {images.max()}")
  masks = np.asarray(sequence.masks, np.float32)
  _check(masks.shape == (t, h, w), f"sequence.masks: expected {(t, h, w)}, found {masks.shape}")
  if getattr(sequence, "depth", None) is None:
    depth = np.zeros((t, h, w), np.float32)
    depth_weight = 0.0
  else:
    depth = np.asarray(sequence.depth, np.float32)
    _check(depth.shape == (t, h, w),
           f"sequence.depth: expected {(t, h, w)}, found {depth.shape}")
    depth = np.where(np.isfinite(depth), depth, 0.0)
    depth_weight = 1.0
  kind = getattr(sequence, "depth_kind", "metric") or "metric"
  if kind not in ("metric", "relative"):
    raise ValueError(f"sequence.depth_kind: expected 'metric' or 'relative', found {kind!r}")
  cams = sequence.cameras
  k = np.broadcast_to(np.asarray(cams.K, np.float32), (t, 3, 3))
  w2c = np.broadcast_to(np.asarray(cams.world_to_cam, np.float32), (t, 4, 4))
  _check((cams.width, cams.height) == (w, h),
         f"sequence.cameras: size {(cams.width, cams.height)} differs from the images' {(w, h)}")
  hmr = sequence.hmr
  _check(hmr.body_pose.shape == (t, 23, 3),
         f"sequence.hmr.body_pose: expected {(t, 23, 3)}, found {hmr.body_pose.shape}")
  _check(hmr.global_orient.shape == (t, 3),
         f"sequence.hmr.global_orient: expected {(t, 3)}, found {hmr.global_orient.shape}")
  _check(hmr.transl.shape == (t, 3),
         f"sequence.hmr.transl: expected {(t, 3)}, found {hmr.transl.shape}")
  betas = np.asarray(hmr.betas, np.float32)
  if betas.ndim == 2:  # per-frame HMR shapes: the fit shares one, their mean.
    betas = betas.mean(axis=0)
  _check(t >= config.batch_frames,
         f"sequence has {t} frames, fewer than FitConfig.batch_frames={config.batch_frames}")
  if config.mask_background:
    bg = np.asarray(config.background, np.float32)
    images = images * masks[..., None] + bg * (1.0 - masks[..., None])
  depth_k = k
  metadata = getattr(sequence, "metadata", None) or {}
  if metadata.get("depth_K") is not None:
    depth_k = np.asarray(metadata["depth_K"], np.float32)
    _check(depth_k.shape in ((3, 3), (t, 3, 3)),
           f"sequence.metadata['depth_K']: expected [3, 3] or {[t, 3, 3]}, found "
           f"{list(depth_k.shape)}")
    depth_k = np.broadcast_to(depth_k, (t, 3, 3))
  if config.downsample > 1:
    images, masks, depth, k = _downsample(images, masks, depth, k, config.downsample)
    depth_k = _scale_intrinsics(depth_k, config.downsample)
    h, w = masks.shape[1:]
  init = SMPLParams(betas=jnp.asarray(betas),
                    body_pose=jnp.asarray(hmr.body_pose, jnp.float32),
                    global_orient=jnp.asarray(hmr.global_orient, jnp.float32),
                    transl=jnp.asarray(hmr.transl, jnp.float32))
  return FitData(images=jnp.asarray(images), masks=jnp.asarray(masks),
                 depth=jnp.asarray(depth), depth_weight=jnp.asarray(depth_weight, jnp.float32),
                 depth_is_metric=jnp.asarray(float(kind == "metric"), jnp.float32),
                 K=jnp.asarray(k), depth_K=jnp.asarray(depth_k),
                 world_to_cam=jnp.asarray(w2c), init=init,
                 frame_valid=jnp.ones((t,), bool), width=w, height=h)


def _downsample(images, masks, depth, k, factor: int):
  """Area-averages [T, H, W, ...] by ``factor`` and rescales ``K`` to match.

  With pixel centres at ``+0.5`` (hsjax's convention), an image downsampled by block averages
  is seen by ``diag(1/f, 1/f, 1) K``: focal lengths and principal point scale alike. Depth is
  averaged over the valid (> 0) pixels of a block and is valid where at least half are.
  """
  t, h, w = masks.shape
  if h % factor or w % factor:
    raise ValueError(f"FitConfig.downsample={factor} must divide the image size {(w, h)}")

  def blocks(x):
    return x.reshape(t, h // factor, factor, w // factor, factor, *x.shape[3:])

  images = blocks(images).mean(axis=(2, 4))
  masks = blocks(masks).mean(axis=(2, 4))
  valid = blocks((depth > 0).astype(np.float32))
  depth_sum = blocks(depth).sum(axis=(2, 4))
  count = valid.sum(axis=(2, 4))
  depth = np.where(count >= factor * factor / 2.0, depth_sum / np.maximum(count, 1.0), 0.0)
  return images, masks, depth.astype(np.float32), _scale_intrinsics(k, factor)


def _scale_intrinsics(k: np.ndarray, factor: int) -> np.ndarray:
  """[..., 3, 3] intrinsics of images downsampled by ``factor`` (block averages)."""
  return np.diag([1.0 / factor, 1.0 / factor, 1.0]).astype(np.float32) @ k


def pad_frames(data: FitData, num_frames: int) -> FitData:
  """Pads a subject to ``num_frames`` frames by repeating its last frame (marked invalid)."""
  t = data.num_frames
  if num_frames < t:
    raise ValueError(f"pad_frames: cannot pad {t} frames down to {num_frames}")
  idx = np.minimum(np.arange(num_frames), t - 1)

  def take(x):
    return x[idx] if (hasattr(x, "ndim") and x.ndim >= 1 and x.shape[0] == t) else x

  padded = data.replace(images=take(data.images), masks=take(data.masks),
                        depth=take(data.depth), K=take(data.K), depth_K=take(data.depth_K),
                        world_to_cam=take(data.world_to_cam),
                        init=data.init.replace(body_pose=take(data.init.body_pose),
                                               global_orient=take(data.init.global_orient),
                                               transl=take(data.init.transl)))
  return padded.replace(frame_valid=jnp.arange(num_frames) < t)


# ------------------------------------------------------------------------------------------
# Losses and optimiser


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
  * pose groups: cosine decay from their LR to ``pose_lr_final_fraction`` of it over the
    post-warm-up steps, and masked to zero during the warm-up
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
    decay = max(config.steps - config.warmup_steps, 1)
    schedule = optax.cosine_decay_schedule(lr, decay, alpha=config.pose_lr_final_fraction)
    transforms[name] = optax.transforms.conditionally_mask(
        clipped(optax.adam(schedule)), lambda count, w=config.warmup_steps: count >= w)
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


# ------------------------------------------------------------------------------------------
# Initial state


def _density_init(config: FitConfig):
  """Density statistics, or None when density control is off (nothing is accumulated)."""
  if config.densify_every <= 0:
    return None
  return density_lib.init_stats(config.num_gaussians)


def init_state(data: FitData, config: FitConfig, body_model: body_lib.BodyModel,
               key: jax.Array) -> FitState:
  """A fresh :class:`FitState`: avatar on the template surface, poses at the HMR estimates.

  The avatar's initial colour is the mean colour inside the person masks, so the first steps
  are spent on detail rather than on a global colour shift.
  """
  mask = data.masks * data.frame_valid[:, None, None]
  mean_color = (jnp.sum(data.images * mask[..., None], axis=(0, 1, 2))
                / jnp.maximum(jnp.sum(mask), 1.0))
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
                  camel_nearest=_camel_nearest(avatar, body_model, config),
                  key=jax.random.key_data(key))


def _camel_nearest(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
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


# ------------------------------------------------------------------------------------------
# One step


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


def forward(params: FitParams, buffers, data: FitData, body_model: body_lib.BodyModel,
            frames: jax.Array, step: jax.Array, screen_offsets: jax.Array, *,
            config: FitConfig, losses: losses_lib.Losses,
            camel_nearest: jax.Array | None = None):
  """Loss of a minibatch: pose, deform, render, evaluate the terms.

  Args:
    params: trainable parameters.
    buffers: the avatar's buffers.
    data: the subject's observations.
    body_model: the body model.
    frames: [F] frame indices.
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
  body_pose, global_orient = poses.body_pose[frames], poses.global_orient[frames]
  transl = poses.transl[frames]
  deformed = jax.vmap(avatar_lib.deform_with_aux, in_axes=(None, None, None, 0, 0, 0))(
      avatar, body_model, poses.betas, body_pose, global_orient, transl)
  camera = Camera(K=data.K[frames], world_to_cam=data.world_to_cam[frames],
                  width=data.width, height=data.height)
  background = jnp.asarray(config.background, jnp.float32)

  def render_one(gaussians, cam, offsets):
    return render_gaussians(gaussians, cam, background=background, backend=config.backend,
                            tile_capacity=config.tile_capacity, screen_offsets=offsets)

  render = jax.vmap(render_one)(deformed.gaussians, camera, screen_offsets)
  frame = {"image": data.images[frames], "mask": data.masks[frames],
           "depth": data.depth[frames], "depth_K": data.depth_K[frames],
           "depth_weight": data.depth_weight,
           "depth_is_metric": data.depth_is_metric, "index": frames}
  # Unused entries cost nothing: XLA removes what no term reads.
  rotmats = body_lib.full_pose_rotmats(poses.body_pose, poses.global_orient)
  all_betas = jnp.broadcast_to(poses.betas, (rotmats.shape[0], poses.betas.shape[-1]))
  sequence_joints, _ = body_lib.joint_transforms(body_model, all_betas, rotmats, poses.transl)
  betas = jnp.broadcast_to(poses.betas, (frames.shape[0], poses.betas.shape[-1]))
  aux = {
      "step": step,
      "frames": frames,
      "body": body_lib.body_forward(body_model, betas, body_pose, global_orient, transl),
      "gaussians": deformed.gaussians,
      "deform": deformed,
      "sequence_joints": sequence_joints,
      "frame_valid": data.frame_valid,
      "init": data.init,
      "body_model": body_model,
      "camera": camera,
  }
  if camel_nearest is not None:
    aux["camel_nearest"] = camel_nearest
  full = FitParams(avatar=avatar, poses=poses)
  total, values = losses_lib.total_loss(losses, render, frame, full, aux)
  return total, (values, render)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def train_step(state: FitState, data: FitData, body_model: body_lib.BodyModel, *,
               config: FitConfig, losses: losses_lib.Losses,
               tx: optax.GradientTransformation) -> tuple[FitState, StepOutput]:
  """One optimisation step of one subject (pure; ``jax.jit`` / ``jax.vmap`` it).

  Returns the new state (the caller keeps the old one if the step was not finite) and what
  the host logs.
  """
  key = jax.random.wrap_key_data(state.key)
  frames = sample_frames(jax.random.fold_in(key, 1), state.step, data.frame_valid,
                         config.batch_frames)
  offsets = jnp.zeros((config.batch_frames, config.num_gaussians, 2), jnp.float32)
  grad_fn = jax.value_and_grad(forward, argnums=(0, 6), has_aux=True)
  (total, (values, render)), (grads, offset_grads) = grad_fn(
      state.params, state.buffers, data, body_model, frames, state.step, offsets,
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


# ------------------------------------------------------------------------------------------
# The loop (host side)


def _new_history() -> dict:
  return {"step": [], "time": [], "total": [], "overflow": [], "terms": {}, "eval": []}


def _record(history: dict, step: int, elapsed: float, out: StepOutput, batched: bool):
  """Appends one log record (multi-subject fits record per-subject lists)."""

  def host(x):
    x = np.asarray(x)
    return x.tolist() if batched else float(x)

  history["step"].append(step)
  history["time"].append(round(elapsed, 3))
  history["total"].append(host(out.total))
  history["overflow"].append(int(np.sum(np.asarray(out.overflow))))
  for name, value in out.values.items():
    history["terms"].setdefault(name, []).append(host(value))


def _nonfinite_message(step: int, out: StepOutput, batched: bool) -> tuple[str, list[str]]:
  bad = [n for n, v in out.values.items() if not np.all(np.isfinite(np.asarray(v)))]
  where = ""
  if batched:
    total = np.asarray(out.total)
    where = f" (subjects {np.flatnonzero(~np.isfinite(total)).tolist()})"
  if bad:
    return (f"non-finite loss at step {step}{where}: term(s) {bad} = "
            f"{[np.asarray(out.values[n]).tolist() for n in bad]}", bad)
  if not np.all(np.isfinite(np.asarray(out.total))):
    return f"non-finite total loss at step {step}{where} (a weight schedule?)", []
  return (f"non-finite gradient at step {step}{where} with finite loss terms "
          f"{ {n: np.asarray(v).tolist() for n, v in out.values.items()} }", [])


def _checkpoint_tree(state: FitState, history: dict, config: FitConfig) -> dict:
  return {"state": flax.serialization.to_state_dict(jax.device_get(state)),
          "history": json.dumps(history), "config": config.to_json()}


def _restore(path: str, target: FitState, config: FitConfig) -> tuple[FitState, dict]:
  raw = ckpt_lib.load_raw(path)
  saved = json.loads(raw["config"])
  current = json.loads(config.to_json())
  diff = {k: (saved.get(k), v) for k, v in current.items()
          if k not in _RESUMABLE_FIELDS and saved.get(k) != v}
  if diff:
    raise ValueError(f"{path}: checkpoint was written with a different FitConfig; differing "
                     f"fields (saved, current): {diff}. Use another checkpoint_dir.")
  try:
    state = flax.serialization.from_state_dict(jax.device_get(target), raw["state"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: checkpoint state does not match this fit's structure: {e}") from e
  return state, json.loads(raw["history"])


_densify_jit = jax.jit(density_lib.densify_and_prune, static_argnums=(4,))


def _density_pass(state: FitState, done: int, config: FitConfig, batched: bool
                  ) -> tuple[FitState, dict]:
  """Density control between jitted steps (per subject when batched); shapes never change.

  The key of subject ``s`` after ``done`` steps is ``fold_in(fold_in(key_s, 2), done)``, so a
  subject's fit is the same alone or among others, and after a resume.
  """

  def one(s: FitState) -> tuple[FitState, dict]:
    k = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(s.key), 2), done)
    avatar = avatar_lib.combine(s.params.avatar, s.buffers)
    avatar, opt_state, info = _densify_jit(avatar, s.opt_state, s.density, k, config.density)
    params, buffers = avatar_lib.split(avatar)
    return s.replace(params=s.params.replace(avatar=params), buffers=buffers,
                     opt_state=opt_state, density=density_lib.init_stats(config.num_gaussians)
                     ), info

  if not batched:
    return one(state)
  subjects = state.step.shape[0]
  results = [one(jax.tree_util.tree_map(lambda x, i=i: x[i], state)) for i in range(subjects)]
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[r[0] for r in results])
  return stacked, {"subjects": [r[1] for r in results]}


def _refresh_camel_nearest(state: FitState, body_model: body_lib.BodyModel, config: FitConfig,
                           batched: bool) -> FitState:
  """``state`` with ``camel_nearest`` recomputed for the current canonical avatar."""

  def one(params, buffers):
    return _camel_nearest(avatar_lib.combine(params.avatar, buffers), body_model, config)

  nearest = (jax.vmap(one) if batched else one)(state.params, state.buffers)
  return state.replace(camel_nearest=nearest)


def _numerics_key(config: FitConfig) -> FitConfig:
  """``config`` with the bookkeeping fields at their defaults (they never change a step)."""
  default = FitConfig()
  return dataclasses.replace(config, **{f: getattr(default, f) for f in _RESUMABLE_FIELDS})


@functools.lru_cache(maxsize=16)
def _compiled_step(config: FitConfig, losses_items: tuple, batched: bool, mesh):
  """The jitted (and vmapped / sharded) step; cached so fits with equal settings share it."""
  step_fn = functools.partial(train_step, config=config, losses=dict(losses_items),
                              tx=make_optimizer(config))
  if batched:
    step_fn = jax.vmap(step_fn, in_axes=(0, 0, None))
  if mesh is None:
    return jax.jit(step_fn)
  sharded, replicated = _shardings(mesh)
  return jax.jit(step_fn, in_shardings=(sharded, sharded, replicated),
                 out_shardings=(sharded, sharded))


def _shardings(mesh):
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("subject"))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return sharded, replicated


def _run(state: FitState, data: FitData, body_model: body_lib.BodyModel, config: FitConfig,
         losses: dict, *, batched: bool, mesh=None, checkpoint_dir: str | None,
         callbacks: Sequence[Callback], history: dict | None) -> tuple[FitState, dict]:
  """Runs the loop from ``state.step`` to ``config.steps``; shared by fit and fit_many."""
  try:
    jitted = _compiled_step(_numerics_key(config), tuple(losses.items()), batched, mesh)
  except TypeError:  # an unhashable weight or term: no caching
    jitted = _compiled_step.__wrapped__(config, tuple(losses.items()), batched, mesh)
  if mesh is not None:
    sharded, replicated = _shardings(mesh)
    state = jax.device_put(state, sharded)
    data = jax.device_put(data, sharded)
    body_model = jax.device_put(body_model, replicated)

  history = _new_history() if history is None else history
  start = int(np.max(np.asarray(state.step)))
  time_offset = history["time"][-1] if history["time"] else 0.0
  t0 = time.perf_counter()
  last_ckpt = None
  if checkpoint_dir is not None:
    found = ckpt_lib.latest_checkpoint(checkpoint_dir)
    last_ckpt = found[1] if found else None

  def progress_view(st: FitState, step: int) -> FitProgress:
    return FitProgress(step=step, params=st.params, history=history, config=config,
                       body_model=body_model)

  def run_callbacks(st: FitState, step: int):
    for callback in callbacks:
      record = callback(progress_view(st, step))
      if record:
        history["eval"].append({"step": step, **{k: _to_py(v) for k, v in record.items()}})

  bar = tqdm.tqdm(total=config.steps, initial=start, disable=not config.progress,
                  desc="fit", dynamic_ncols=True, leave=True)
  try:
    for step in range(start, config.steps):
      new_state, out = jitted(state, data, body_model)
      finite = bool(np.all(np.asarray(out.grads_finite))) and bool(
          np.all(np.isfinite(np.asarray(out.total))))
      if not finite:
        message, terms = _nonfinite_message(step, out, batched)
        if last_ckpt is not None:
          message += f"; last good checkpoint kept: {last_ckpt}"
        raise FitDivergedError(message, step=step, terms=terms, state=state,
                               checkpoint=last_ckpt)
      state = new_state
      done = step + 1
      if (done % config.log_every == 0) or done == config.steps:
        elapsed = time_offset + time.perf_counter() - t0
        _record(history, done, elapsed, out, batched)
        bar.set_postfix({n: f"{np.mean(np.asarray(v)):.4g}" for n, v in out.values.items()},
                        refresh=False)
      bar.update(1)
      refresh = config.camel_refresh_every > 0 and done % config.camel_refresh_every == 0
      if (config.densify_every > 0 and config.densify_from <= done <= config.densify_until
          and done % config.densify_every == 0 and done < config.steps):
        state, info = _density_pass(state, done, config, batched)
        history.setdefault("density", []).append({"step": done, **_to_py(info)})
        refresh = True  # moved and new Gaussians need their reference vertices
      if refresh and done < config.steps:
        state = _refresh_camel_nearest(state, body_model, config, batched)
        if mesh is not None:
          state = jax.device_put(state, sharded)
      if config.eval_every > 0 and done % config.eval_every == 0 and done < config.steps:
        run_callbacks(state, done)
      if (checkpoint_dir is not None and config.checkpoint_every > 0
          and done % config.checkpoint_every == 0):
        last_ckpt = ckpt_lib.save(checkpoint_dir, done, _checkpoint_tree(state, history, config),
                                  keep=config.keep_checkpoints)
  finally:
    bar.close()
  run_callbacks(state, config.steps)
  if checkpoint_dir is not None:
    ckpt_lib.save(checkpoint_dir, config.steps, _checkpoint_tree(state, history, config),
                  keep=config.keep_checkpoints)
  return state, history


def _to_py(x):
  """JSON-friendly copy of numbers / arrays / dicts / lists."""
  if isinstance(x, dict):
    return {str(k): _to_py(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_py(v) for v in x]
  if isinstance(x, (jax.Array, np.ndarray, np.generic)):
    arr = np.asarray(x)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  return x


# ------------------------------------------------------------------------------------------
# Public entry points


def pose_error_callback(body_model: body_lib.BodyModel, gt: SMPLParams,
                        subject: int | None = None) -> Callback:
  """An evaluation callback recording MPJPE, PA-MPJPE and root error (mm) against ``gt``."""
  from hsjax import metrics  # pylint: disable=g-import-not-at-top

  def callback(progress: FitProgress):
    poses = progress.params.poses
    if subject is not None:
      poses = jax.tree_util.tree_map(lambda x: x[subject], poses)
    m = metrics.pose_metrics(body_model, poses, gt)
    return {"mpjpe": m["mpjpe"], "pa_mpjpe": m["pa_mpjpe"], "root_error": m["root_error"]}

  return callback


def _prepare(sequence, config: FitConfig, losses, body_model):
  if body_model is None:
    body_model = body_lib.load_body_model(config.body_model)
  return prepare_data(sequence, config), resolve_losses(config, losses), body_model


def _initial_or_restored(make_state: Callable[[], FitState], config: FitConfig,
                         checkpoint_dir: str | None) -> tuple[FitState, dict | None]:
  state = make_state()
  if checkpoint_dir is None:
    return state, None
  found = ckpt_lib.latest_checkpoint(checkpoint_dir)
  if found is None:
    return state, None
  restored, history = _restore(found[1], state, config)
  if not np.array_equal(np.asarray(restored.key), np.asarray(state.key)):
    raise ValueError(f"{found[1]}: checkpoint was written by a fit with another key; use the "
                     "same key to resume, or another checkpoint_dir")
  return jax.tree_util.tree_map(jnp.asarray, restored), history


def fit(sequence, config: FitConfig = FitConfig(), *, key: jax.Array,
        checkpoint_dir: str | None = None, losses: losses_lib.Losses | None = None,
        callbacks: Sequence[Callback] = (), body_model: body_lib.BodyModel | None = None
        ) -> FitResult:
  """Learns the avatar of one sequence and refines its per-frame poses.

  Args:
    sequence: an ``hsjax.data.Sequence`` (images, masks, optional depth, cameras, HMR
      estimates; ``gt`` when known is used only for evaluation records).
    config: the :class:`FitConfig`.
    key: a ``jax.random.key``; the whole fit is a deterministic function of it.
    checkpoint_dir: when given, checkpoints are written there every
      ``config.checkpoint_every`` steps and at the end, and a fit finding a checkpoint there
      resumes from the newest one (same config and key required) and ends exactly where an
      uninterrupted fit would.
    losses: mapping ``name -> (weight, term)`` (default ``hsjax.losses.DEFAULT_LOSSES``);
      ``config.loss_weights`` overrides weights by name.
    callbacks: called with a :class:`FitProgress` every ``config.eval_every`` steps and at
      the end; a returned dict is recorded in ``history["eval"]``. When ``sequence.gt`` is
      set, pose errors against it are recorded too.
    body_model: the body model (default ``load_body_model(config.body_model)``).

  Returns:
    :class:`FitResult` with the full trained avatar, the refined poses and the history.

  Raises:
    FitDivergedError: when a loss term or gradient becomes non-finite; the message names the
      term(s) and the step, and no checkpoint is written for the bad state.
  """
  data, losses, body_model = _prepare(sequence, config, losses, body_model)
  callbacks = list(callbacks)
  if getattr(sequence, "gt", None) is not None:
    callbacks.insert(0, pose_error_callback(body_model, sequence.gt))
  state, history = _initial_or_restored(
      lambda: init_state(data, config, body_model, key), config, checkpoint_dir)
  state, history = _run(state, data, body_model, config, losses, batched=False,
                        checkpoint_dir=checkpoint_dir, callbacks=callbacks, history=history)
  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  return FitResult(avatar=avatar, poses=state.params.poses, history=history, config=config,
                   state=state)


def fit_many(sequences: Sequence[Any], config: FitConfig = FitConfig(), *,
             keys: Sequence[jax.Array] | jax.Array, mesh: jax.sharding.Mesh | None = None,
             checkpoint_dir: str | None = None, losses: losses_lib.Losses | None = None,
             callbacks: Sequence[Callback] = (),
             body_model: body_lib.BodyModel | None = None) -> FitResult:
  """Fits S subjects at once: the step of :func:`fit` under ``jax.vmap`` over subjects.

  All subjects share the config (so the avatar capacity N and the minibatch size) and must
  have the same image size; sequences of different lengths are padded to the longest (the
  padding frames are never sampled, and temporal terms skip them). With the same keys, the
  result equals S separate :func:`fit` calls to float tolerance.

  Sharding: with ``mesh`` (a ``jax.sharding.Mesh`` with an axis named ``"subject"`` whose
  size divides S), every per-subject array is sharded over that axis and the body model is
  replicated; each device runs its subjects' steps, with no communication. On one host,
  ``jax.make_mesh((jax.device_count(),), ("subject",))``. Multi-host (several processes, e.g.
  one per GPU node): call ``jax.distributed.initialize(coordinator_address, num_processes,
  process_id)`` in every process before anything else, build the mesh over
  ``jax.devices()`` (all processes' devices), and run the *same* ``fit_many`` call in every
  process with the full list of sequences; arrays are placed with ``jax.device_put`` onto
  the global sharding, so each process materialises only its addressable shards' data on
  device (it still reads every sequence on the host here — feed each process only its
  subjects' files and assemble with ``jax.make_array_from_process_local_data`` if that
  matters). Host-side steps (density control, logging, checkpoints) then need the
  process-local shards; checkpointing a multi-host fit is left to ``orbax``-style
  per-process writers and is not implemented here.

  Args:
    sequences: S ``hsjax.data.Sequence`` objects.
    config: shared :class:`FitConfig`.
    keys: S PRNG keys (a list, or a key array of shape [S]).
    mesh: optional device mesh with a ``"subject"`` axis.
    checkpoint_dir, losses, callbacks, body_model: as in :func:`fit` (callbacks see
      parameters with a leading S axis).

  Returns:
    :class:`FitResult` whose ``avatar`` and ``poses`` have a leading S axis (poses padded to
    the longest sequence; ``history["num_frames"]`` gives each subject's length).
  """
  sequences = list(sequences)
  if not sequences:
    raise ValueError("fit_many: no sequences given")
  keys = [keys[i] for i in range(len(sequences))]
  if len(keys) != len(sequences):
    raise ValueError(f"fit_many: {len(sequences)} sequences but {len(keys)} keys")
  if mesh is not None:
    if "subject" not in mesh.axis_names:
      raise ValueError(f"fit_many: mesh must have an axis named 'subject', found "
                       f"{mesh.axis_names}")
    if len(sequences) % mesh.shape["subject"]:
      raise ValueError(f"fit_many: {len(sequences)} subjects do not divide over "
                       f"{mesh.shape['subject']} devices of the 'subject' axis")
    # The step is written for automatic (GSPMD) partitioning; a mesh made with explicit
    # axes (jax.make_mesh's default) is re-declared over the same devices as Auto.
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names,
                             axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names))
  if body_model is None:
    body_model = body_lib.load_body_model(config.body_model)
  losses = resolve_losses(config, losses)
  datas = [prepare_data(s, config) for s in sequences]
  sizes = {(d.width, d.height) for d in datas}
  if len(sizes) != 1:
    raise ValueError(f"fit_many: all sequences must share one image size, found {sorted(sizes)}")
  lengths = [d.num_frames for d in datas]
  datas = [pad_frames(d, max(lengths)) for d in datas]
  data = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *datas)

  def make_state():
    states = [init_state(d, config, body_model, k) for d, k in zip(datas, keys)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)

  state, history = _initial_or_restored(make_state, config, checkpoint_dir)
  state, history = _run(state, data, body_model, config, losses, batched=True, mesh=mesh,
                        checkpoint_dir=checkpoint_dir, callbacks=list(callbacks),
                        history=history)
  history["num_frames"] = lengths
  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  return FitResult(avatar=avatar, poses=state.params.poses, history=history, config=config,
                   state=state)
