"""Keypoint terms: the posed joints' projections against observed 2D keypoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hsjax.camera import project_points
from hsjax.losses.base import EPS
from hsjax.losses.base import Term


def geman_mcclure(sq: jax.Array, sigma: float) -> jax.Array:
  """Geman-McClure robust penalty ``r² / (r² + σ²)`` of squared residuals ``sq = r²``.

  Quadratic (``r²/σ²``) for ``r << σ`` and saturating at 1 for ``r >> σ``: a wrong landmark
  (a swapped left/right limb, a detection on the background) costs at most 1, as in
  SMPLify (Bogo et al. 2016, eq. 2).
  """
  return sq / (sq + sigma * sigma)


def make_keypoints_2d(sigma: float = 0.02) -> Term:
  """A robust, confidence-weighted 2D reprojection term of the 24 SMPL joints.

  Args:
    sigma: scale of the Geman-McClure penalty as a fraction of the image's long side (0.02
      is 5 px at 256 px): residuals much larger than it saturate.

  Returns:
    A term: ``Σ c ρ(|π(J) - k| / L) / Σ c`` over the minibatch's joints, where ``π`` projects
    the posed joints ``ctx.body.joints [F, 24, 3]`` with ``ctx.camera``, ``k`` and ``c`` are
    ``frame.keypoints [F, 24, 2]`` and ``frame.keypoint_conf [F, 24]``, ``L`` is the long
    side in pixels. Zero (and zero gradient) where every confidence is 0 (sequences without
    keypoints, frames with no visible landmark), never NaN.
  """

  def keypoints_2d(render, frame, params, ctx) -> jax.Array:
    del render, params
    if frame.keypoints is None or frame.keypoint_conf is None:
      return jnp.zeros((), jnp.float32)
    cam = ctx.camera
    uv, z = jax.vmap(project_points)(cam, ctx.body.joints)  # [F, 24, 2], [F, 24]
    scale = float(max(cam.width, cam.height))
    conf = frame.keypoint_conf * (z > 1e-3)  # a joint behind the camera has no projection
    # Unobserved keypoints (conf 0) are replaced by the projection itself, so that even a
    # far-off projection of a joint the term ignores contributes no gradient.
    target = jnp.where(conf[..., None] > 0, frame.keypoints, jax.lax.stop_gradient(uv))
    sq = jnp.sum(((uv - target) / scale) ** 2, axis=-1)
    rho = geman_mcclure(sq, sigma)
    return jnp.sum(conf * rho) / jnp.maximum(jnp.sum(conf), EPS)

  return keypoints_2d


keypoints_2d = make_keypoints_2d()
