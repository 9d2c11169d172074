"""Image terms: photometric L1, D-SSIM and the silhouette."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hsjax import metrics


def rgb_l1(render, frame, params, ctx) -> jax.Array:
  """Mean absolute colour error over all pixels and channels (3DGS's L1)."""
  del params, ctx
  return jnp.mean(jnp.abs(render.rgb - frame.image))


def dssim(render, frame, params, ctx) -> jax.Array:
  """Structural dissimilarity ``1 - SSIM`` (11x11 Gaussian window, σ = 1.5), frame mean.

  SSIM is :func:`hsjax.metrics.ssim_map` (equal to scikit-image's ``structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False``), averaged over the valid region.
  3DGS weights this 0.2 against L1, GART 0.1.
  """
  del params, ctx
  return 1.0 - jnp.mean(metrics.ssim_map(render.rgb, frame.image))


def mask_l1(render, frame, params, ctx) -> jax.Array:
  """Mean absolute difference of rendered alpha and the person mask, over all pixels.

  Silhouette agreement is the strongest cue for the limbs' pose: it moves the pose even where
  the avatar's colours are still wrong.
  """
  del params, ctx
  return jnp.mean(jnp.abs(render.alpha - frame.mask))
