"""Checkpoints of a fit: one msgpack file per save, written atomically.

A checkpoint holds the complete state a fit needs to continue bit for bit (parameters,
optimiser state, step, density statistics, the history so far) as a pytree serialised with
``flax.serialization`` (msgpack). Saving writes ``<dir>/ckpt_<step>.msgpack.tmp``, flushes and
fsyncs it, then renames it over the final name (``os.replace`` is atomic on POSIX), so a fit
killed mid-write leaves either the previous checkpoint or the new one, never a torn file.
Older checkpoints beyond ``keep`` are deleted only after the new one is in place.

Restoring reads the raw contents (:func:`load_raw`); the fit puts them into the structure of
a freshly initialised state (``flax.serialization.from_state_dict``), which checks structure
and shapes.
"""

from __future__ import annotations

import os
import re
from typing import Any

import flax.serialization
import jax
import numpy as np

_PATTERN = re.compile(r"^ckpt_(\d+)\.msgpack$")


def checkpoint_path(directory: str, step: int) -> str:
  """``<directory>/ckpt_<step>.msgpack`` (step zero-padded to 8 digits, so names sort)."""
  return os.path.join(directory, f"ckpt_{step:08d}.msgpack")


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
  """``[(step, path), ...]`` of complete checkpoints in ``directory``, oldest first."""
  if not os.path.isdir(directory):
    return []
  found = []
  for name in os.listdir(directory):
    match = _PATTERN.match(name)
    if match:
      found.append((int(match.group(1)), os.path.join(directory, name)))
  return sorted(found)


def latest_checkpoint(directory: str) -> tuple[int, str] | None:
  """``(step, path)`` of the newest checkpoint, or ``None`` when there is none."""
  found = list_checkpoints(directory)
  return found[-1] if found else None


def save(directory: str, step: int, tree: Any, *, keep: int = 2) -> str:
  """Writes ``tree`` as the checkpoint of ``step`` atomically; returns its path.

  Args:
    directory: created if missing.
    step: the number of completed optimisation steps the tree reflects.
    tree: any pytree of arrays / numbers / dicts that flax can serialise (jax PRNG keys must
      already be converted with ``jax.random.key_data``).
    keep: the newest ``keep`` checkpoints are kept, older ones deleted (>= 1).
  """
  if keep < 1:
    raise ValueError(f"checkpoint keep must be >= 1, found {keep}")
  os.makedirs(directory, exist_ok=True)
  path = checkpoint_path(directory, step)
  data = flax.serialization.to_bytes(jax.device_get(tree))
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  for _, old in list_checkpoints(directory)[:-keep]:
    os.remove(old)
  return path


def load_raw(path: str) -> dict:
  """A checkpoint's contents as nested dicts of numpy arrays / strings (no target needed)."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return flax.serialization.msgpack_restore(data)
  except Exception as e:  # msgpack raises several unrelated types on corrupt input
    raise ValueError(f"{path}: not a readable checkpoint: {type(e).__name__}: {e}") from e


def tree_equal(a: Any, b: Any) -> bool:
  """True when two pytrees have the same structure and bitwise equal leaves."""
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
