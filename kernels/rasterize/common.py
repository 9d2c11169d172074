"""Constants and the per-pixel Gaussian response shared by every composite backend.

All backends (reference, xla, pallas) evaluate a Gaussian at a pixel with exactly these
expressions, in this order, so that the skip / stop decisions agree bit for bit.

Warning: the compositing rules are those of the original 3DGS ``renderCUDA`` (alpha clamp
0.99, stop when ``T (1 - alpha) < 1e-4``), while projection follows gsplat. gsplat's CUDA
rasteriser clamps alpha at 0.999 and stops at ``<= 1e-4``; images differ from gsplat's where a
single Gaussian has ``o exp(power) > 0.99``.
"""

import jax.numpy as jnp

TILE_SIZE = 16  # 3DGS / gsplat BLOCK_X = BLOCK_Y.
ALPHA_MAX = 0.99  # 3DGS clamp; keeps 1 - alpha >= 0.01 so the backward division is stable.
ALPHA_MIN = 1.0 / 255.0  # contributions below one 8-bit step are skipped (3DGS renderCUDA).
T_MIN = 1e-4  # a pixel stops once its transmittance would drop below this.


def gaussian_power(dx, dy, a, b, c):
  """Exponent of the 2D Gaussian, ``-0.5 (a dx^2 + c dy^2) - b dx dy`` (<= 0 when valid).

  Args:
    dx, dy: offsets ``mean - pixel_centre``, pixels (any broadcastable shapes).
    a, b, c: conic (upper triangle of the inverse 2D covariance), 1/pixels^2.
  """
  return -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy


def gaussian_alpha(power, opacity):
  """``(alpha, unclamped_alpha)`` with ``alpha = min(ALPHA_MAX, opacity exp(power))``."""
  raw = opacity * jnp.exp(power)
  return jnp.minimum(ALPHA_MAX, raw), raw


def pixel_centres(width: int, height: int, dtype=jnp.float32):
  """``(x [H, W], y [H, W])`` pixel centres (pixel (u, v) has its centre at (u+0.5, v+0.5))."""
  ys, xs = jnp.meshgrid(
      jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij")
  return xs + 0.5, ys + 0.5
