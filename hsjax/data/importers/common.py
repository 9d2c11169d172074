"""Helpers shared by the importers: safe pickle reading, frame lists, re-rooting, validation."""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax import smpl_pickle
from hsjax.data import hmr_noise as noise_lib
from hsjax.data import io as io_lib
from hsjax.data import sequence as seq_lib

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


# ------------------------------------------------------------------------------------------
# Shared helpers


def read_pickle(path: str):
  """A pickle or ``joblib.dump`` file (compressed or not), read without running code.

  Raises:
    FileNotFoundError: no such file (the message names it).
    ValueError: a refused (code-referencing or over-size) or malformed file; the message names
      the file.
  """
  return smpl_pickle.read_naming_the_file(smpl_pickle.load_pickle, path, "pickle")


def read_npy_object(path: str):
  """An ``.npy`` (numeric, or holding a pickled object such as a dict), read without running
  code; a 0-d object array becomes the object it holds."""
  return smpl_pickle.read_naming_the_file(smpl_pickle.load_npy, path, ".npy file")


def require_files(root: str, names, what: str) -> None:
  """Raises one ``FileNotFoundError`` naming every missing file of a layout.

  Args:
    root: the sequence folder.
    names: paths relative to ``root`` (a tuple of alternatives counts as present if any is).
    what: the layout, for the message (e.g. "a PeopleSnapshot subject").
  """
  missing = []
  for name in names:
    alts = name if isinstance(name, tuple) else (name,)
    if not any(os.path.exists(os.path.join(root, a)) for a in alts):
      missing.append(" or ".join(alts))
  if missing:
    raise FileNotFoundError(f"{root}: not {what}: missing {', '.join(missing)}")


def frame_list(folder: str, field: str, exts=_IMAGE_EXTS) -> list[str]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{folder}: {field} folder not found")
  files = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in exts)
  if not files:
    raise ValueError(f"{folder}: no {field} files ({'/'.join(exts)})")
  return [os.path.join(folder, f) for f in files]


def image_size(path: str) -> tuple[int, int]:
  img = io_lib.load_image(path)
  return img.shape[0], img.shape[1]


def rest_pelvis(model: body_lib.BodyModel, betas: np.ndarray) -> np.ndarray:
  betas = np.asarray(betas, np.float64)
  if betas.shape[0] < model.num_betas:
    betas = np.concatenate([betas, np.zeros(model.num_betas - betas.shape[0])])
  shaped = (np.asarray(model.v_template, np.float64)
            + np.asarray(model.shapedirs, np.float64) @ betas[:model.num_betas])
  return np.asarray(model.J_regressor, np.float64)[0] @ shaped


def fit_betas(betas: np.ndarray, model: body_lib.BodyModel, source: str) -> np.ndarray:
  """Pads with zeros or truncates to the model's number of shape components."""
  betas = np.asarray(betas, np.float32).reshape(-1)
  b = model.num_betas
  return np.concatenate([betas, np.zeros(max(0, b - len(betas)), np.float32)])[:b]


def reroot(rot_world: np.ndarray, t_world: np.ndarray, root_orient: np.ndarray,
           pelvis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """SMPL ``(global_orient, transl)`` of ``v = R · SMPL(root_orient, transl=0) + t``.

  Args:
    rot_world: [T, 3, 3] rotation applied to the posed mesh about the origin.
    t_world: [T, 3] translation added afterwards.
    root_orient: [T, 3] SMPL root axis-angle inside the mesh.
    pelvis: [3] rest pelvis joint ``J0(β)``.
  """
  orient = Rotation.from_matrix(rot_world) * Rotation.from_rotvec(root_orient)
  transl = np.einsum("tij,j->ti", rot_world, pelvis) + t_world - pelvis
  return orient.as_rotvec().astype(np.float32), transl.astype(np.float32)


def finish(seq: seq_lib.Sequence, source: str, hmr_noise, seed: int, model) -> seq_lib.Sequence:
  """Optionally replaces hmr by simulated HMR noise on the (pseudo-)GT, then validates."""
  if hmr_noise is not None:
    if seq.gt is None:
      raise ValueError(f"{source}: hmr_noise needs ground-truth parameters to corrupt")
    seq.hmr = noise_lib.simulate_hmr(seq.gt, seq.cameras, hmr_noise, seed=seed, fps=seq.fps,
                                     model=model)
    seq.metadata["hmr"] = f"simulated from the fitted SMPL with preset {hmr_noise!r}, seed {seed}"
  seq = seq_lib.validate_sequence(seq, source)
  if np.asarray(seq.masks[0]).max() <= 0:
    where = seq.masks.paths[0] if isinstance(seq.masks, seq_lib.LazyFrames) else source
    raise ValueError(f"{where}: field 'masks' frame 0 is empty (no person pixel)")
  return seq


def lazy_frames(paths, loader, shape, field):
  return seq_lib.LazyFrames(paths, loader, shape, field=field)


def body_model_or_default(body_model):
  return body_model if body_model is not None else body_lib.load_body_model("default")
