"""Where a fit's checkpoints live, and how a fit resumes from them.

:class:`FitCheckpoints` (:func:`hsjax.fit`): one directory of ``ckpt_<step>.msgpack`` files,
each the whole :class:`~hsjax.fit.step.FitState`, the history and the config.

:class:`SubjectCheckpoints` (:func:`hsjax.fit_many`): one such directory per subject,
``<dir>/subject-<s>/``, holding that subject's rows of the state. Each subject is written by
the process whose devices hold it (in one process: all of them), so a multi-host fit writes
every subject once and a process only reads its own subjects' files on resume. Resume picks
the newest step every subject has (agreed across processes).
"""

from __future__ import annotations

import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from hsjax.fit import multihost
from hsjax.fit.config import RESUMABLE_FIELDS
from hsjax.fit.config import FitConfig
from hsjax.fit.step import FitState
from hsjax.io import checkpoint as ckpt_lib


def _tree(state, history: dict, config: FitConfig) -> dict:
  return {"state": flax.serialization.to_state_dict(state), "history": json.dumps(history),
          "config": config.to_json()}


def _load(path: str, target, config: FitConfig):
  """``(state like target, history)`` of one checkpoint file, after checking its config."""
  raw = ckpt_lib.load_raw(path)
  # A field the saved config lacks was added to FitConfig later: the checkpoint's fit ran
  # with what is now its default.
  saved = {**json.loads(FitConfig().to_json()), **json.loads(raw["config"])}
  current = json.loads(config.to_json())
  diff = {k: (saved.get(k), v) for k, v in current.items()
          if k not in RESUMABLE_FIELDS and saved.get(k) != v}
  if diff:
    raise ValueError(f"{path}: checkpoint was written with a different FitConfig; differing "
                     f"fields (saved, current): {diff}. Use another checkpoint_dir.")
  try:
    state = flax.serialization.from_state_dict(target, raw["state"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: checkpoint state does not match this fit's structure: {e}") from e
  if not np.array_equal(np.asarray(state.key), np.asarray(target.key)):
    raise ValueError(f"{path}: checkpoint was written by a fit with another key; use the "
                     "same key to resume, or another checkpoint_dir")
  return state, json.loads(raw["history"])


class FitCheckpoints:
  """The checkpoints of a single fit: ``<directory>/ckpt_<step>.msgpack``."""

  def __init__(self, directory: str, keep: int):
    self.directory = directory
    self.keep = keep

  def latest(self) -> str | None:
    """The newest checkpoint's path (None: none yet)."""
    found = ckpt_lib.latest_checkpoint(self.directory)
    return found[1] if found else None

  def save(self, step: int, state: FitState, history: dict, config: FitConfig) -> str:
    return ckpt_lib.save(self.directory, step, _tree(jax.device_get(state), history, config),
                         keep=self.keep)

  def restore(self, initial: FitState, config: FitConfig) -> tuple[FitState, dict] | None:
    """``(state, history)`` of the newest checkpoint, or None when there is none."""
    path = self.latest()
    if path is None:
      return None
    state, history = _load(path, jax.device_get(initial), config)
    return jax.tree_util.tree_map(jnp.asarray, state), history


class SubjectCheckpoints:
  """The checkpoints of a multi-subject fit: ``<directory>/subject-<s>/ckpt_<step>.msgpack``.

  Args:
    directory: the fit's checkpoint directory.
    keep: checkpoints kept per subject.
    num_subjects: S.
    mesh: the fit's device mesh (None: this process holds every subject).
  """

  def __init__(self, directory: str, keep: int, num_subjects: int, mesh=None):
    self.directory = directory
    self.keep = keep
    self.num_subjects = num_subjects
    self.owned = owned_subjects(num_subjects, mesh)

  def subject_dir(self, subject: int) -> str:
    return os.path.join(self.directory, f"subject-{subject:03d}")

  def _step_pattern(self, step: int) -> str:
    """``<directory>/subject-*/ckpt_<step>.msgpack``: one step's files of every subject."""
    return ckpt_lib.checkpoint_path(os.path.join(self.directory, "subject-*"), step)

  def latest(self) -> str | None:
    """This process's newest step that all its subjects have (as :meth:`_step_pattern`)."""
    step = self._local_common_step()
    return None if step < 0 else self._step_pattern(step)

  def _local_common_step(self) -> int:
    """The newest step every subject of this process has a checkpoint of (-1: none)."""
    steps = None
    for s in self.owned:
      have = {step for step, _ in ckpt_lib.list_checkpoints(self.subject_dir(s))}
      steps = have if steps is None else steps & have
    return max(steps) if steps else -1

  def save(self, step: int, state: FitState, history: dict, config: FitConfig) -> str:
    rows = multihost.local_subjects(state, self.num_subjects)
    for s in self.owned:
      ckpt_lib.save(self.subject_dir(s), step, _tree(rows[s], history, config), keep=self.keep)
    return self._step_pattern(step)

  def restore(self, initial: FitState, config: FitConfig) -> tuple[FitState, dict] | None:
    """``(state, history)`` at the newest step that every subject of every process has; None
    when some subject has none. Rows of subjects held by other processes keep ``initial``'s
    values (the sharded device copy takes only this process's rows)."""
    step = multihost.agree_min(self._local_common_step())
    if step < 0:
      return None
    host = jax.device_get(initial)
    leaves, treedef = jax.tree_util.tree_flatten(host)
    leaves = [np.array(x) for x in leaves]
    history = None
    for s in self.owned:
      path = ckpt_lib.checkpoint_path(self.subject_dir(s), step)
      if not os.path.exists(path):
        raise ValueError(f"{path}: missing; the processes of this fit last checkpointed "
                         f"different steps, and subject {s} has no checkpoint at step {step}, "
                         "the newest one every subject has")
      target = jax.tree_util.tree_map(lambda x, s=s: x[s], host)
      row, history = _load(path, target, config)
      for leaf, value in zip(leaves, jax.tree_util.tree_leaves(row)):
        leaf[s] = value
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves])
    return state, history


def owned_subjects(num_subjects: int, mesh=None) -> list[int]:
  """The subjects this process writes: those on its devices of ``mesh``'s ``"subject"``
  axis (a subject also held by other processes belongs to the lowest-numbered one)."""
  if mesh is None:
    return list(range(num_subjects))
  axis = mesh.axis_names.index("subject")
  blocks = mesh.shape["subject"]
  per_block = num_subjects // blocks
  owned = []
  for b in range(blocks):
    holders = {d.process_index for d in np.take(mesh.devices, [b], axis=axis).flat}
    if min(holders) == jax.process_index():
      owned.extend(range(b * per_block, (b + 1) * per_block))
  return owned
