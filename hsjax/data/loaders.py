"""``load_sequence``: one entry point for the hsjax layout and the importers' formats."""

from __future__ import annotations

import os

from hsjax.data import importers
from hsjax.data import io as io_lib
from hsjax.data import sequence as seq_lib

FORMATS = ("hsjax", "4dhumans", "neuman", "peoplesnapshot", "zju")


def detect_format(path: str) -> str:
  """Guesses the layout of ``path`` from the files it holds."""
  def has(*names):
    return all(os.path.exists(os.path.join(path, n)) for n in names)

  if os.path.isfile(path) and path.endswith(".pkl"):
    return "4dhumans"
  if os.path.isdir(path):
    if has("sequence.npz"):
      return "hsjax"
    if has("annots.npy"):
      return "zju"
    if has("smpl_output_optimized.pkl", "alignments.npy"):
      return "neuman"
    if has("cameras.npz", "poses"):
      return "peoplesnapshot"
    if any(f.endswith(".pkl") for f in os.listdir(path)) and has("images"):
      return "4dhumans"
  raise ValueError(f"{path}: cannot detect the sequence format; pass format= one of {FORMATS}")


# `format` shadows the builtin on purpose: it is the public keyword of the API.
def load_sequence(path: str, format: str = "auto",  # pylint: disable=redefined-builtin
                  **kwargs) -> seq_lib.Sequence:
  """Loads a sequence from disk.

  Args:
    path: a directory (or, for ``"4dhumans"``, a PHALP ``.pkl``).
    format: ``"auto"`` or one of :data:`FORMATS`.
    **kwargs: importer options (see :mod:`hsjax.data.importers`).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"sequence not found: {path}")
  if format == "auto":
    format = detect_format(path)
  if format == "hsjax":
    return io_lib.load_hsjax(path)
  if format in FORMATS:
    try:
      return importers.IMPORTERS[format](path, **kwargs)
    except (FileNotFoundError, ValueError):
      raise
    except (KeyError, IndexError, TypeError, AttributeError, OSError, EOFError) as e:
      # A layout the importer did not anticipate: still one message naming the input.
      raise ValueError(f"{path}: not a readable '{format}' input ({type(e).__name__}: {e}); "
                       "see hsjax/data/README.md for the layout") from e
  raise ValueError(f"unknown sequence format '{format}'; valid: {('auto',) + FORMATS}")
