"""What a loss term sees, and how terms compose into a loss.

A loss term is a pure function ``term(render, frame, params, ctx) -> scalar`` and a loss is a
mapping ``name -> (weight, term)``; :func:`total_loss` evaluates it. Adding, removing or
re-weighting a term never touches the fitting loop (``hsjax.fit``): pass another mapping.

The four arguments (F = frames in the minibatch, T = frames in the sequence, N Gaussians):

* ``render``: ``kernels.rasterize.RenderOutput`` of the minibatch, every field with a leading
  frame axis: ``rgb [F, H, W, 3]`` (over the fit's background colour), ``alpha [F, H, W]``,
  ``depth [F, H, W]`` (expected camera depth, metres, 0 where nothing was hit),
  ``means2d [F, N, 2]``, ``radii [F, N]``, ``visible [F, N]``, ``overflow [F]``.
* ``frame``: :class:`Frame`, the minibatch's observations.
* ``params``: the full trainable pytree ``hsjax.fit.FitParams`` with fields ``avatar``
  (``hsjax.avatar.Avatar``) and ``poses`` (``hsjax.body.SMPLParams`` of the whole sequence:
  ``betas [B]``, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``, ``transl [T, 3]``,
  axis-angle, world frame).
* ``ctx``: :class:`StepContext`, everything else the step computed or knows.

Terms return *unweighted* scalars; :func:`total_loss` applies the weights, which are floats
or schedules ``step -> float`` (an ``optax.Schedule`` works).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import flax.struct
import jax
import jax.numpy as jnp

from hsjax.avatar import DeformOutput
from hsjax.body import BodyModel
from hsjax.body import BodyOutput
from hsjax.body import SMPLParams
from hsjax.camera import Camera
from hsjax.forward import RenderSettings
from hsjax.gaussians import Gaussians

# Keeps ratios finite where a mask or a depth map is empty.
EPS = 1e-6


@flax.struct.dataclass(kw_only=True)
class Frame:
  """The observations of a minibatch of F frames (what the terms compare the render with)."""

  # [F, H, W, 3] in [0, 1], composited over the fit's background outside the person mask (the
  # avatar is not asked to explain the scene).
  image: jax.Array
  mask: jax.Array  # [F, H, W] person mask in [0, 1].
  depth: jax.Array  # [F, H, W] observed depth, metres, 0 where invalid (all 0 without depth).
  # [F, 3, 3] intrinsics to unproject `depth` with: the camera's, unless the depth came with
  # its own estimate (a monocular network's focal length).
  depth_K: jax.Array
  depth_weight: jax.Array  # [] 1.0 when the sequence has depth, else 0.0 (depth terms vanish).
  # [] 1.0 for metric depth (metres; the metric terms apply), 0.0 for relative depth (only
  # the scale-and-shift-invariant term applies).
  depth_is_metric: jax.Array
  index: jax.Array  # [F] int32 frame numbers in the sequence.
  # [F, 24, 2] 2D keypoints at the SMPL joints, pixels of the fitted images (zeros and zero
  # confidence when the sequence has none).
  keypoints: jax.Array | None = None
  keypoint_conf: jax.Array | None = None  # [F, 24] keypoint confidence in [0, 1].


@flax.struct.dataclass(kw_only=True)
class StepContext:
  """Everything a term may need besides the render, the observations and the parameters."""

  step: jax.Array  # [] int32 optimisation step (weight schedules, per-step random subsets).
  body: BodyOutput  # the posed body of the minibatch: joints [F, 24, 3], vertices [F, V, 3].
  deformed: DeformOutput  # the deformed avatar: gaussians (means [F, N, 3], ...), rotations.
  # [T, 24, 3] joints of *every* frame under the current poses: the temporal terms use the
  # whole sequence (all T poses are cheap to pose, and a random minibatch has no neighbours).
  sequence_joints: jax.Array
  frame_valid: jax.Array  # [T] bool; False on padding frames of multi-subject fits.
  init: SMPLParams  # the HMR initialisation (betas [B], body_pose [T, 23, 3], ...).
  body_model: BodyModel  # the body model (template mesh, faces, skinning).
  camera: Camera  # the minibatch's cameras: K [F, 3, 3], world_to_cam [F, 4, 4].
  # [N] int32 each Gaussian's nearest template vertex, searched every
  # FitConfig.camel_refresh_every steps; None: the terms use the anchor vertices.
  camel_nearest: jax.Array | None = None
  # How `render` was rendered (static), for terms that render another per-Gaussian quantity
  # with the same Gaussians, binning and blending weights.
  render_settings: RenderSettings = flax.struct.field(pytree_node=False,
                                                      default=RenderSettings())

  @property
  def gaussians(self) -> Gaussians:
    """The minibatch's world-space Gaussians (means [F, N, 3], ...)."""
    return self.deformed.gaussians


Term = Callable[[Any, Frame, Any, StepContext], jax.Array]
Weight = Union[float, Callable[[jax.Array], jax.Array]]
Losses = Mapping[str, tuple[Weight, Term]]


def valid_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of x [T, ...] over frames where valid [T] (other axes averaged too)."""
  per_frame = jnp.mean(x.reshape(x.shape[0], -1), axis=-1)
  v = valid.astype(per_frame.dtype)
  return jnp.sum(per_frame * v) / jnp.maximum(jnp.sum(v), 1.0)


def active_mean(values: jax.Array, active: jax.Array) -> jax.Array:
  """Mean of values [N] over the active Gaussians (active [N] bool)."""
  a = active.astype(values.dtype)
  return jnp.sum(values * a) / jnp.maximum(jnp.sum(a), 1.0)


def resolve_weight(weight: Weight, step: jax.Array) -> jax.Array:
  """A constant weight or a schedule ``step -> float`` evaluated at ``step``."""
  if callable(weight):
    return jnp.asarray(weight(step), jnp.float32)
  return jnp.asarray(weight, jnp.float32)


def total_loss(losses: Losses, render, frame, params, ctx
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Weighted sum of the terms of ``losses``.

  Args:
    losses: mapping ``name -> (weight, term)``; a constant weight of exactly 0 skips the
      term (it is not even traced); a schedule is evaluated at ``ctx.step``.
    render, frame, params, ctx: see the module docstring.

  Returns:
    ``(total [], values)`` where ``values[name]`` is the *unweighted* term (what the
    progress bar shows and what a NaN is traced to). The pair is the ``has_aux`` output
    ``jax.value_and_grad`` expects.
  """
  total = jnp.zeros((), jnp.float32)
  values = {}
  for name, (weight, term) in losses.items():
    if not callable(weight) and float(weight) == 0.0:
      continue
    value = jnp.asarray(term(render, frame, params, ctx), jnp.float32)
    if value.shape != ():
      raise ValueError(f"loss term {name!r} must return a scalar, found shape {value.shape}")
    values[name] = value
    total = total + resolve_weight(weight, ctx.step) * value
  return total, values


def with_weights(losses: Losses, weights: Mapping[str, Weight] | Any) -> dict:
  """A copy of ``losses`` with some weights replaced.

  Args:
    losses: the base mapping.
    weights: mapping (or sequence of pairs) ``name -> weight``; every name must exist.

  Raises:
    ValueError: naming an unknown term and listing the valid ones.
  """
  out = dict(losses)
  for name, weight in dict(weights).items():
    if name not in out:
      raise ValueError(f"unknown loss term {name!r}; valid names: {sorted(out)}")
    out[name] = (weight, out[name][1])
  return out
