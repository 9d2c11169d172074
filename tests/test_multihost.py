"""A fit_many over two processes (JAX's distributed runtime, CPU devices, gloo collectives)
equals the single-process fit_many, in one round or two, and writes each subject's checkpoints
once, from the process that holds the subject; killed and resumed over two processes, it ends
at the same parameters."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from hsjax import body as body_lib
from hsjax import fit as fit_lib
from hsjax.io import checkpoint as ckpt_lib

import test_fit

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")
PROCESSES = 2


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_processes(out_dir, checkpoint_dir, rounds: int = 1):
  """Starts the worker in PROCESSES processes of one device each; returns their outputs."""
  port = _free_port()
  # This process's XLA flags (the same compilation as the reference), one device each.
  xla_flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(
      [*xla_flags, "--xla_force_host_platform_device_count=1"]))
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), str(PROCESSES), str(port),
                             str(out_dir), str(checkpoint_dir), str(rounds)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(PROCESSES)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=900)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"process {i} failed:\n{log[-4000:]}"
  reports = []
  for i in range(PROCESSES):
    with open(os.path.join(out_dir, f"process-{i}.json")) as f:
      reports.append(json.load(f))
  return reports


@pytest.fixture(scope="module")
def single_process():
  """The reference: the same fit_many in this process (unsharded)."""
  return fit_lib.fit_many(test_fit.two_subjects(), test_fit.CONFIG,
                          keys=test_fit.many_keys(), losses=test_fit.LOSSES,
                          body_model=body_lib.load_body_model("default"))


def _assert_equal_to_reference(out_dir, reference):
  got = np.load(os.path.join(out_dir, "params.npz"))
  want = jax.tree_util.tree_leaves(reference.state.params)
  assert len(got.files) == len(want)
  for i, w in enumerate(want):
    np.testing.assert_allclose(got[f"arr_{i}"], np.asarray(w), rtol=test_fit.MULTI_TOL,
                               atol=test_fit.MULTI_TOL)


def test_two_processes_equal_one(tmp_path, single_process):
  checkpoint_dir = tmp_path / "ckpt"
  reports = _run_processes(tmp_path, checkpoint_dir)
  assert [r["devices"] for r in reports] == [PROCESSES] * PROCESSES  # one global mesh
  assert [r["owned"] for r in reports] == [[0], [1]]  # each process checkpoints its subject
  _assert_equal_to_reference(tmp_path, single_process)
  np.testing.assert_allclose(reports[0]["total"], single_process.history["total"][-1],
                             rtol=test_fit.MULTI_TOL)
  for s in range(PROCESSES):
    steps = [step for step, _ in ckpt_lib.list_checkpoints(checkpoint_dir / f"subject-{s:03d}")]
    assert steps[-1] == test_fit.CONFIG.steps


def test_two_processes_fit_two_rounds_as_one(tmp_path):
  """Between rounds the poses are gathered from both processes: two rounds over two processes
  equal two rounds in one, and each process writes its subject's round-2 checkpoints."""
  config = dataclasses.replace(test_fit.CONFIG, rounds=2)
  reference = fit_lib.fit_many(test_fit.two_subjects(), config, keys=test_fit.many_keys(),
                               losses=test_fit.LOSSES,
                               body_model=body_lib.load_body_model("default"))
  checkpoint_dir = tmp_path / "ckpt"
  _run_processes(tmp_path, checkpoint_dir, rounds=2)
  _assert_equal_to_reference(tmp_path, reference)
  for s in range(PROCESSES):
    steps = [step for step, _ in
             ckpt_lib.list_checkpoints(checkpoint_dir / "round-2" / f"subject-{s:03d}")]
    assert steps[-1] == test_fit.CONFIG.steps


@pytest.mark.slow
def test_two_processes_resume_where_they_stopped(tmp_path, single_process):
  checkpoint_dir = tmp_path / "ckpt"
  _run_processes(tmp_path, checkpoint_dir)
  # A run killed after its step-4 checkpoints: the final ones never written.
  for s in range(PROCESSES):
    os.remove(ckpt_lib.checkpoint_path(checkpoint_dir / f"subject-{s:03d}",
                                       test_fit.CONFIG.steps))
  os.remove(tmp_path / "params.npz")
  _run_processes(tmp_path, checkpoint_dir)
  _assert_equal_to_reference(tmp_path, single_process)
