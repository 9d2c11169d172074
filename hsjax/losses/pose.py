"""Pose terms: the prior towards the HMR estimates and temporal smoothness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hsjax.losses.base import Term
from hsjax.losses.base import valid_mean


# Per-joint weights of the pose prior (SMPL order, root first). The spine and the
# collars are poorly observed in a silhouette, so they are held closer to HMR; wrists and
# hands (tiny in the image, and HMR's own weakest joints) are left freer. Users replace
# this by building their own term with :func:`make_pose_prior`.
PRIOR_JOINT_WEIGHTS = (
    1.0,  # pelvis (global_orient)
    1.0, 1.0, 2.0,  # left_hip, right_hip, spine1
    1.0, 1.0, 2.0,  # left_knee, right_knee, spine2
    1.0, 1.0, 2.0,  # left_ankle, right_ankle, spine3
    1.0, 1.0, 1.0,  # left_foot, right_foot, neck
    2.0, 2.0, 1.0,  # left_collar, right_collar, head
    1.0, 1.0, 1.0, 1.0,  # shoulders, elbows
    0.5, 0.5, 0.5, 0.5)  # wrists, hands


def make_pose_prior(joint_weights=PRIOR_JOINT_WEIGHTS) -> Term:
  """A pose prior ``Σ_j w_j |θ_j - θ_j^HMR|²`` over every frame of the sequence.

  Args:
    joint_weights: 24 non-negative weights, root (``global_orient``) first, then the 23
      ``body_pose`` joints.

  Returns:
    A loss term: the weighted squared axis-angle distance to the HMR initialisation
    (radians²), averaged over joints and valid frames. The axis-angle difference equals the
    geodesic angle to first order, which is all that matters for the small corrections
    refinement makes.
  """
  weights = np.asarray(joint_weights, np.float32)
  if weights.shape != (24,):
    raise ValueError(f"make_pose_prior: joint_weights must have 24 entries (root first), "
                     f"found {weights.shape}")

  def pose_prior(render, frame, params, ctx) -> jax.Array:
    del render, frame
    poses, init = params.poses, ctx.init
    full = jnp.concatenate([poses.global_orient[:, None], poses.body_pose], axis=1)
    full0 = jnp.concatenate([init.global_orient[:, None], init.body_pose], axis=1)
    sq = jnp.sum((full - full0) ** 2, axis=-1) * weights  # [T, 24]
    return valid_mean(sq, ctx.frame_valid)

  return pose_prior


pose_prior = make_pose_prior()


def betas_prior(render, frame, params, ctx) -> jax.Array:
  """Squared distance of the shared shape to its initialisation (betas are ~N(0, I))."""
  del render, frame
  return jnp.mean((params.poses.betas - ctx.init.betas) ** 2)


def betas_population_prior(render, frame, params, ctx) -> jax.Array:
  """Mean squared shape coefficient: SMPLify's prior towards the population's mean body.

  SMPL's betas are whitened over its training scans (~N(0, I)), so this is proportional to
  the shape's negative log-likelihood up to a constant. Unlike :func:`betas_prior` it does
  not trust HMR's shape, whose size on the suite's dev split is further from the truth than
  the mean body's. Off by default: it helps articulation but costs novel-pose PSNR
  (BENCHMARKS.md, "A second scale cue").
  """
  del render, frame, ctx
  return jnp.mean(params.poses.betas ** 2)


def _finite_difference(x: jax.Array, order: int) -> jax.Array:
  """``order``-th forward difference along axis 0: [T, ...] -> [T - order, ...]."""
  for _ in range(order):
    x = x[1:] - x[:-1]
  return x


def _window_valid(valid: jax.Array, order: int) -> jax.Array:
  """[T - order] True where all order+1 frames of a difference stencil are valid."""
  out = valid
  for _ in range(order):
    out = out[1:] & out[:-1]
  return out


def make_smoothness(order: int = 2, on: str = "joints") -> Term:
  """Temporal smoothness over the whole sequence (not the minibatch).

  Args:
    order: 1 penalises velocity, 2 acceleration (the default: it leaves constant-velocity
      motion free, so genuine movement is not damped).
    on: ``"joints"`` — the 24 posed joints in world coordinates (``ctx.sequence_joints``,
      root translation included), or ``"transl"`` — the root translation alone.

  Returns:
    A term: mean squared ``order``-th finite difference, m² / frame^(2·order), over valid
    stencils (padding frames of multi-subject fits excluded).
  """
  if order not in (1, 2):
    raise ValueError(f"make_smoothness: order must be 1 (velocity) or 2 (acceleration), "
                     f"found {order}")
  if on not in ("joints", "transl"):
    raise ValueError(f"make_smoothness: on must be 'joints' or 'transl', found {on!r}")

  def smoothness(render, frame, params, ctx) -> jax.Array:
    del render, frame
    x = ctx.sequence_joints if on == "joints" else params.poses.transl
    diff = _finite_difference(x, order)
    sq = jnp.sum(diff * diff, axis=-1)
    return valid_mean(sq, _window_valid(ctx.frame_valid, order))

  smoothness.__name__ = f"smooth_{on}_order{order}"
  return smoothness


smooth_joints = make_smoothness(2, "joints")
smooth_transl = make_smoothness(2, "transl")
