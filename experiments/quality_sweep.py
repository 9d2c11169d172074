r"""Fit time against image quality and pose error: the sweep behind the ``quality`` preset.

  # choose: candidate settings on dev sequences of the benchmark suite
  python experiments/quality_sweep.py --output_dir=runs/quality_sweep_dev
  # report: the two presets on the demo's default sequence (used for no choice)
  python experiments/quality_sweep.py --sequences=default --variants=fast,quality \
      --eval_stride=1 --output_dir=runs/quality_sweep_default

Each variant is the ``fast`` preset (``hsjax.fit.FitConfig()``) with the fields of
``VARIANTS`` changed, or a named preset. Every (variant, sequence) pair is fitted, timed and
evaluated as the demo evaluates (novel view and novel pose PSNR/SSIM inside the person's box,
pose errors against the ground truth), plus ``NV PSNR aligned``: the held-out views with each
frame's body first moved rigidly onto the truth (``hsjax.evaluation.rigidly_aligned_poses``),
the avatar and articulated pose apart from where the fit placed the body. Writes ``sweep.json`` (after every fit: a rerun skips
the pairs already there, so a killed sweep loses at most one fit), ``sweep.md`` (printed) and
``tradeoff.png``: novel-view PSNR, novel-pose PSNR and MPJPE against fit time, the mean over
the sequences. ``--sequences`` takes ``default`` (the demo's sequence) and benchmark-suite
names (``hsjax.data.synthetic.suite``); the quality preset was chosen on the dev entries only.
Times are wall-clock seconds of the fit alone (compilation included) on this machine.
``--true_poses`` fits each variant's avatar alone on the ground-truth poses instead: the image
numbers a perfect pose refinement would give that avatar.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

from hsjax import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax import fit  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax import report  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax.data.synthetic import generator  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax.data.synthetic import suite  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax.report import figures  # pylint: disable=g-import-not-at-top,wrong-import-position

common.init_jax()

# Variant name -> the fields changed from the fast preset, the name of a preset, or (a preset's
# name, the fields changed from it). The shape,
# warm-up, pose/CAMEL weights, anchor tether and unseen sides' colour are explicit: the
# variants keep the meaning they had when the quality preset was chosen (300-step fast preset,
# shape fixed, the former weights, neither the tether nor the colour, both of 2026-12-05).
_AS_CHOSEN = {"warmup_steps": 50,
              "loss_weights": fit.FORMER_POSE_WEIGHTS + (("anchor_tether", 0.0),),
              "fill_unseen_at": 0}
_SHAPE_FIXED = {"train_betas": False, **_AS_CHOSEN}
# The quality preset of 2026-12-05 with the anchor tether and the unseen sides' colour.
_QUALITY_TETHER_FILL = {"downsample": 1, "max_fit_size": 512, "steps": 600, "train_betas": True,
                        "warmup_steps": 50, "loss_weights": fit.FORMER_POSE_WEIGHTS,
                        "fill_unseen_at": 500}
# ... and with the view-independent colour: the quality preset since 2026-12-05.
_QUALITY_SH0 = {**_QUALITY_TETHER_FILL, "sh_degree": 0}
# Density control growing the avatar's 2,000 Gaussians into a capacity of 20,000 (3DGS's
# clone / split / prune every 100 steps from step 100 to 500).
_DENSITY_20K = {"num_gaussians": 20000, "active_fraction": 0.1, "densify_every": 100,
                "densify_from": 100, "densify_until": 500, "tile_capacity": 512}
VARIANTS: dict[str, dict | str | tuple[str, dict]] = {
    "fast": "fast",
    "full_res": {"downsample": 1, "steps": 300, **_SHAPE_FIXED},
    "full_res_600": {"downsample": 1, "steps": 600, **_SHAPE_FIXED},
    "full_res_600_betas": {"downsample": 1, "steps": 600, "train_betas": True, "lr_betas": 1e-3,
                           **_AS_CHOSEN},
    "full_res_600_betas_003": {"downsample": 1, "steps": 600, "train_betas": True,
                               "lr_betas": 0.03, **_AS_CHOSEN},
    "full_res_1200": {"downsample": 1, "steps": 1200, **_SHAPE_FIXED},
    "quality": "quality",
    # The fast preset's pose and CAMEL weights since 2026-12-05 (DEFAULT_LOSSES), warm-up a
    # sixth of the fit: the candidates of the preset's second choice.
    "full_res_400_new_weights": {"downsample": 1, "steps": 400, "warmup_steps": 66,
                                 "loss_weights": (("anchor_tether", 0.0),), "fill_unseen_at": 0},
    "full_res_600_new_weights": {"downsample": 1, "steps": 600, "warmup_steps": 100,
                                 "loss_weights": (("anchor_tether", 0.0),), "fill_unseen_at": 0},
    # The quality preset as it was until 2026-12-05 (before the anchor tether and the unseen
    # sides' colour), and the tether alone: the candidates of the preset's third choice.
    "quality_2026_12_05": {"downsample": 1, "max_fit_size": 512, "steps": 600,
                           "train_betas": True, **_AS_CHOSEN},
    "quality_tether": {**_QUALITY_TETHER_FILL, "fill_unseen_at": 0},
    # The quality preset with the tether and the colour (2026-12-05) and before its fourth
    # choice: SH degree 1, whole frames; and the two candidates of that choice.
    "quality_tether_fill": _QUALITY_TETHER_FILL,
    "quality_sh0": _QUALITY_SH0,
    "quality_crop": {**_QUALITY_TETHER_FILL, "person_crop": True},
    # The quality preset (SH degree 0) with density control (_DENSITY_20K).
    "quality_density": {**_QUALITY_SH0, **_DENSITY_20K},
    # The quality preset's fifth choice: two rounds (its second from a fresh avatar at the
    # first's poses) against one, "quality_sh0" (the preset until then).
    "quality_rounds2": {**_QUALITY_SH0, "rounds": 2},
    # ... and candidates on top of it: a third round; the depth terms three times firmer;
    # SMPLify's shape prior (towards the mean body).
    "quality_rounds3": {**_QUALITY_SH0, "rounds": 3},
    "quality_rounds2_depth3": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_relative", 1.5), ("depth_3d_relative", 3.0))},
    "quality_rounds2_betas_population": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("betas_population", 1.0))},
    "quality_rounds2_betas_population_01": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("betas_population", 0.1))},
    # Density control (_DENSITY_20K) in each of two rounds: a larger avatar on the
    # second round's better poses.
    "quality_rounds2_density": {**_QUALITY_SH0, **_DENSITY_20K, "rounds": 2},
    # Two rounds without the rendered-depth L1: the depth's shape from the 3D term alone.
    "quality_rounds2_no_depth_l1": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_relative", 0.0))},
    # Two rounds with the 3D depth term pulling only the centres that face the camera (cosine
    # above 0.5): the grazing sides of thin parts, which a depth map does not sample, left out.
    "quality_rounds2_3d_facing": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_3d_relative", 0.0),
        ("depth_3d_relative_facing", 1.0))},
    # Two rounds with the root placed for the skin under the sunk centres (depth_root_skin).
    "quality_rounds2_root_skin": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_root", 0.0), ("depth_root_skin", 0.5))},
    # ... and the 3D depth term pulling the seen centres lifted onto the skin, with the skin's
    # offset removed (depth_3d_relative_skin in place of depth_3d_relative).
    "quality_3d_skin": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_root", 0.0), ("depth_root_skin", 0.5),
        ("depth_3d_relative", 0.0), ("depth_3d_relative_skin", 1.0))},
    "quality_3d_skin_two_sided": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_root", 0.0), ("depth_root_skin", 0.5),
        ("depth_3d_relative", 0.0), ("depth_3d_relative_skin_two_sided", 1.0))},
    "quality_3d_skin_rounds3": {**_QUALITY_SH0, "rounds": 3, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_root", 0.0), ("depth_root_skin", 0.5),
        ("depth_3d_relative", 0.0), ("depth_3d_relative_skin", 1.0))},
    "quality_3d_skin_no_depth_l1": {**_QUALITY_SH0, "rounds": 2, "loss_weights": (
        *fit.FORMER_POSE_WEIGHTS, ("depth_root", 0.0), ("depth_root_skin", 0.5),
        ("depth_3d_relative", 0.0), ("depth_3d_relative_skin", 1.0), ("depth_relative", 0.0))},
    # The fast preset as it was until 2026-12-05 (before the tether and the colour).
    "fast_2026_12_05": {"loss_weights": (("anchor_tether", 0.0),), "fill_unseen_at": 0},
    # The candidates of the quality preset's ninth choice (2026-12-06), on the preset of four
    # frames a step: density control (_DENSITY_20K) in each round, a larger avatar on poses
    # refined closer to the truth than when "quality_density" ran; the rendered-depth L1 on the
    # skin's depth (the centres under the skin lifted onto it) instead of the sunk centres'
    # (depth_relative_skin); eight frames a step instead of four (the preset's since then), so
    # that each frame's pose is drawn, and refined, twice as often in as many steps.
    "quality_preset_density": ("quality", {**_DENSITY_20K, "batch_frames": 4}),
    "quality_depth_l1_skin": ("quality", {"batch_frames": 4, "loss_weights": fit.preset(
        "quality").loss_weights + (("depth_relative", 0.0), ("depth_relative_skin", 0.5))}),
    "quality_batch8": ("quality", {"batch_frames": 8}),
    # The quality preset until its ninth choice.
    "quality_batch4": ("quality", {"batch_frames": 4}),
}
# The 3D depth term on the centres, DEFAULT_LOSSES' until 2026-12-06: the variants above built
# on the fast preset keep it unless they name depth_3d_relative_skin.
_CENTRES_3D = (("depth_3d_relative", 1.0), ("depth_3d_relative_skin", 0.0))
VARIANTS = {name: spec if not isinstance(spec, dict) else
            {**spec, "loss_weights": _CENTRES_3D + tuple(spec.get("loss_weights", ()))}
            for name, spec in VARIANTS.items()}
# The variants the dev sweep compares (the quality preset is chosen among them).
DEV_VARIANTS = ("fast", "full_res", "full_res_600", "full_res_600_betas", "full_res_1200")

_SEQUENCES = flags.DEFINE_list(
    "sequences", ["dev/dance_a-s3", "dev/kick-s2"],
    "Sequences: 'default' (the demo's) and benchmark-suite entry names.")
_VARIANTS = flags.DEFINE_list("variants", list(DEV_VARIANTS),
                              f"Variants to fit, of {', '.join(VARIANTS)}.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/quality_sweep", "Where results go.")
_EVAL_STRIDE = flags.DEFINE_integer("eval_stride", 3, "Image metrics on every k-th frame.",
                                    lower_bound=1)
_FIT_SEED = flags.DEFINE_integer("fit_seed", 0, "Seed of the fits' PRNG key.")
_DEPTH = flags.DEFINE_string(
    "depth", None, "Load every suite sequence with this depth instead of its own ('exact', "
    "'none' or a hsjax.data.DEPTH_NOISE_PRESETS key), named '<entry>@depth=<depth>'. The "
    "default sequence, on which the quality preset is reported, has exact depth; most suite "
    "entries have a simulated monocular one, whose errors of centimetres hide what moves "
    "the body by millimetres.")
_TRUE_POSES = flags.DEFINE_bool(
    "true_poses", False, "Fit the avatar alone on the ground-truth poses (frozen, not moved "
    "by the depth alignment): what each variant's avatar reaches with a perfect pose "
    "refinement, the ceiling of its image numbers.")
_BODY_MODEL = common.define_body_model_flag()

# Table columns: (header, key of a result row, format).
COLUMNS = (("fit (s)", "fit_s", "{:.0f}"), ("NV PSNR", "nv_psnr", "{:.2f}"),
           ("NV SSIM", "nv_ssim", "{:.3f}"), ("NV PSNR aligned", "nv_aligned_psnr", "{:.2f}"),
           ("NP PSNR", "np_psnr", "{:.2f}"),
           ("NP SSIM", "np_ssim", "{:.3f}"), ("train PSNR", "train_psnr", "{:.2f}"),
           ("MPJPE", "mpjpe", "{:.1f}"), ("PA-MPJPE", "pa_mpjpe", "{:.1f}"),
           ("root", "root_error", "{:.1f}"), ("V2V", "v2v", "{:.1f}"))


def variant_config(name: str) -> fit.FitConfig:
  """The FitConfig of a variant (progress bars off: the sweep prints one line per fit)."""
  if name not in VARIANTS:
    raise common.InputError(f"--variants: unknown variant '{name}'; valid: {list(VARIANTS)}")
  spec = VARIANTS[name]
  if isinstance(spec, str):
    return fit.preset(spec, progress=False)
  if isinstance(spec, tuple):
    preset_name, fields = spec
    return fit.preset(preset_name, progress=False, **fields)
  return fit.preset("fast", progress=False, **spec)


def load(name: str, body_model, depth: str | None = None):
  """The sequence ``name``: ``default`` or a benchmark-suite entry, the latter with ``depth``
  in place of its own when given (and named ``<entry>@depth=<depth>``)."""
  if name == "default":
    return generator.synthetic_sequence("default", seed=0, hmr_noise="hmr2_like",
                                        body_model=body_model)
  entries = {e.name: e for e in suite.SUITE}
  if name not in entries:
    raise common.InputError(f"--sequences: unknown sequence '{name}'; valid: 'default' and "
                            f"the suite's {list(entries)}")
  if depth is None:
    return entries[name].load(body_model=body_model)
  sequence = entries[name].load(body_model=body_model, depth=depth)
  sequence.name = f"{name}@depth={depth}"
  return sequence


def on_true_poses(sequence, config: fit.FitConfig):
  """``(sequence, config)`` of an avatar-only fit started at the sequence's ground truth."""
  return (dataclasses.replace(sequence, hmr=sequence.gt),
          dataclasses.replace(config.avatar_only(), align_depth=False))


def fit_and_score(sequence, config: fit.FitConfig, body_model) -> dict:
  """Fits ``sequence`` and returns its fit time and the demo's metrics (one flat dict)."""
  if _TRUE_POSES.value:
    sequence, config = on_true_poses(sequence, config)
  t0 = time.perf_counter()
  result = fit.fit(sequence, config, key=jax.random.key(_FIT_SEED.value),
                   body_model=body_model)
  fit_s = time.perf_counter() - t0
  ev = evaluation.evaluate_run(body_model, sequence, result.avatar, result.poses,
                               background=config.background, frame_stride=_EVAL_STRIDE.value,
                               backend=config.backend, tile_capacity=config.tile_capacity,
                               use_lpips=False, align_novel_view=True)
  pose = ev["pose"]["refined"]
  return {"fit_s": fit_s, "nv_psnr": ev["novel_view"]["psnr"],
          "nv_ssim": ev["novel_view"]["ssim"],
          "nv_aligned_psnr": ev["novel_view_aligned"]["psnr"],
          "np_psnr": ev["novel_pose"]["psnr"],
          "np_ssim": ev["novel_pose"]["ssim"], "train_psnr": ev["train_view"]["psnr"],
          **{k: pose[k] for k in ("mpjpe", "pa_mpjpe", "root_error", "v2v")},
          "hmr": {k: ev["pose"]["hmr"][k] for k in ("mpjpe", "pa_mpjpe", "root_error", "v2v")},
          "config": config.to_json()}


def mean_rows(results: dict, variants: list[str], sequences: list[str]) -> dict:
  """``{variant: {metric: mean over the sequences}}`` for the variants fitted on all of them."""
  out = {}
  for v in variants:
    rows = [results[v][s] for s in sequences if s in results.get(v, {})]
    if len(rows) == len(sequences):
      # A key missing from a row (a sweep.json written before the column existed) stays out.
      out[v] = {key: float(np.mean([r[key] for r in rows])) for _, key, _ in COLUMNS
                if all(key in r for r in rows)}
  return out


def table(rows: dict[str, dict]) -> str:
  lines = ["| variant | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
           "| --- |" + " ---: |" * len(COLUMNS)]
  for name, row in rows.items():
    lines.append(f"| {name} | " + " | ".join(f.format(row[k]) if k in row else "–"
                                             for _, k, f in COLUMNS) + " |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  variants = list(_VARIANTS.value)
  configs = {v: variant_config(v) for v in variants}  # unknown names fail before any fit
  body_model = common.load_body_model(_BODY_MODEL.value)
  loaded = [load(name, body_model, _DEPTH.value) for name in _SEQUENCES.value]
  sequences = {sequence.name: sequence for sequence in loaded}
  out_dir = _OUTPUT_DIR.value
  common.write_config(out_dir, "quality_sweep", sequences=list(sequences), variants=variants)
  path = os.path.join(out_dir, "sweep.json")
  results = {}
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)["results"]
  for v in variants:
    for name, sequence in sequences.items():
      if name in results.get(v, {}):
        print(f"{v} on {name}: done before, kept", flush=True)
        continue
      row = fit_and_score(sequence, configs[v], body_model)
      results.setdefault(v, {})[name] = row
      report.write_json(path, {"sequences": list(sequences), "results": results})
      print(f"{v} on {name}: fit {row['fit_s']:.0f} s, NV {row['nv_psnr']:.2f} dB, NP "
            f"{row['np_psnr']:.2f} dB, MPJPE {row['mpjpe']:.1f} mm", flush=True)
  means = mean_rows(results, variants, list(sequences))
  figures.plot_tradeoff(
      os.path.join(out_dir, "tradeoff.png"), "fit time (s, 2 CPU cores)",
      {v: m["fit_s"] for v, m in means.items()},
      [("novel-view PSNR (dB)", {v: m["nv_psnr"] for v, m in means.items()}),
       ("novel-pose PSNR (dB)", {v: m["np_psnr"] for v, m in means.items()}),
       ("MPJPE (mm)", {v: m["mpjpe"] for v, m in means.items()})])
  per_sequence = "\n\n".join(
      f"### {name}\n\n" + table({v: results[v][name] for v in variants}) for name in sequences)
  text = "\n\n".join([
      f"# Quality sweep: {len(variants)} variants on {', '.join(sequences)}",
      "Mean over the sequences; PSNR / SSIM inside the person's box (NV: held-out views, NV "
      "aligned: the same with each frame's body moved rigidly onto the truth, NP: unseen "
      "poses), pose errors in mm, fit time in s (compilation included).",
      table(means), per_sequence])
  with open(os.path.join(out_dir, "sweep.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  common.run(main)
