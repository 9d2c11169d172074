"""SMPL parameters as ``.npz`` in smplx's naming.

Layout (what ``smplx.SMPL(...)(**{k: torch.tensor(v)})`` takes): ``betas [1, B]``,
``global_orient [T, 3]``, ``body_pose [T, 69]`` (23 joints x axis-angle, SMPL order),
``transl [T, 3]``, float32, world frame of the sequence's cameras, plus ``fps []``.
Feeding them to ``smplx.SMPL`` with the same model file gives the vertices of
:func:`hsjax.body.body_forward` (tested).
"""

from __future__ import annotations

import numpy as np

from hsjax import body as body_lib
from hsjax.io.npz import read_npz


def save_smpl_npz(path: str, params: body_lib.SMPLParams, *, fps: float | None = None) -> None:
  """Writes SMPL parameters in smplx's naming (see the module docstring)."""
  body_pose = np.asarray(params.body_pose, np.float32)
  if body_pose.ndim != 3 or body_pose.shape[1:] != (23, 3):
    raise ValueError(f"save_smpl_npz: body_pose must be [T, 23, 3], found {body_pose.shape}")
  num_frames = body_pose.shape[0]
  betas = np.asarray(params.betas, np.float32)
  if betas.ndim != 1:
    raise ValueError(f"save_smpl_npz: betas must be [B] (shared), found {betas.shape}")
  arrays = {"betas": betas[None], "global_orient": np.asarray(params.global_orient, np.float32),
            "body_pose": body_pose.reshape(num_frames, 69),
            "transl": np.asarray(params.transl, np.float32)}
  if fps is not None:
    arrays["fps"] = np.asarray(float(fps))
  np.savez(path, **arrays)


def load_smpl_npz(path: str) -> body_lib.SMPLParams:
  """Reads :func:`save_smpl_npz`'s layout back (``body_pose [T, 69]`` or ``[T, 23, 3]``)."""
  data = read_npz(path, "SMPL parameter file")
  missing = [k for k in body_lib.SMPL_PARAM_FIELDS if k not in data]
  if missing:
    raise ValueError(f"{path}: missing field(s) {missing}; found {sorted(data)}")
  body_pose = data["body_pose"]
  if body_pose.ndim != 2 or body_pose.shape[1] != 69:
    if body_pose.shape[1:] != (23, 3):
      raise ValueError(f"{path}: field 'body_pose' must be [T, 69] or [T, 23, 3], found "
                       f"{list(body_pose.shape)}")
  num_frames = body_pose.shape[0]
  betas = data["betas"]
  if betas.ndim == 2:
    if betas.shape[0] != 1:
      raise ValueError(f"{path}: field 'betas' must be [1, B] or [B], found {list(betas.shape)}")
    betas = betas[0]
  for key in ("global_orient", "transl"):
    if data[key].shape != (num_frames, 3):
      raise ValueError(f"{path}: field '{key}' must be [{num_frames}, 3], found "
                       f"{list(data[key].shape)}")
  return body_lib.SMPLParams(betas=betas.astype(np.float32),
                             body_pose=body_pose.reshape(num_frames, 23, 3).astype(np.float32),
                             global_orient=data["global_orient"].astype(np.float32),
                             transl=data["transl"].astype(np.float32))
