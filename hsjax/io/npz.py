"""Reading ``.npz`` files without pickles, with errors that name the file."""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def _describe_head(head: bytes) -> str:
  if not head:
    return "an empty file"
  if head.startswith(b"\x93NUMPY"):
    return "a single .npy array (np.save), not an .npz archive (np.savez)"
  if head[:1] == b"\x80":
    return "a pickle"
  try:
    text = head.decode("utf-8")
  except UnicodeDecodeError:
    return f"binary data starting with {head[:8]!r}"
  return f"text starting with {text[:24]!r}"


def read_npz(path: str, what: str) -> dict:
  """All arrays of an ``.npz`` (no pickles); ``what`` names the file in the error.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a zip archive of ``.npy`` arrays (the message says what it is), a corrupt
      member (named), or a member holding pickled objects; every message names ``path``.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  if os.path.isdir(path):
    raise ValueError(f"{path}: {what} expected, found a directory")
  with open(path, "rb") as f:
    head = f.read(32)
  if not head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
    raise ValueError(f"{path}: {what} must be an .npz archive (np.savez), found "
                     f"{_describe_head(head)}")
  out = {}
  try:
    # np.load leaks its file handle when the zip directory is damaged: hold it ourselves.
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as f:
      for key in f.files:
        try:
          out[key] = f[key]
        except ValueError as e:
          if "pickled" in str(e) or "Object arrays" in str(e):
            raise ValueError(f"{path}: member '{key}' holds pickled objects; expected numeric "
                             "or string arrays") from None
          raise ValueError(f"{path}: member '{key}' is corrupt: {e}") from e
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
          raise ValueError(f"{path}: member '{key}' is corrupt ({type(e).__name__}: {e})") from e
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
    raise ValueError(f"{path}: {what} is a damaged zip archive ({type(e).__name__}: {e})") from e
  return out
