"""Rotation representations and conversions, batched over leading axes.

Axis-angle vectors ``[..., 3]`` (angle = norm, SMPL's parameterisation), rotation matrices
``[..., 3, 3]`` (acting on column vectors), quaternions ``[..., 4]`` as (w, x, y, z) like gsplat,
and the continuous 6D representation of Zhou et al. (CVPR 2019): the first two *columns* of
the matrix, ``[..., 6]``.

All functions have finite, correct gradients at the identity: the axis-angle map uses a
Taylor expansion below a small angle instead of dividing by the norm (``jnp.where`` with a
safe denominator, so that the unused branch produces no NaN in the backward pass).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this angle (radians) the series expansions are used; their truncation error is
# O(angle^4) ~ 1e-16 relative, far below float32 resolution.
_SMALL_ANGLE = 1e-4


def skew(v: jax.Array) -> jax.Array:
  """[..., 3] -> [..., 3, 3] cross-product matrix, ``skew(a) @ b == cross(a, b)``."""
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = jnp.zeros_like(x)
  return jnp.stack([
      jnp.stack([zero, -z, y], -1),
      jnp.stack([z, zero, -x], -1),
      jnp.stack([-y, x, zero], -1),
  ], -2)


def _safe_norm(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns ``(norm [...], small [...])``; the norm's gradient is finite at zero."""
  sq = jnp.sum(v * v, axis=-1)
  small = sq < _SMALL_ANGLE**2
  norm = jnp.sqrt(jnp.where(small, 1.0, sq))
  return jnp.where(small, 0.0, norm), small


def axis_angle_to_matrix(rotvec: jax.Array) -> jax.Array:
  """Rodrigues' formula: [..., 3] axis-angle -> [..., 3, 3] rotation matrix.

  ``R = I + sin(θ)/θ K + (1 - cos θ)/θ² K²`` with ``K = skew(rotvec)``; the two coefficients
  switch to their Taylor series near θ = 0.

  Warning: smplx adds 1e-8 to each component before taking the norm; hsjax does not, so the
  two agree to ~1e-7 rather than bit for bit.
  """
  theta, small = _safe_norm(rotvec)
  theta2 = theta * theta
  safe_theta = jnp.where(small, 1.0, theta)
  safe_theta2 = jnp.where(small, 1.0, theta2)
  sq = jnp.sum(rotvec * rotvec, axis=-1)
  a = jnp.where(small, 1.0 - sq / 6.0, jnp.sin(safe_theta) / safe_theta)
  b = jnp.where(small, 0.5 - sq / 24.0, (1.0 - jnp.cos(safe_theta)) / safe_theta2)
  k = skew(rotvec)
  eye = jnp.broadcast_to(jnp.eye(3, dtype=rotvec.dtype), k.shape)
  return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_quat(rot: jax.Array) -> jax.Array:
  """[..., 3, 3] rotation matrix -> [..., 4] unit quaternion (w, x, y, z), w >= 0.

  Shepperd's method: of the four candidate formulas the one with the largest divisor is used,
  so the result is accurate for every rotation, including 180°.
  """
  m = rot
  m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
  trace = m00 + m11 + m22
  cand = jnp.stack([
      jnp.stack([1.0 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                 m[..., 1, 0] - m[..., 0, 1]], -1),
      jnp.stack([m[..., 2, 1] - m[..., 1, 2], 1.0 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                 m[..., 0, 2] + m[..., 2, 0]], -1),
      jnp.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1.0 - m00 + m11 - m22,
                 m[..., 1, 2] + m[..., 2, 1]], -1),
      jnp.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                 m[..., 1, 2] + m[..., 2, 1], 1.0 - m00 - m11 + m22], -1),
  ], -2)  # [..., 4 candidates, 4]; candidate i has 4 q_i^2 at position i.
  diag = jnp.stack([1.0 + trace, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22,
                    1.0 - m00 - m11 + m22], -1)
  best = jnp.argmax(diag, axis=-1)
  q = jnp.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  return q * jnp.where(q[..., :1] < 0, -1.0, 1.0)


def quat_to_matrix(quat: jax.Array) -> jax.Array:
  """[..., 4] quaternion (w, x, y, z), any norm -> [..., 3, 3] rotation matrix.

  A zero quaternion (a learned one can reach it) maps to the identity with finite
  gradients instead of NaN. The rasteriser's projection has its own copy
  (``kernels.rasterize.projection.quat_to_rotmat``, same semantics): ``kernels/`` sits below
  ``hsjax`` and imports nothing from it.
  """
  zero = jnp.all(quat == 0, axis=-1, keepdims=True)
  # The norm of a safe stand-in: finite gradients at zero, and the plain norm elsewhere.
  q = quat / jnp.linalg.norm(jnp.where(zero, 1.0, quat), axis=-1, keepdims=True)
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  return jnp.stack([
      jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
      jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
      jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
  ], -2)


def quat_multiply(q1: jax.Array, q2: jax.Array) -> jax.Array:
  """Hamilton product of (w, x, y, z) quaternions: rotation ``q1`` after ``q2``."""
  w1, x1, y1, z1 = jnp.moveaxis(q1, -1, 0)
  w2, x2, y2, z2 = jnp.moveaxis(q2, -1, 0)
  return jnp.stack([
      w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
      w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
      w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
      w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
  ], -1)


def axis_angle_to_quat(rotvec: jax.Array) -> jax.Array:
  """[..., 3] axis-angle -> [..., 4] unit quaternion (w, x, y, z)."""
  theta, small = _safe_norm(rotvec)
  sq = jnp.sum(rotvec * rotvec, axis=-1)
  safe_theta = jnp.where(small, 1.0, theta)
  half_sinc = jnp.where(small, 0.5 - sq / 48.0, jnp.sin(0.5 * safe_theta) / safe_theta)
  w = jnp.where(small, 1.0 - sq / 8.0, jnp.cos(0.5 * safe_theta))
  return jnp.concatenate([w[..., None], half_sinc[..., None] * rotvec], -1)


def quat_to_axis_angle(quat: jax.Array) -> jax.Array:
  """[..., 4] quaternion (w, x, y, z) -> [..., 3] axis-angle with angle in [0, π]."""
  q = quat / jnp.linalg.norm(quat, axis=-1, keepdims=True)
  q = q * jnp.where(q[..., :1] < 0, -1.0, 1.0)  # the shorter of the two equivalent rotations
  w, xyz = q[..., 0], q[..., 1:]
  sin_half, small = _safe_norm(xyz)
  safe_sin = jnp.where(small, 1.0, sin_half)
  angle = 2.0 * jnp.arctan2(safe_sin, w)
  # Near the identity: 2 atan2(s, w) / s = (2 / w)(1 - s² / (3 w²)) + O(s⁴).
  safe_w = jnp.clip(w, 1e-12)
  scale = jnp.where(small, 2.0 / safe_w * (1.0 - jnp.sum(xyz * xyz, -1) / (3.0 * safe_w**2)),
                    angle / safe_sin)
  return scale[..., None] * xyz


def matrix_to_axis_angle(rot: jax.Array) -> jax.Array:
  """[..., 3, 3] rotation matrix -> [..., 3] axis-angle (angle in [0, π])."""
  return quat_to_axis_angle(matrix_to_quat(rot))


def matrix_to_rot6d(rot: jax.Array) -> jax.Array:
  """[..., 3, 3] -> [..., 6]: the first two columns, concatenated (Zhou et al. 2019)."""
  return jnp.concatenate([rot[..., :, 0], rot[..., :, 1]], -1)


def rot6d_to_matrix(rot6d: jax.Array) -> jax.Array:
  """[..., 6] -> [..., 3, 3] by Gram-Schmidt on the two columns (Zhou et al. 2019)."""
  a1, a2 = rot6d[..., :3], rot6d[..., 3:]
  b1 = a1 / jnp.linalg.norm(a1, axis=-1, keepdims=True)
  a2 = a2 - jnp.sum(b1 * a2, -1, keepdims=True) * b1
  b2 = a2 / jnp.linalg.norm(a2, axis=-1, keepdims=True)
  b3 = jnp.cross(b1, b2)
  return jnp.stack([b1, b2, b3], -1)


def axis_angle_to_rot6d(rotvec: jax.Array) -> jax.Array:
  """[..., 3] -> [..., 6]."""
  return matrix_to_rot6d(axis_angle_to_matrix(rotvec))


def rot6d_to_axis_angle(rot6d: jax.Array) -> jax.Array:
  """[..., 6] -> [..., 3]."""
  return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def geodesic_angle(rot_a: jax.Array, rot_b: jax.Array) -> jax.Array:
  """[..., 3, 3] x2 -> [...] angle (radians) of ``rot_aᵀ rot_b``; gradient-safe at zero."""
  rel = jnp.swapaxes(rot_a, -1, -2) @ rot_b
  return _safe_norm(matrix_to_axis_angle(rel))[0]
