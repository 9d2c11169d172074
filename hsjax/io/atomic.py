"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import os


def write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path`` atomically."""
  write_bytes(path, text.encode("utf-8"))
