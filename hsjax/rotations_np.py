"""Host-side (numpy, float64) rotation helpers for motion import and data, built on scipy.

Mocap files are read and retargeted once, on the host, before anything reaches ``jit``; float64
keeps long kinematic chains (BVH hierarchies of 60+ joints) free of round-off drift. The JAX
twins used inside the fitting loop are in :mod:`hsjax.rotations`; both use (w, x, y, z)
quaternions at their interfaces (scipy's own order, (x, y, z, w), never leaves this module).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def _flat(x: np.ndarray, tail: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
  x = np.asarray(x, np.float64)
  lead = x.shape[:x.ndim - len(tail)]
  return x.reshape((-1,) + tail), lead


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
  """[..., 3] axis-angle (radians) -> [..., 3, 3]."""
  flat, lead = _flat(rotvec, (3,))
  return Rotation.from_rotvec(flat).as_matrix().reshape(lead + (3, 3))


def matrix_to_axis_angle(rot: np.ndarray) -> np.ndarray:
  """[..., 3, 3] -> [..., 3] axis-angle with angle in [0, π]."""
  flat, lead = _flat(rot, (3, 3))
  return Rotation.from_matrix(flat).as_rotvec().reshape(lead + (3,))


def quat_to_matrix(quat_wxyz: np.ndarray) -> np.ndarray:
  """[..., 4] quaternion (w, x, y, z), any non-zero norm -> [..., 3, 3]."""
  flat, lead = _flat(quat_wxyz, (4,))
  norm = np.linalg.norm(flat, axis=-1)
  if np.any(norm < 1e-12):
    raise ValueError("zero-length quaternion")
  return Rotation.from_quat(flat[:, [1, 2, 3, 0]]).as_matrix().reshape(lead + (3, 3))


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
  """[..., 3, 3] -> [..., 4] unit quaternion (w, x, y, z) with w >= 0."""
  flat, lead = _flat(rot, (3, 3))
  q = Rotation.from_matrix(flat).as_quat()[:, [3, 0, 1, 2]]
  q *= np.where(q[:, :1] < 0, -1.0, 1.0)
  return q.reshape(lead + (4,))


def euler_to_matrix(order: str, angles_deg: np.ndarray) -> np.ndarray:
  """BVH-style Euler angles -> [..., 3, 3].

  Args:
    order: axis letters in the order the file lists the channels, e.g. ``"ZXY"``.
    angles_deg: [..., 3] angles in degrees, in that same order.

  Returns:
    ``R = R_order[0](a0) @ R_order[1](a1) @ R_order[2](a2)`` (intrinsic rotations, the BVH
    convention: the first listed channel is the outermost factor).
  """
  flat, lead = _flat(angles_deg, (3,))
  return Rotation.from_euler(order.upper(), flat, degrees=True).as_matrix().reshape(lead + (3, 3))


def matrix_to_euler(order: str, rot: np.ndarray) -> np.ndarray:
  """Inverse of :func:`euler_to_matrix`: [..., 3, 3] -> [..., 3] degrees."""
  flat, lead = _flat(rot, (3, 3))
  return Rotation.from_matrix(flat).as_euler(order.upper(), degrees=True).reshape(lead + (3,))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The smallest rotation taking direction ``a`` [..., 3] onto direction ``b`` [..., 3].

  Antiparallel inputs rotate by π about an axis perpendicular to ``a`` (any such axis is
  minimal; the one closest to the x, y or z axis least aligned with ``a`` is used). Zero-length
  inputs give the identity.
  """
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  shape = np.broadcast_shapes(a.shape, b.shape)
  a = np.broadcast_to(a, shape).reshape(-1, 3)
  b = np.broadcast_to(b, shape).reshape(-1, 3)
  na = np.linalg.norm(a, axis=-1, keepdims=True)
  nb = np.linalg.norm(b, axis=-1, keepdims=True)
  degenerate = (na[:, 0] < 1e-12) | (nb[:, 0] < 1e-12)
  a = a / np.maximum(na, 1e-12)
  b = b / np.maximum(nb, 1e-12)
  axis = np.cross(a, b)
  sin = np.linalg.norm(axis, axis=-1)
  cos = np.sum(a * b, axis=-1)
  angle = np.arctan2(sin, cos)
  # Antiparallel: a perpendicular axis from the coordinate axis least aligned with ``a``.
  anti = (sin < 1e-9) & (cos < 0)
  helper = np.eye(3)[np.argmin(np.abs(a), axis=-1)]
  perp = np.cross(a, helper)
  axis = np.where(anti[:, None], perp, axis)
  axis_norm = np.linalg.norm(axis, axis=-1, keepdims=True)
  unit = np.where(axis_norm > 1e-12, axis / np.maximum(axis_norm, 1e-12), 0.0)
  rotvec = unit * np.where(degenerate, 0.0, angle)[:, None]
  return Rotation.from_rotvec(rotvec).as_matrix().reshape(shape[:-1] + (3, 3))


def fractional(rot: np.ndarray, fraction: float) -> np.ndarray:
  """``rot ** fraction`` along its own axis ([..., 3, 3]); ``fractional(R, 1/n)^n == R``."""
  return axis_angle_to_matrix(matrix_to_axis_angle(rot) * fraction)


def slerp_quat(q0: np.ndarray, q1: np.ndarray, w: np.ndarray) -> np.ndarray:
  """Spherical linear interpolation of (w, x, y, z) quaternions along the shorter arc.

  Args:
    q0, q1: [..., 4] unit quaternions.
    w: [...] interpolation weights in [0, 1] (0 gives ``q0``).

  Returns:
    [..., 4] unit quaternions.
  """
  q0 = np.asarray(q0, np.float64)
  q1 = np.asarray(q1, np.float64)
  w = np.asarray(w, np.float64)[..., None]
  dot = np.sum(q0 * q1, axis=-1, keepdims=True)
  q1 = np.where(dot < 0, -q1, q1)  # q and -q are the same rotation: take the shorter arc
  dot = np.abs(dot)
  theta = np.arccos(np.clip(dot, -1.0, 1.0))
  sin = np.sin(theta)
  close = sin < 1e-6
  safe = np.where(close, 1.0, sin)
  a = np.where(close, 1.0 - w, np.sin((1.0 - w) * theta) / safe)
  b = np.where(close, w, np.sin(w * theta) / safe)
  out = a * q0 + b * q1
  return out / np.linalg.norm(out, axis=-1, keepdims=True)


def angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Angle in degrees between directions [..., 3] and [..., 3] (robust near 0 and 180°)."""
  u = np.asarray(u, np.float64)
  v = np.asarray(v, np.float64)
  return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.sum(u * v, axis=-1)))
