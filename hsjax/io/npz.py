"""Reading ``.npz`` files without pickles, with errors that name the file."""

from __future__ import annotations

import os

import numpy as np


def read_npz(path: str, what: str) -> dict:
  """All arrays of an ``.npz`` (no pickles); ``what`` names the file in the error."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}
