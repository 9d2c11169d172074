"""The world-space Gaussian pytree that the renderer consumes.

Names follow gsplat: ``means``, ``quats`` (w, x, y, z; need not be normalised), ``scales``
(standard deviations along the local axes, metres, *not* log), ``opacities`` in [0, 1], and
colour either as ``colors`` [N, C] (any C) or as spherical-harmonic coefficients
``sh`` [N, (degree + 1)², C] evaluated for the view direction by the renderer.
Exactly one of ``colors`` and ``sh`` is set.
"""

from __future__ import annotations

import flax.struct
import jax


@flax.struct.dataclass(kw_only=True)
class Gaussians:
  """N 3D Gaussians in world space (a pytree; batch axes may lead)."""

  means: jax.Array  # [N, 3] centres, metres, world frame.
  quats: jax.Array  # [N, 4] rotations (w, x, y, z); normalised by the renderer.
  scales: jax.Array  # [N, 3] standard deviations along the rotated axes, metres (linear).
  opacities: jax.Array  # [N] in [0, 1]; 0 for inactive (padding) slots.
  colors: jax.Array | None = None  # [N, C] per-Gaussian colour (view independent).
  sh: jax.Array | None = None  # [N, (deg+1)**2, C] SH coefficients (3DGS basis and order).

  @property
  def num_gaussians(self) -> int:
    return self.means.shape[-2]
