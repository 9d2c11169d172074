"""Tests of the experiment scripts, run as a user runs them (subprocesses).

Fast: every script's ``--helpfull`` documents its flags, and bad input fails fast with a
one-line message naming the problem. Slow (``-m slow``): a tiny end-to-end ``fit.py`` run that
writes every output, then ``evaluate.py`` and ``animate.py`` on its run directory.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, "experiments")
sys.path.insert(0, EXPERIMENTS)
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

# Flags each script must document (its own and the shared groups it uses).
SEQUENCE = ("sequence", "format", "seed", "hmr_noise", "num_frames", "image_size", "depth",
            "num_eval_views", "num_novel_pose", "cache_dir")
FIT = ("preset", "steps", "warmup_steps", "pose_steps", "batch_frames", "num_gaussians",
       "sh_degree", "losses", "refine", "train_betas", "lr_betas", "learn_skinning", "nonrigid",
       "densify_every", "means_lr", "camel_refresh_every", "backend", "tile_capacity",
       "downsample", "max_fit_size", "person_crop", "person_crop_margin", "fit_seed", "progress")
OUT = ("output_dir", "eval_stride", "bbox_margin", "num_panels", "orbit_frames", "videos", "overwrite",
       "lpips")
SCRIPT_FLAGS = {
    "fit": SEQUENCE + FIT + OUT + ("body_model", "checkpoints"),
    "demo": SEQUENCE + FIT + OUT + ("body_model", "checkpoints"),
    "ablate": SEQUENCE + FIT + OUT + ("body_model", "grid", "variants", "write_runs"),
    "fit_many": SEQUENCE + FIT + OUT + ("body_model", "sequences", "shard", "write_runs",
                                        "checkpoints", "distributed", "coordinator_address",
                                        "num_processes", "process_id"),
    "quality_sweep": ("sequences", "variants", "output_dir", "eval_stride", "fit_seed",
                      "true_poses", "body_model"),
    "evaluate": ("run_dir", "output_dir", "poses", "eval_stride", "bbox_margin", "lpips",
                 "outputs", "progress"),
    "animate": ("run_dir", "avatar", "betas_from", "motion", "fps", "max_frames", "view",
                "azimuth", "distance", "camera_height", "follow", "image_size", "view_height",
                "background", "output_dir", "png", "body_model", "backend", "tile_capacity",
                "progress"),
}


def run_script(name: str, *args: str, timeout: float = 600, env_extra=None
               ) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.update(env_extra or {})
  return subprocess.run([sys.executable, os.path.join(EXPERIMENTS, f"{name}.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
                        check=False)


def _documented_flags(helptext: str) -> dict[str, str]:
  """``{flag: help text}`` of the flag entries in an absl help listing."""
  out = {}
  pattern = re.compile(r"^  --(?:\[no\])?(\w+): (.*(?:\n    .*)*)", re.M)
  for match in pattern.finditer(helptext):
    out[match.group(1)] = match.group(2)
  return out


@pytest.mark.parametrize("name", sorted(SCRIPT_FLAGS))
def test_helpfull_documents_every_flag(name):
  result = run_script(name, "--helpfull", timeout=300)
  # absl exits with status 1 after printing the help (absl.app's HelpfullFlag).
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  text = result.stdout
  assert f"python experiments/{name}.py" in text  # the module docstring with the command
  documented = _documented_flags(text)
  for flag in SCRIPT_FLAGS[name]:
    assert flag in documented, f"{name}.py --helpfull does not list --{flag}"
    help_text = re.sub(r"\(default: .*\)|\(an? [a-z ]+\)|\s+", " ", documented[flag]).strip()
    assert len(help_text) > 10, f"{name}.py: --{flag} has no help text: {documented[flag]!r}"


# ------------------------------------------------------------------------------------------
# Failing fast


def _fails(result: subprocess.CompletedProcess, code: int, *patterns: str) -> None:
  assert result.returncode == code, (result.returncode, result.stderr[-2000:])
  for pattern in patterns:
    assert re.search(pattern, result.stderr), (pattern, result.stderr[-2000:])
  assert "Traceback" not in result.stderr


def test_fit_missing_sequence_path():
  _fails(run_script("fit", "--sequence=/no/such/dir", "--output_dir=/tmp/unused"), 2,
         r"fit\.py: error: --sequence: '/no/such/dir' is neither a synthetic sequence name "
         r"\(valid: \[.*'default'.*\]\) nor an existing path")


def test_fit_unknown_loss_lists_valid_names():
  _fails(run_script("fit", "--losses=rgb:1,photometric:0.5"), 2,
         r"unknown loss term 'photometric'; valid names: .*\bdepth\b.*\bmask\b.*\brgb\b")


def test_fit_wrong_format_flag():
  _fails(run_script("fit", "--format=colmap"), 1,
         r"flag --format=colmap: value should be one of <auto\|synthetic\|hsjax")


def test_fit_directory_in_a_wrong_format(tmp_path):
  (tmp_path / "frames").mkdir()
  _fails(run_script("fit", f"--sequence={tmp_path}", "--format=hsjax"), 2,
         rf"--sequence={re.escape(str(tmp_path))} \(--format=hsjax\): .*not an hsjax sequence "
         r"\(no sequence.npz\)")
  _fails(run_script("fit", f"--sequence={tmp_path}"), 2, r"cannot detect the sequence format")


def test_evaluate_missing_run_dir():
  _fails(run_script("evaluate", "--run_dir=/no/such/run"), 2,
         r"evaluate\.py: error: run directory not found: /no/such/run")


def test_animate_bad_inputs():
  """The motion is checked first (by name or file), then the avatar."""
  _fails(run_script("animate", "--motion=moonwalk", "--avatar=/no/such/avatar.npz"), 2,
         r"unknown built-in motion 'moonwalk'; available: .*\bwalk\b")
  _fails(run_script("animate", "--motion=/no/clip.bvh", "--avatar=/no/such/avatar.npz"), 2,
         r"motion file not found: /no/clip\.bvh")
  _fails(run_script("animate", "--motion=walk", "--avatar=/no/such/avatar.npz"), 2,
         r"avatar file not found: /no/such/avatar\.npz")


def test_ablate_unknown_variant():
  _fails(run_script("ablate", "--variants=joint,gart"), 2,
         r"--variants: unknown variant\(s\) \['gart'\]; valid: \['hmr', 'fixed', 'photometric'")


def test_quality_sweep_unknown_variant_or_sequence():
  _fails(run_script("quality_sweep", "--variants=fast,slow"), 2,
         r"--variants: unknown variant 'slow'; valid: \['fast', 'full_res'")
  _fails(run_script("quality_sweep", "--variants=fast", "--sequences=dev/nothing-s0"), 2,
         r"--sequences: unknown sequence 'dev/nothing-s0'; valid: 'default' and")


def test_views_in_camera_frame_see_the_camera_frame_body_as_the_views_see_the_world():
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import Camera  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import project_points  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  def frame_camera(cameras, t):
    return Camera(K=np.asarray(cameras.K)[t], world_to_cam=np.asarray(cameras.world_to_cam)[t],
                  width=cameras.width, height=cameras.height)

  model = body_lib.load_body_model()
  seq = data.synthetic_sequence("default", seed=0, num_frames=3, image_size=32,
                                num_eval_views=2, num_novel_pose=0, cache_dir=False,
                                body_model=model)
  keep = np.array([True, False, True])
  gt_cam, _ = common.camera_frame_gt(model, seq)
  views = common.views_in_camera_frame(seq, keep)
  _, joints_world = body_lib.pose_frames_host(model, seq.gt)
  _, joints_cam = body_lib.pose_frames_host(model, gt_cam)
  assert len(views) == 2
  for view, moved in zip(seq.eval_views, views):
    assert len(moved) == 2 and moved.images.shape[0] == 2
    np.testing.assert_array_equal(moved.images, np.asarray(view.images)[keep])
    for new_t, t in enumerate(np.flatnonzero(keep)):
      want, _ = project_points(frame_camera(view.cameras, t), joints_world[t])
      got, _ = project_points(frame_camera(moved.cameras, new_t), joints_cam[t])
      np.testing.assert_allclose(got, want, atol=1e-2)  # pixels


def test_true_observations_are_the_projected_true_joints_and_the_true_masks():
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  model = body_lib.load_body_model()
  seq = data.synthetic_sequence("default", seed=0, num_frames=2, image_size=32,
                                num_eval_views=0, num_novel_pose=0, cache_dir=False,
                                body_model=model)
  true_masks = np.asarray(seq.masks)[:, ::-1]  # any masks of the right shape
  got = common.with_true_observations(seq, model, true_masks, ["keypoints", "masks"])
  _, joints = body_lib.pose_frames_host(model, seq.gt)
  cam = np.einsum("tij,tkj->tki", np.asarray(seq.cameras.world_to_cam)[:, :3, :3],
                  np.asarray(joints)) + np.asarray(seq.cameras.world_to_cam)[:, None, :3, 3]
  pixels = np.einsum("tij,tkj->tki", np.asarray(seq.cameras.K), cam)
  np.testing.assert_allclose(got.keypoints_2d[..., :2], pixels[..., :2] / pixels[..., 2:],
                             atol=1e-3)
  np.testing.assert_array_equal(got.keypoints_2d[..., 2], 1.0)
  np.testing.assert_array_equal(got.masks, true_masks)
  np.testing.assert_array_equal(got.images, seq.images)
  only_masks = common.with_true_observations(seq, model, true_masks, ["masks"])
  assert only_masks.keypoints_2d is seq.keypoints_2d
  with pytest.raises(common.InputError, match=r"unknown observation\(s\) \['depth'\]"):
    common.with_true_observations(seq, model, true_masks, ["depth"])
  with pytest.raises(common.InputError, match=r"true masks have shape \(2, 16, 16\)"):
    common.with_true_observations(seq, model, true_masks[:, :16, :16], ["masks"])


def test_video_synthetic_refuses_an_unknown_oracle_before_any_work(tmp_path):
  _fails(run_script("video_synthetic", "--oracle=keypoints,depth",
                    f"--output_dir={tmp_path}"), 2,
         r"--oracle: unknown observation\(s\) \['depth'\]; expected some of "
         r"\['keypoints', 'masks'\]")
  assert not os.listdir(tmp_path)


def test_parse_losses():
  assert common.parse_losses("") == ()
  assert common.parse_losses("rgb:1, mask:0.5,depth:0") == (("rgb", 1.0), ("mask", 0.5),
                                                             ("depth", 0.0))
  with pytest.raises(common.InputError, match="must be name:weight"):
    common.parse_losses("rgb")
  with pytest.raises(common.InputError, match="weight of 'mask' must be a number"):
    common.parse_losses("mask:high")
  with pytest.raises(common.InputError, match="unknown loss term 'colour'; valid names: .*rgb"):
    common.parse_losses("colour:1")


def _json_per_command_line(setup: str, expression: str, argvs) -> list:
  """``expression`` (JSON text) after parsing each command line of ``argvs`` with the flags
  that ``setup`` defines, in a fresh interpreter in experiments/."""
  code = (f"import json, sys; from absl import flags; {setup}\n"
          "for argv in json.loads(sys.argv[1]):\n"
          "  flags.FLAGS.unparse_flags(); flags.FLAGS(['x', *argv])\n"
          f"  print({expression})")
  out = subprocess.run([sys.executable, "-c", code, json.dumps(argvs)], capture_output=True,
                       text=True, cwd=EXPERIMENTS, check=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(argvs):]]


def _fit_configs_of(*argvs: tuple[str, ...]) -> list[dict]:
  """The FitConfig (as a dict) that the shared fit flags give for each command line."""
  return _json_per_command_line("import common; f = common.define_fit_flags()",
                                "common.fit_config(f).to_json()", argvs)


def test_preset_flag_sets_the_preset_and_given_flags_override_it():
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  fast, quality = fit.preset("fast"), fit.preset("quality")
  plain, chosen, mixed, same_as_fast = _fit_configs_of(
      (), ("--preset=quality",),
      ("--preset=quality", "--steps=40", "--refine=transl", "--losses=depth:0"),
      ("--preset=quality", f"--downsample={fast.downsample}"))
  assert plain == json.loads(fast.to_json())
  assert chosen == json.loads(quality.to_json())
  assert mixed == json.loads(fit.preset(
      "quality", steps=40, warmup_steps=min(quality.warmup_steps, 40),
      densify_from=min(quality.densify_from, 40), densify_until=min(quality.densify_until, 40),
      fill_unseen_at=min(quality.fill_unseen_at, 40), train_global_orient=False, train_body_pose=False,
      loss_weights=(*quality.loss_weights, ("depth", 0.0)),  # --losses adds to the preset's
  ).to_json())
  assert dict(mixed["loss_weights"])["pose_prior"] == dict(quality.loss_weights)["pose_prior"]
  # A flag given with the fast preset's value (its listed default) still overrides.
  assert same_as_fast["downsample"] == fast.downsample != quality.downsample


def test_video_fit_takes_its_schedule_shape_size_crop_colour_and_fill_unless_flags_or_preset_choose_them():
  argvs = ((), ("--warmup_steps=5",), ("--warmup_steps=100000",), ("--steps=40",),
           ("--train_betas",), ("--downsample=2",), ("--person_crop",), ("--fill_unseen_at=7",),
           ("--sh_degree=2",), ("--preset=quality",), ("--preset=fast",))
  got = _json_per_command_line(
      "import video", "json.dumps(video.video_fit_overrides(video._FIT))", argvs)
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  steps, warmup = video.VIDEO_SCHEDULE
  shape = {"train_betas": video.VIDEO_TRAIN_BETAS}
  size = {"downsample": video.VIDEO_DOWNSAMPLE, "person_crop": video.VIDEO_PERSON_CROP}
  colour = {"sh_degree": video.VIDEO_SH_DEGREE}
  fill = {"fill_unseen_at": video.VIDEO_FILL_UNSEEN_AT}
  schedule = {"steps": steps, "warmup_steps": warmup}
  assert got == [{**schedule, **shape, **size, **colour, **fill},
                 {"steps": steps, "warmup_steps": 5, **shape, **size, **colour, **fill},
                 {"steps": steps, "warmup_steps": steps, **shape, **size, **colour, **fill},
                 {**shape, **size, **colour, "fill_unseen_at": 40},
                 {**schedule, **size, **colour, **fill},
                 {**schedule, **shape, "person_crop": video.VIDEO_PERSON_CROP, **colour, **fill},
                 {**schedule, **shape, "downsample": video.VIDEO_DOWNSAMPLE, **colour, **fill},
                 {**schedule, **shape, **size, **colour},
                 {**schedule, **shape, **size, **fill}, {}, {}]


# ------------------------------------------------------------------------------------------
# End to end


TINY = ("--num_frames=6", "--image_size=32", "--num_eval_views=1", "--num_novel_pose=2",
        "--steps=6", "--warmup_steps=2", "--num_gaussians=300", "--batch_frames=2",
        "--densify_every=0", "--orbit_frames=6", "--num_panels=2", "--tile_capacity=64",
        "--noprogress")


def test_ablate_rows_set_the_weights_and_rates_they_name():
  """Each CAMEL-grid row's FitConfig switches on, off or re-rates exactly what its label
  says, on top of the fit flags given (here --losses)."""
  rows = ("camel_full", "depth_3d", "centre_lr_3dgs", "fixed")
  (configs,) = _json_per_command_line(
      "import ablate, common",
      "json.dumps({v: json.loads(ablate.variant_config(common.fit_config(ablate._FIT), "
      f"v).to_json()) for v in {rows!r}}})",
      [("--losses=rgb:0.5",)])
  weights = {k: dict(c["loss_weights"]) for k, c in configs.items()}
  assert weights["camel_full"]["camel_coverage"] == 10.0  # off by default: ON_WEIGHTS
  assert weights["camel_full"]["camel_point_to_mesh"] == 30.0  # on by default: kept
  assert weights["depth_3d"] == {"depth_relative": 0.0, "rgb": 0.5}  # the rest: defaults
  assert dict(configs["centre_lr_3dgs"]["avatar_lrs"])["means"] == 1.6e-4
  assert dict(configs["depth_3d"]["avatar_lrs"])["means"] == 1.6e-3
  assert not configs["fixed"]["train_body_pose"] and configs["camel_full"]["train_body_pose"]


@pytest.mark.slow
def test_ablate_end_to_end(tmp_path):
  """A tiny run of two CAMEL-grid rows stores each row's FitConfig and writes the table with
  the drift and step columns."""
  out = tmp_path / "ablate"
  tiny = [a for a in TINY if not a.startswith(("--orbit_frames", "--num_panels"))]
  result = run_script("ablate", *tiny, "--variants=camel_full,depth_3d",
                      f"--output_dir={out}", env_extra={"HSJAX_CACHE": str(tmp_path / "c")})
  assert result.returncode == 0, result.stderr[-3000:]
  configs = json.loads((out / "config.json").read_text())["fit_configs"]
  assert dict(configs["camel_full"]["loss_weights"])["camel_coverage"] == 10.0
  assert (out / "camel_full" / "metrics.json").exists()
  table = (out / "ablation.md").read_text()
  assert "drift (mm)" in table and "| CAMEL, all four terms |" in table


@pytest.mark.slow
def test_fit_evaluate_animate_end_to_end(tmp_path):
  """A tiny fit.py run writes every output; evaluate.py and animate.py read its directory;
  its flags.txt replays (a replay with one flag changed fails on that flag only)."""
  run = tmp_path / "run"
  env = {"HSJAX_CACHE": str(tmp_path / "cache")}
  result = run_script("fit", *TINY, f"--output_dir={run}", env_extra=env)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ("flags.txt", "config.json", "metrics.json", "table.md", "history.json",
               "smpl_refined.npz", "smpl_hmr.npz", "avatar.npz", "avatar.ply",
               "pose_error.png", "panels/frame_0000.png", "panels/frame_0005.png",
               "train_view.mp4", "orbit.mp4", "checkpoints"):
    assert (run / name).exists(), name
  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["pose"]["hmr"]["mpjpe"] > 0 and metrics["fit"]["steps"] == 6
  assert metrics["novel_view"]["num_images"] == 6
  config = json.loads((run / "config.json").read_text())
  assert config["fit_config"]["steps"] == 6 and config["sequence"]["num_frames"] == 6
  flags_txt = (run / "flags.txt").read_text()
  assert "--steps=6" in flags_txt and "--image_size=32" in flags_txt
  assert "Pose error" in result.stdout  # the table is printed

  replay = run_script("fit", f"--flagfile={run / 'flags.txt'}", "--losses=nope:1",
                      env_extra=env)
  _fails(replay, 2, r"unknown loss term 'nope'")

  ev = run_script("evaluate", f"--run_dir={run}", "--poses=hmr", "--noprogress",
                  env_extra=env)
  assert ev.returncode == 0, ev.stderr[-3000:]
  ev_metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
  assert ev_metrics["poses"] == "hmr"
  np.testing.assert_allclose(ev_metrics["pose"]["refined"]["mpjpe"],
                             metrics["pose"]["hmr"]["mpjpe"], rtol=1e-5)

  anim = tmp_path / "anim"
  an = run_script("animate", f"--run_dir={run}", "--motion=walk", "--max_frames=5",
                  "--image_size=32", "--view=orbit", f"--output_dir={anim}", "--noprogress",
                  env_extra=env)
  assert an.returncode == 0, an.stderr[-3000:]
  assert (anim / "walk.mp4").exists() and len(os.listdir(anim / "frames")) == 5


def test_benchmark_depth_scale_error_is_the_maps_scale_error_at_the_true_root():
  """Exact depth: 0; a map scaled by a drawn factor (measured here from the two maps, not the
  metadata the script reads): |factor − 1| times the true root's depth; no depth: None."""
  code = (
      "import json, numpy as np, benchmark\n"
      "from hsjax import body as body_lib, fit\n"
      "from hsjax.data import synthetic_sequence\n"
      "model = body_lib.load_body_model()\n"
      "small = dict(seed=3, num_frames=3, image_size=32, num_eval_views=0, num_novel_pose=0,\n"
      "             hmr_noise='none', cache_dir=False, body_model=model)\n"
      "seqs = {d: synthetic_sequence(depth=d, **small) for d in ('exact', 'scale_only', 'none')}\n"
      "exact, scaled = np.asarray(seqs['exact'].depth), np.asarray(seqs['scale_only'].depth)\n"
      "factor = [float(np.median(s[e > 0] / e[e > 0])) for s, e in zip(scaled, exact)]\n"
      "_, joints = body_lib.pose_frames_host(model, seqs['exact'].gt)\n"
      "w2c = np.asarray(seqs['exact'].cameras.world_to_cam).reshape(-1, 4, 4)[0]\n"
      "root_z = (joints[:, 0] @ w2c[2, :3] + w2c[2, 3]).tolist()\n"
      "found = {d: benchmark.depth_scale_error(model, s, fit.FitConfig())\n"
      "         for d, s in seqs.items()}\n"
      "print(json.dumps({'found': found, 'factor': factor, 'root_z': root_z}))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=EXPERIMENTS, check=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  result = json.loads(out.stdout.strip().splitlines()[-1])
  found, factor = result["found"], np.asarray(result["factor"])
  assert np.abs(factor - 1).min() > 0.005  # a scale error was drawn
  assert found["exact"] == pytest.approx(0.0, abs=1e-6)
  expected = 1000 * np.mean(np.abs(factor - 1) * np.asarray(result["root_z"]))
  assert found["scale_only"] == pytest.approx(expected, rel=1e-3)
  assert found["none"] is None
