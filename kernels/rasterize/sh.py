"""Real spherical harmonics up to degree 3, in the 3DGS basis, order and sign convention.

``eval_sh`` reproduces 3DGS ``computeColorFromSH``: the SH sum for the unit view direction
(camera centre -> Gaussian centre), then ``+ 0.5`` and a clamp at 0 (3DGS stores the DC term
so that colour = 0.5 + C0 * sh_0). gsplat's ``rasterization`` applies the same
``clamp_min(colors + 0.5, 0)``; its ``spherical_harmonics`` alone returns the raw sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
  """``(degree + 1)^2``, the number of coefficients up to ``degree``."""
  return (degree + 1) ** 2


def sh_basis(degree: int, dirs: jax.Array) -> jax.Array:
  """[N, (degree+1)^2] basis values for unit directions ``dirs`` [N, 3] (3DGS order/signs)."""
  if not 0 <= degree <= 3:
    raise ValueError(f"sh degree: expected 0..3, found {degree}")
  x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
  out = [jnp.full_like(x, _C0)]
  if degree >= 1:
    out += [-_C1 * y, _C1 * z, -_C1 * x]
  if degree >= 2:
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    out += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz,
            _C2[4] * (xx - yy)]
  if degree >= 3:
    out += [
        _C3[0] * y * (3 * xx - yy), _C3[1] * xy * z, _C3[2] * y * (4 * zz - xx - yy),
        _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
        _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)
    ]
  return jnp.stack(out, axis=-1)


def eval_sh(degree: int, sh: jax.Array, dirs: jax.Array) -> jax.Array:
  """View-dependent colours from spherical harmonics, as 3DGS.

  Args:
    degree: SH degree used, 0..3 (static); the first ``(degree+1)^2`` coefficients are read.
    sh: [N, M, C] coefficients with ``M >= (degree+1)^2`` (3DGS order), any C.
    dirs: [N, 3] view directions (camera centre -> Gaussian); normalised here (a zero
      direction gives the degree-0 colour with finite gradients).

  Returns:
    [N, C] colours ``max(sum_k basis_k sh_k + 0.5, 0)``.
  """
  m = num_sh_bases(degree)
  if sh.shape[-2] < m:
    raise ValueError(f"sh: expected at least {m} coefficients for degree {degree}, "
                     f"found shape {sh.shape}")
  norm2 = jnp.sum(dirs * dirs, axis=-1, keepdims=True)
  safe = jnp.where(norm2 > 0, norm2, 1.0)
  unit = dirs * jax.lax.rsqrt(safe)
  basis = sh_basis(degree, unit)
  return jnp.maximum(jnp.einsum("...k,...kc->...c", basis, sh[..., :m, :]) + 0.5, 0.0)
