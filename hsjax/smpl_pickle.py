"""Safe readers for SMPL model files (``.pkl`` with chumpy / scipy objects, ``.npz``)."""

from __future__ import annotations

import numpy as np


def load_npz_restricted(path: str) -> dict:
  """Reads an SMPL-format ``.npz`` without executing pickled code."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      return {k: npz[k] for k in npz.files}
  except ValueError as e:
    raise NotImplementedError(
        f"{path}: holds pickled object arrays, which are not read yet") from e


def load_smpl_pickle(path: str) -> dict:
  raise NotImplementedError(f"{path}: SMPL .pkl reading is not implemented yet")
