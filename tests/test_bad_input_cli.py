"""Bad input at the command line: one-line errors with exit code 2 (never a traceback), and
run directories that a refused run leaves byte for byte as they were."""

import json
import os
import re
import sys

import numpy as np
import pytest

from bad_input_common import tree_bytes, write_tiny

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

from test_experiments import run_script  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY_FIT = ("--steps=2", "--warmup_steps=1", "--num_gaussians=64", "--batch_frames=1",
            "--densify_every=0", "--noprogress", "--novideos", "--nolpips", "--num_panels=1")


def _fails(result, *patterns):
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if "error:" in l]
  assert len(lines) == 1, result.stderr[-3000:]
  for pattern in patterns:
    assert re.search(pattern, lines[0]), (pattern, lines[0])


# ------------------------------------------------------------------------------------------
# The run-directory decision (in process)


def _stored(run_dir, **sections):
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump({"script": "fit", **sections}, f)


def test_new_and_empty_directories_are_new(tmp_path):
  assert common.run_dir_decision(str(tmp_path / "absent"), "fit", overwrite=False) == "new"
  (tmp_path / "empty").mkdir()
  assert common.run_dir_decision(str(tmp_path / "empty"), "fit", overwrite=False) == "new"


def test_same_configuration_resumes_ignoring_resumable_fields(tmp_path):
  _stored(tmp_path, sequence={"sequence": "a"}, fit_config={"steps": 5, "progress": True})
  assert common.run_dir_decision(str(tmp_path), "fit", overwrite=False,
                                 sequence={"sequence": "a"},
                                 fit_config={"steps": 5, "progress": False}) == "resume"


def test_other_configuration_is_refused_naming_what_differs(tmp_path):
  _stored(tmp_path, sequence={"sequence": "a"}, fit_config={"steps": 5})
  before = tree_bytes(tmp_path)
  with pytest.raises(common.InputError, match=r"holds a run with another configuration "
                     r"\(differs in fit_config \(steps\)\); nothing was changed\. Pass "
                     r"--overwrite"):
    common.open_run_dir(str(tmp_path), "fit", overwrite=False, sequence={"sequence": "a"},
                        fit_config={"steps": 6})
  assert tree_bytes(tmp_path) == before
  assert common.run_dir_decision(str(tmp_path), "fit", overwrite=True,
                                 sequence={"sequence": "a"}, fit_config={"steps": 6}) == "replace"


def test_another_script_is_refused(tmp_path):
  _stored(tmp_path)
  with pytest.raises(common.InputError, match=r"differs in script"):
    common.run_dir_decision(str(tmp_path), "animate", overwrite=False)


def test_a_folder_that_is_not_a_run_directory_is_never_replaced(tmp_path):
  (tmp_path / "thesis.tex").write_text("precious")
  for overwrite in (False, True):
    with pytest.raises(common.InputError, match=r"is not empty and not a run directory"):
      common.open_run_dir(str(tmp_path), "fit", overwrite=overwrite)
  assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "out").write_text("x")
  with pytest.raises(common.InputError, match=r"out is a file, expected a directory"):
    common.run_dir_decision(str(tmp_path / "out"), "fit", overwrite=False)


def test_overwrite_replaces_and_provenance_is_written_atomically(tmp_path):
  _stored(tmp_path, fit_config={"steps": 5})
  (tmp_path / "metrics.json").write_text("{}")
  assert common.open_run_dir(str(tmp_path), "fit", overwrite=True,
                             fit_config={"steps": 6}) == "replace"
  assert sorted(os.listdir(tmp_path)) == ["config.json", "flags.txt"]  # no temporary left
  assert json.loads((tmp_path / "config.json").read_text())["fit_config"] == {"steps": 6}


# ------------------------------------------------------------------------------------------
# The scripts (subprocesses)


def test_refused_rerun_leaves_the_run_directory_byte_identical(tmp_path):
  seq = write_tiny(tmp_path / "seq")
  run_dir = tmp_path / "run"
  _stored(run_dir, sequence={"sequence": "other"}, fit_config={"steps": 1})
  (run_dir / "metrics.json").write_text('{"psnr": 30}')
  before = tree_bytes(run_dir)
  result = run_script("fit", f"--sequence={seq}", f"--output_dir={run_dir}", *TINY_FIT)
  _fails(result, r"fit\.py: error: --output_dir: .*run holds a run with another "
         r"configuration .*Pass --overwrite")
  assert tree_bytes(run_dir) == before


def test_bad_frame_is_one_line_and_writes_nothing(tmp_path):
  seq = write_tiny(tmp_path / "seq")
  with open(os.path.join(seq, "images", "000002.png"), "r+b") as f:
    f.truncate(50)
  run_dir = tmp_path / "run"
  _fails(run_script("fit", f"--sequence={seq}", f"--output_dir={run_dir}", *TINY_FIT),
         r"images/000002\.png: not a readable image .*\(images frame 2\)")
  assert not run_dir.exists()


def test_refused_body_file_is_one_line(tmp_path):
  path = tmp_path / "SMPL_NEUTRAL.pkl"
  path.write_bytes(b"\x80\x04garbage")
  _fails(run_script("fit", f"--body_model={path}", "--output_dir=/tmp/unused", *TINY_FIT),
         r"--body_model=.*SMPL_NEUTRAL\.pkl: .*SMPL_NEUTRAL\.pkl: not a readable")


def test_output_dir_that_is_a_file_is_one_line(tmp_path):
  seq = write_tiny(tmp_path / "seq")
  (tmp_path / "out").write_text("x")
  _fails(run_script("fit", f"--sequence={seq}", f"--output_dir={tmp_path / 'out'}", *TINY_FIT),
         r"out is a file, expected a directory")
  assert (tmp_path / "out").read_text() == "x"


def test_export_ply_bad_inputs_are_one_line(tmp_path):
  _fails(run_script("export_ply", f"--run_dir={tmp_path / 'none'}"),
         r"export_ply\.py: error: run directory not found")
  _stored(tmp_path / "run")
  np.savez(tmp_path / "run" / "avatar.npz", x=np.zeros(1))
  _fails(run_script("export_ply", f"--run_dir={tmp_path / 'run'}", "--frame=3"),
         r"avatar\.npz")
