"""A fit killed while it writes a checkpoint: the previous checkpoint restores and the resumed
fit ends where an uninterrupted fit ends. The checkpoint write is interrupted between writing
the temporary file and renaming it (inside ``os.fsync``): in process by an exception (fast),
and for real by ``kill -9`` of a subprocess (slow)."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hsjax.io import checkpoint as ckpt_lib

import test_fit
from test_fit import CONFIG, _fit, body_model, sequences  # pylint: disable=unused-import

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


class _Killed(BaseException):
  pass


def _interrupt_second_write(monkeypatch):
  """``os.fsync`` of the checkpoint module dies on its 2nd call (the step-4 checkpoint)."""
  calls = []
  real = os.fsync

  def fsync(fd):
    calls.append(fd)
    if len(calls) == 2:
      raise _Killed()
    return real(fd)

  monkeypatch.setattr(ckpt_lib.os, "fsync", fsync)


def _assert_resume_is_exact(seq, body_model, ckpt_dir):  # pylint: disable=redefined-outer-name
  found = ckpt_lib.latest_checkpoint(ckpt_dir)
  assert found is not None and found[0] == 2, found  # the step-4 write never completed
  assert any(n.endswith(".tmp") for n in os.listdir(ckpt_dir))  # the torn temporary
  resumed = _fit(seq, body_model, checkpoint_dir=ckpt_dir)
  uninterrupted = _fit(seq, body_model)
  assert ckpt_lib.tree_equal(resumed.state.params, uninterrupted.state.params)
  assert ckpt_lib.tree_equal(resumed.state.opt_state, uninterrupted.state.opt_state)
  assert resumed.history["total"] == uninterrupted.history["total"]


def test_interrupted_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
  """Fast: the save itself. A write cut between the temporary file and the rename leaves the
  previous checkpoint the latest, bit for bit."""
  directory = str(tmp_path)
  tree = {"x": np.arange(5.0), "step": 2}
  ckpt_lib.save(directory, 2, tree)
  _interrupt_second_write(monkeypatch)
  ckpt_lib.save(directory, 3, {"x": np.zeros(5), "step": 3})  # 1st fsync: completes
  with pytest.raises(_Killed):
    ckpt_lib.save(directory, 4, {"x": np.ones(5), "step": 4})
  step, path = ckpt_lib.latest_checkpoint(directory)
  assert step == 3 and os.path.exists(ckpt_lib.checkpoint_path(directory, 4) + ".tmp")
  assert ckpt_lib.load_raw(path)["step"] == 3
  assert ckpt_lib.load_raw(ckpt_lib.checkpoint_path(directory, 2))["step"] == 2


@pytest.mark.slow
def test_interrupted_checkpoint_write_resumes_exactly(sequences, body_model, tmp_path,
                                                      monkeypatch):
  seq = sequences[0]
  ckpt_dir = str(tmp_path / "ckpt")
  with monkeypatch.context() as m:
    _interrupt_second_write(m)
    with pytest.raises(_Killed):
      _fit(seq, body_model, checkpoint_dir=ckpt_dir)
  _assert_resume_is_exact(seq, body_model, ckpt_dir)


_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{tests!r}, {root!r}]
    from hsjax.io import checkpoint as ckpt_lib
    import test_fit
    calls = []
    real = os.fsync
    def fsync(fd):
      calls.append(fd)
      if len(calls) == 2:  # the temporary of the step-4 checkpoint is written, not renamed
        os.kill(os.getpid(), signal.SIGKILL)
      return real(fd)
    ckpt_lib.os.fsync = fsync
    from hsjax import body as body_lib
    model = body_lib.load_body_model("default")
    test_fit._fit(test_fit._sequence(0), model, checkpoint_dir={ckpt!r})
""")


@pytest.mark.slow
def test_kill_9_during_checkpoint_write_resumes_exactly(sequences, body_model, tmp_path):
  ckpt_dir = str(tmp_path / "ckpt")
  code = _CHILD.format(tests=TESTS, root=ROOT, ckpt=ckpt_dir)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=900, check=False, cwd=ROOT)
  assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
  _assert_resume_is_exact(sequences[0], body_model, ckpt_dir)
