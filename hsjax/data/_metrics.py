"""Small pose-error helpers for checking the simulated HMR presets (numpy, millimetres).

The library's metrics live in :mod:`hsjax.metrics`; these exist so that the data package
can report the error of its noise presets without depending on it. Definitions as in the
3DPW / EMDB literature: MPJPE after aligning the pelvis (joint 0); PA-MPJPE after a
per-frame similarity Procrustes alignment (Umeyama 1991, with scale); root error = distance
between the pelvis joints in the world frame.
"""

from __future__ import annotations

import numpy as np


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
  """Mean joint error after pelvis alignment: joints [T, J, 3] metres -> mm."""
  p = pred - pred[:, :1]
  g = gt - gt[:, :1]
  return float(np.linalg.norm(p - g, axis=-1).mean() * 1000.0)


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """Similarity transform of ``pred`` [J, 3] onto ``gt`` [J, 3] (least squares)."""
  mu_p, mu_g = pred.mean(0), gt.mean(0)
  x, y = pred - mu_p, gt - mu_g
  cov = y.T @ x / len(x)
  u, s, vt = np.linalg.svd(cov)
  d = np.sign(np.linalg.det(u @ vt))
  corr = np.diag([1.0, 1.0, d])
  rot = u @ corr @ vt
  scale = np.trace(np.diag(s) @ corr) / (x**2).sum(1).mean()
  return scale * x @ rot.T + mu_g


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
  """Mean joint error after per-frame Procrustes alignment with scale: [T, J, 3] -> mm."""
  aligned = np.stack([procrustes_align(p, g) for p, g in zip(pred, gt)])
  return float(np.linalg.norm(aligned - gt, axis=-1).mean() * 1000.0)


def root_error(pred: np.ndarray, gt: np.ndarray) -> float:
  """Mean pelvis position error in the world frame: [T, J, 3] -> mm."""
  return float(np.linalg.norm(pred[:, 0] - gt[:, 0], axis=-1).mean() * 1000.0)
