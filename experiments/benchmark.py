r"""The benchmark suite: refinement on many sequences, a dev split to choose defaults on and a
test split to report.

  python experiments/benchmark.py --split=test --output_dir=runs/bench_test

For every sequence of the split (``hsjax.data.synthetic.suite``) it fits the avatar and the
poses jointly (the default ``FitConfig``, or the fit flags given), and, unless
``--nobaseline``, an avatar with the poses fixed at the HMR estimates (the baseline the joint
fit must beat on novel poses). Subjects are fitted together with ``hsjax.fit_many``,
``--batch`` at a time (all sequences share the image size), with checkpoints under
``<output_dir>/checkpoints`` so that a killed run resumes. Then each is evaluated
(``hsjax.evaluation.evaluate_run``) and the script prints and writes:

* ``table.md``: per sequence, HMR → refined for MPJPE, PA-MPJPE, PVE, V2V, root error and
  its component along the camera axis, acceleration (pelvis-aligned and world), the camera-axis
  error the depth map's own scale error alone puts on the root, novel-view and novel-pose
  PSNR / SSIM, and the fixed-pose baseline's; then mean ± std over the split
  and over its headline subset (``hmr2_like`` + ``unidepth_like``), and a per-joint MPJPE
  table (which joints improve);
* ``results.json``: every number, per-joint and per-frame errors, fit times and peak memory.

``--ceiling`` also fits each avatar on the ground-truth poses, shape and translation: the
novel-pose PSNR that perfect refinement would reach. ``--headline_depth=unidepth_metric``
gives the headline sequences the same simulated depth network without its metric-scale error
(an ablation of what that error costs).

Runtime on 2 CPU cores: about 2 minutes per fit of a default sequence (two fits per sequence
with the baseline) plus generation of uncached sequences (15–45 s each) and evaluation.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time

from absl import flags
import jax
import numpy as np

from hsjax import body as body_lib
from hsjax import evaluation
from hsjax import fit
from hsjax import metrics
from hsjax import report
from hsjax.data.synthetic import suite
from hsjax.fit import data as fit_data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_FIT = common.define_fit_flags()
_BODY_MODEL = common.define_body_model_flag()
_SPLIT = flags.DEFINE_enum("split", "dev", ["dev", "test", "all"],
                           "Which split of hsjax.data.synthetic.suite to run.")
_ONLY = flags.DEFINE_list("only", [], "Run only these suite entries (names or motions).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/benchmark", "Where results go (created).")
_BASELINE = flags.DEFINE_bool("baseline", True, "Also fit the avatar with poses fixed at HMR.")
_CEILING = flags.DEFINE_bool(
    "ceiling", False, "Also fit the avatar on the ground-truth poses, shape and translation "
    "(no depth alignment): the novel-pose PSNR that perfect refinement would reach.")
_BATCH = flags.DEFINE_integer("batch", 4, "Subjects per fit_many call (0: the whole split).")
_EVAL_STRIDE = flags.DEFINE_integer("eval_stride", 3, "Novel-view images on every k-th frame "
                                    "(pose metrics always use every frame).")
_CHECKPOINTS = flags.DEFINE_bool("checkpoints", True, "Checkpoint the fits and resume.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", 0, "Override the suite's frames per sequence "
                                   "(0: the suite's; smaller only for smoke runs).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "Override the suite's image size (0: the "
                                   "suite's; smaller only for smoke runs).")
_HEADLINE_DEPTH = flags.DEFINE_string(
    "headline_depth", None, "Depth preset for the sequences that have `unidepth_like` depth "
    "(e.g. unidepth_metric: the same network without its metric scale error, to measure what "
    "that error costs); default: the suite's.")
flags.adopt_module_key_flags(common)

# Columns of the per-sequence table: (header, getter of a sequence's result dict).
_POSE_COLUMNS = (("MPJPE", "mpjpe"), ("PA-MPJPE", "pa_mpjpe"), ("PVE", "pve"), ("V2V", "v2v"),
                 ("root", "root_error"), ("root z", "root_z"),
                 ("accel", "accel_error_aligned"), ("accel world", "accel_error"))


def pose_summary(body_model, sequence, poses) -> dict:
  """Pose metrics of ``poses`` against the sequence's ground truth, plus the root error along
  the training camera's axis and the per-joint errors (mm)."""
  out = metrics.pose_metrics(body_model, poses, sequence.gt)
  _, pred = body_lib.pose_frames_host(body_model, poses)
  _, gt = body_lib.pose_frames_host(body_model, sequence.gt)
  cam = np.asarray(metrics.root_error_in_camera(pred, gt, np.asarray(
      sequence.cameras.world_to_cam)))
  out["root_z"] = float(np.mean(np.abs(cam[:, 2])))
  out["root_z_signed"] = float(np.mean(cam[:, 2]))
  out["per_joint"] = np.asarray(metrics.per_joint_mpjpe(pred, gt)).tolist()
  return out


def depth_scale_error(body_model, sequence, config) -> float | None:
  """Mean |camera-axis root error| (mm) of the ground-truth root moved by the depth's own
  scale error; None without metric depth.

  The depth the fit sees is the true depth times ``scale_t · (f_camera / f_depth)^power``
  (the simulated network's drawn scale, ``metadata["depth_noise"]``, and the focal rescaling
  of ``config``), so this is the error a fit that takes the person's distance from the depth
  map inherits, before any bias of its own (0 for exact depth).
  """
  if sequence.depth is None or sequence.depth_kind != "metric":
    return None
  t = len(sequence)
  k = np.broadcast_to(np.asarray(sequence.cameras.K, np.float32), (t, 3, 3))
  depth_k = k if sequence.depth_K is None else np.broadcast_to(
      np.asarray(sequence.depth_K, np.float32), (t, 3, 3))
  noise = sequence.metadata.get("depth_noise")
  scale = np.ones(t) if noise is None else np.asarray(noise["scale"], np.float64)
  factor = scale * fit_data.focal_ratio(k, depth_k, config.depth_focal_power)
  _, joints = body_lib.pose_frames_host(body_model, sequence.gt)
  w2c = np.broadcast_to(np.asarray(sequence.cameras.world_to_cam, np.float64), (t, 4, 4))
  root_z = np.einsum("tj,tj->t", w2c[:, 2, :3], joints[:, 0]) + w2c[:, 2, 3]
  return 1000.0 * float(np.mean(np.abs(factor - 1.0) * root_z))


def subject(result, i: int, num_frames: int):
  """Subject ``i``'s avatar and its first ``num_frames`` poses of a ``fit_many`` result."""
  avatar = jax.tree_util.tree_map(lambda x: x[i], result.avatar)
  poses = body_lib.SMPLParams(
      betas=np.asarray(result.poses.betas[i]),
      body_pose=np.asarray(result.poses.body_pose[i, :num_frames]),
      global_orient=np.asarray(result.poses.global_orient[i, :num_frames]),
      transl=np.asarray(result.poses.transl[i, :num_frames]))
  return avatar, poses


def fit_group(entries, sequences, config, body_model, tag: str) -> tuple[list, float]:
  """Fits ``sequences`` in batches of ``--batch``; returns per-subject (avatar, poses), seconds."""
  batch = _BATCH.value or len(sequences)
  out, seconds = [], 0.0
  for start in range(0, len(sequences), batch):
    group = sequences[start:start + batch]
    names = [e.name for e in entries[start:start + batch]]
    print(f"[{tag}] fitting {len(group)} subject(s): {', '.join(names)}", flush=True)
    keys = [jax.random.fold_in(jax.random.key(_FIT.fit_seed.value), start + i)
            for i in range(len(group))]
    ckpt = (os.path.join(_OUTPUT_DIR.value, "checkpoints", f"{tag}-{start // batch}")
            if _CHECKPOINTS.value else None)
    t0 = time.perf_counter()
    result = fit.fit_many(group, config, keys=keys, body_model=body_model, checkpoint_dir=ckpt)
    seconds += time.perf_counter() - t0
    out += [subject(result, i, len(seq)) for i, seq in enumerate(group)]
  return out, seconds


def evaluate(entry, sequence, body_model, config, avatar, poses) -> dict:
  """Pose and image metrics of one fitted subject."""
  ev = evaluation.evaluate_run(body_model, sequence, avatar, poses,
                               background=config.background, frame_stride=_EVAL_STRIDE.value,
                               backend=config.backend, tile_capacity=config.tile_capacity,
                               use_lpips=False, train_view=False, progress=False)
  return {"pose": pose_summary(body_model, sequence, poses),
          "novel_view": {k: ev["novel_view"][k] for k in ("psnr", "ssim")},
          "novel_pose": {k: ev["novel_pose"][k] for k in ("psnr", "ssim")},
          "drift_mm": ev["drift"]["mean_mm"], "split": entry.split,
          "headline": entry.headline, "motion": entry.motion, "seed": entry.seed,
          "hmr_noise": entry.hmr_noise, "depth": entry.depth}


def _mean_std(values) -> str:
  v = np.asarray(values, np.float64)
  return f"{v.mean():.1f} ± {v.std():.1f}"


def _depth_scale(row) -> str:
  return "n/a" if row.get("depth_scale_z") is None else f"{row['depth_scale_z']:.1f}"


def results_table(rows: dict) -> str:
  """Markdown: one row per sequence (HMR → refined), then mean ± std rows."""
  headers = [h for h, _ in _POSE_COLUMNS] + ["depth scale error at root", "NV PSNR", "NP PSNR",
                                               "NP PSNR fixed HMR", "NP PSNR GT poses",
                                               "NV SSIM"]
  lines = ["| sequence | " + " | ".join(headers) + " |",
           "| --- | " + " | ".join("---:" for _ in headers) + " |"]

  def cells(r):
    pose = [f"{r['hmr_pose'][k]:.1f} → {r['pose'][k]:.1f}" for _, k in _POSE_COLUMNS]
    base, ceiling = r.get("baseline"), r.get("ceiling")
    return pose + [_depth_scale(r), f"{r['novel_view']['psnr']:.2f}",
                   f"{r['novel_pose']['psnr']:.2f}",
                   f"{base['novel_pose']['psnr']:.2f}" if base else "n/a",
                   f"{ceiling['novel_pose']['psnr']:.2f}" if ceiling else "n/a",
                   f"{r['novel_view']['ssim']:.3f}"]

  for name, r in rows.items():
    lines.append(f"| {name} | " + " | ".join(cells(r)) + " |")
  for label, subset in (("mean ± std", list(rows.values())),
                        ("headline mean ± std", [r for r in rows.values() if r["headline"]])):
    if not subset:
      continue
    pose = [f"{_mean_std([r['hmr_pose'][k] for r in subset])} → "
            f"{_mean_std([r['pose'][k] for r in subset])}" for _, k in _POSE_COLUMNS]
    scales = [r.get("depth_scale_z") for r in subset]
    img = [_mean_std(scales) if None not in scales else "n/a",
           _mean_std([r["novel_view"]["psnr"] for r in subset]),
           _mean_std([r["novel_pose"]["psnr"] for r in subset]),
           (_mean_std([r["baseline"]["novel_pose"]["psnr"] for r in subset])
            if all("baseline" in r for r in subset) else "n/a"),
           (_mean_std([r["ceiling"]["novel_pose"]["psnr"] for r in subset])
            if all("ceiling" in r for r in subset) else "n/a"),
           _mean_std([100 * r["novel_view"]["ssim"] for r in subset]) + " %"]
    lines.append(f"| **{label}** ({len(subset)}) | " + " | ".join(pose + img) + " |")
  return "\n".join(lines)


def reductions_table(rows: dict) -> str:
  """Markdown: mean reduction against HMR (%) and the sequences that got worse."""
  lines = ["| subset | " + " | ".join(h for h, _ in _POSE_COLUMNS[:6]) +
           " | root z left (% of HMR) | depth scale error at root (% of HMR) |"
           " NP PSNR gain over fixed HMR (dB) | the same with GT poses (dB) |"
           " worse than HMR |",
           "| --- |" + " ---: |" * 11]
  for label, subset in (("all", rows), ("headline", {n: r for n, r in rows.items()
                                                     if r["headline"]})):
    if not subset:
      continue
    red = [np.mean([100 * (1 - r["pose"][k] / r["hmr_pose"][k]) for r in subset.values()])
           for _, k in _POSE_COLUMNS[:6]]
    left = np.mean([100 * r["pose"]["root_z"] / r["hmr_pose"]["root_z"]
                    for r in subset.values()])
    scales = [r.get("depth_scale_z") for r in subset.values()]
    scale = "n/a" if None in scales else "{:.0f} %".format(np.mean(
        [100 * e / r["hmr_pose"]["root_z"] for e, r in zip(scales, subset.values())]))
    gains = [r["novel_pose"]["psnr"] - r["baseline"]["novel_pose"]["psnr"]
             for r in subset.values() if "baseline" in r]
    worse = [f"{n} ({k})" for n, r in subset.items() for _, k in _POSE_COLUMNS[:6]
             if r["pose"][k] > r["hmr_pose"][k]]
    gain = f"{np.mean(gains):+.2f}" if gains else "n/a"
    best = [r["ceiling"]["novel_pose"]["psnr"] - r["baseline"]["novel_pose"]["psnr"]
            for r in subset.values() if "baseline" in r and "ceiling" in r]
    best_gain = f"{np.mean(best):+.2f}" if best else "n/a"
    lines.append(f"| {label} ({len(subset)}) | " + " | ".join(f"{x:.0f} %" for x in red) +
                 f" | {left:.0f} % | {scale} | {gain} | {best_gain} |"
                 f" {', '.join(worse) or 'none'} |")
  return "\n".join(lines)


def joints_table(rows: dict) -> str:
  """Markdown: per-joint MPJPE (pelvis-aligned), HMR → refined, mean over the sequences."""
  hmr = np.mean([r["hmr_pose"]["per_joint"] for r in rows.values()], axis=0)
  ref = np.mean([r["pose"]["per_joint"] for r in rows.values()], axis=0)
  lines = ["| joint | HMR | refined | change |", "| --- | ---: | ---: | ---: |"]
  for j, name in enumerate(body_lib.SMPL_JOINT_NAMES[1:], start=1):
    lines.append(f"| {name} | {hmr[j]:.1f} | {ref[j]:.1f} | "
                 f"{100 * (ref[j] / hmr[j] - 1):+.0f} % |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  entries = suite.split_sequences(_SPLIT.value)
  if _ONLY.value:
    entries = [e for e in entries if e.name in _ONLY.value or e.motion in _ONLY.value]
    if not entries:
      raise common.InputError(f"--only: no suite entry of split {_SPLIT.value!r} matches "
                              f"{_ONLY.value}")
  config = common.fit_config(_FIT, body_model=_BODY_MODEL.value)
  body_model = common.load_body_model(_BODY_MODEL.value)
  out_dir = _OUTPUT_DIR.value
  common.write_config(out_dir, "benchmark", split=_SPLIT.value,
                      sequences=[e.name for e in entries],
                      headline_depth=_HEADLINE_DEPTH.value, fit_config=config)
  t0 = time.perf_counter()
  overrides = {k: v for k, v in (("num_frames", _NUM_FRAMES.value),
                                  ("image_size", _IMAGE_SIZE.value)) if v}
  def depth_swap(entry) -> dict:  # --headline_depth replaces the headline sequences' depth
    swap = _HEADLINE_DEPTH.value and entry.depth == "unidepth_like"
    return {"depth": _HEADLINE_DEPTH.value} if swap else {}

  sequences = [e.load(body_model=body_model, **overrides, **depth_swap(e)) for e in entries]
  data_s = time.perf_counter() - t0
  print(f"{len(sequences)} sequences ready in {data_s:.0f} s", flush=True)
  joint, joint_s = fit_group(entries, sequences, config, body_model, "joint")
  fixed, fixed_s = (fit_group(entries, sequences, config.avatar_only(), body_model, "fixed")
                    if _BASELINE.value else ([None] * len(entries), 0.0))
  # The ceiling fits start from (and keep) the ground truth: it stands in for HMR's estimates.
  ceiling, ceiling_s = (fit_group(entries, [dataclasses.replace(s, hmr=s.gt) for s in sequences],
                                  dataclasses.replace(config.avatar_only(), align_depth=False),
                                  body_model, "ceiling")
                        if _CEILING.value else ([None] * len(entries), 0.0))
  rows = {}
  for entry, seq, fitted, base, best in zip(entries, sequences, joint, fixed, ceiling):
    print(f"evaluating {entry.name}", flush=True)
    row = evaluate(entry, seq, body_model, config, *fitted)
    row["hmr_pose"] = pose_summary(body_model, seq, seq.hmr)
    row["depth_scale_z"] = depth_scale_error(body_model, seq, config)
    if base is not None:
      row["baseline"] = evaluate(entry, seq, body_model, config, *base)
    if best is not None:
      row["ceiling"] = evaluate(entry, seq, body_model, config, *best)
    rows[entry.name] = row
  total_s = time.perf_counter() - t0
  peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  text = "\n\n".join([
      f"# Benchmark, split {_SPLIT.value}: {len(entries)} sequences",
      "Pose errors in mm (HMR → refined); root z = root error along the training camera's "
      "axis; depth scale error at root = the camera-axis error of the true root placed by the "
      "depth map's own scale error (what a fit inherits from the depth); accel = "
      "pelvis-aligned (VIBE/WHAM), accel world = world frame (mm/frame²); NV / NP = novel "
      "view / novel pose, PSNR in dB inside the person's box; GT poses = the avatar fitted on "
      "the ground-truth poses, shape and translation (with --ceiling).",
      results_table(rows), "## Mean reduction against the HMR initialisation",
      reductions_table(rows), "## Per joint (MPJPE, pelvis-aligned, mean over sequences)",
      joints_table(rows),
      f"Time: {total_s:.0f} s in all (data {data_s:.0f} s, joint fits {joint_s:.0f} s, "
      f"fixed-pose fits {fixed_s:.0f} s; joint / fixed = "
      f"{joint_s / fixed_s if fixed_s else float('nan'):.2f}; ground-truth-pose fits "
      f"{ceiling_s:.0f} s); peak RSS {peak_gb:.1f} GB; "
      f"{config.steps} steps per fit."])
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(text + "\n")
  report.write_json(os.path.join(out_dir, "results.json"), {
      "split": _SPLIT.value, "sequences": rows, "time_s": {
          "total": total_s, "data": data_s, "joint_fits": joint_s, "fixed_fits": fixed_s,
          "ceiling_fits": ceiling_s},
      "peak_rss_gb": peak_gb, "config": config.to_json()})
  print(text)


if __name__ == "__main__":
  common.run(main)
