"""Fits over several processes (hosts) on JAX's own distributed runtime.

A multi-host :func:`hsjax.fit_many` runs the *same* call in every process, after
:func:`initialize`, with a ``"subject"`` mesh over all processes' devices
(``jax.make_mesh((jax.device_count(),), ("subject",))``). The jitted step needs no
communication (subjects are independent); what crosses processes is host-side bookkeeping:

* values the loop reads on the host (losses, the finiteness check, the step counter) are
  gathered from every process (:func:`to_host`), so every process logs the same history and
  stops at the same step;
* checkpoints are written per subject, each by the process whose devices hold it
  (:func:`local_subjects`), and a resume agrees on one step across processes
  (:func:`agree_min`).

Every process must call these functions at the same points (they are collectives when the
fit spans processes); in a single process they are plain numpy conversions.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str = "gloo") -> None:
  """Joins this process to a multi-process JAX runtime (call before any other JAX work).

  Args:
    coordinator_address: ``host:port`` of process 0 (default: ``JAX_COORDINATOR_ADDRESS``,
      or what SLURM / a Cloud TPU slice / Open MPI tell JAX).
    num_processes, process_id: this run's size and this process's rank (default: detected
      from SLURM, a TPU slice, Open MPI or Kubernetes).
    cpu_collectives: the CPU collectives implementation (``"gloo"`` works everywhere, also
      between processes on one machine); it only matters where the devices are CPUs.
  """
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def _spans_processes(x: Any) -> bool:
  return isinstance(x, jax.Array) and not x.is_fully_addressable


def to_host(tree: Any) -> Any:
  """Numpy copies of a pytree's arrays; arrays with shards on other processes' devices are
  gathered first (a collective: every process must call it)."""

  def one(x):
    if _spans_processes(x):
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree_util.tree_map(one, tree)


def addressable(tree: Any) -> Any:
  """``tree`` itself when this process holds all of it, else :func:`to_host` of it."""
  if any(_spans_processes(x) for x in jax.tree_util.tree_leaves(tree)):
    return to_host(tree)
  return tree


def put(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """``jax.device_put`` onto a sharding that may span processes.

  Each process supplies only the parts of each array that its devices hold, so those may
  differ between processes (rows restored from this process's own checkpoints); across
  processes ``jax.device_put`` would instead require equal values everywhere.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(x):
    if _spans_processes(x):
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree_util.tree_map(one, tree)


def local_rows(sharding: jax.sharding.Sharding, num_rows: int) -> set[int]:
  """The rows (of an array with ``num_rows`` leading rows) that this process's devices hold
  under ``sharding``."""
  rows = set()
  for index in sharding.addressable_devices_indices_map((num_rows,)).values():
    rows.update(range(num_rows)[index[0]])
  return rows


def local_subjects(tree: Any, num_subjects: int) -> dict[int, Any]:
  """The subjects whose rows live on this process's devices, as host pytrees.

  Args:
    tree: a pytree whose leaves all have a leading subject axis of size ``num_subjects``
      (sharded over it, or held whole by this process).
    num_subjects: S.

  Returns:
    ``{subject index: the pytree of that subject's rows (numpy)}``, only for subjects every
    leaf of which this process holds.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  rows: list[dict[int, np.ndarray]] = []
  for leaf in leaves:
    found = {}
    if _spans_processes(leaf):
      for shard in leaf.addressable_shards:
        subjects = range(num_subjects)[shard.index[0]]
        data = np.asarray(shard.data)
        for j, s in enumerate(subjects):
          found[s] = data[j]
    else:
      data = np.asarray(leaf)
      found = {s: data[s] for s in range(num_subjects)}
    rows.append(found)
  held = set.intersection(*(set(r) for r in rows)) if rows else set()
  return {s: jax.tree_util.tree_unflatten(treedef, [r[s] for r in rows]) for s in sorted(held)}


def agree_min(value: int) -> int:
  """The smallest of every process's ``value`` (a collective when there are several)."""
  if jax.process_count() == 1:
    return int(value)
  gathered = multihost_utils.process_allgather(np.asarray(value, np.int64))
  return int(np.min(gathered))
