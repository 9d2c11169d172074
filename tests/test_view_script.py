"""``experiments/view.py`` run as a user runs it: its flags, and bad input failing in one line.

The viewer it writes is tested in ``test_viewer.py`` and, in a browser, in
``test_viewer_browser.py``.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "view.py")


def _run(*args: str) -> subprocess.CompletedProcess:
  # This checkout's hsjax, whatever else is installed.
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        timeout=300, cwd=ROOT, env=env, check=False)


def test_view_documents_its_flags():
  out = _run("--helpfull")
  for flag in ("run_dir", "output_dir", "motions", "fps", "port"):
    assert f"--{flag}:" in out.stdout, flag
  for flag in ("frames", "measure", "serve"):  # booleans
    assert f"--[no]{flag}:" in out.stdout, flag


def test_view_missing_run_dir_fails_in_one_line(tmp_path):
  out = _run(f"--run_dir={tmp_path / 'nope'}")
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "error: run directory not found" in lines[0] and "nope" in lines[0], out.stderr


def test_view_unknown_motion_fails_in_one_line(tmp_path):
  out = _run(f"--run_dir={tmp_path}", "--motions=no_such_clip")
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "no_such_clip" in lines[0], out.stderr
