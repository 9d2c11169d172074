r"""How much of HMR's root error along the camera axis the depth alignment removes, before any
fit (``hsjax.fit.align``), per suite sequence with metric depth.

  python experiments/depth_alignment.py --split=dev --out=depth_alignment_dev.json

For each variant (``--focal_powers`` × ``--windows``: the focal-ratio rescaling of
monocular depth, ``FitConfig.depth_focal_power``, and the temporal median filter of the
per-frame corrections) it prints the mean |error| along the training camera's axis of the
initial pelvis, in mm and in % of HMR's, and writes JSON. It runs no fit: about a second per
sequence and variant on 2 CPU cores once the sequences are cached. Choose on ``dev``; report
``test``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import flags
import numpy as np

from hsjax import body as body_lib
from hsjax import metrics
from hsjax.data.synthetic import suite
from hsjax.fit import FitConfig
from hsjax.fit import align
from hsjax.fit import data as fit_data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_SPLIT = flags.DEFINE_enum("split", "dev", ["dev", "test", "all"], "Suite split.")
_POWERS = flags.DEFINE_list("focal_powers", ["0", "1", "2"], "depth_focal_power values.")
_WINDOWS = flags.DEFINE_list("windows", ["1", "5"], "Temporal median-filter lengths.")
_OUT = flags.DEFINE_string("out", "depth_alignment.json", "JSON output path.")
_EDGE = flags.DEFINE_integer("depth_edge_px", FitConfig.depth_edge_px, "Depth dropped within "
                             "this many pixels of the silhouette (FitConfig.depth_edge_px).",
                             lower_bound=0)


def camera_axis_error(body_model, params, gt, world_to_cam) -> float:
  """Mean |pelvis error| along the camera axis, mm: params, gt SMPLParams of T frames."""
  _, pred = body_lib.pose_frames_host(body_model, params)
  _, truth = body_lib.pose_frames_host(body_model, gt)
  cam = np.asarray(metrics.root_error_in_camera(pred, truth, world_to_cam))
  return float(np.abs(cam[:, 2]).mean())


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  model = body_lib.load_body_model()
  config = FitConfig(depth_focal_power=0.0, align_depth=False, depth_edge_px=_EDGE.value,
                     progress=False)
  variants = [(float(p), int(w)) for p in _POWERS.value for w in _WINDOWS.value]
  rows, t0 = {}, time.perf_counter()
  for entry in suite.split_sequences(_SPLIT.value):
    if entry.depth == "none":
      continue
    seq = entry.load(body_model=model)
    source = fit_data.FrameSource(seq, config)
    data = fit_data.prepare_data(seq, config, model, source=source)  # HMR's, depth as given
    frames = source.batch(np.arange(data.num_frames))
    init = body_lib.SMPLParams(**{k: np.asarray(getattr(data.init, k))
                                  for k in body_lib.SMPL_PARAM_FIELDS})
    k, w2c = np.asarray(data.K), np.asarray(data.world_to_cam)
    depth_k = np.asarray(data.depth_K)
    truth_w2c = np.asarray(seq.cameras.world_to_cam)
    hmr = camera_axis_error(model, init, seq.gt, truth_w2c)
    row = {"hmr_mm": hmr}
    for power, window in variants:
      depth = frames.depth * fit_data.focal_ratio(k, depth_k, power)[:, None, None]
      transl, _ = align.align_translation(model, init, depth, frames.mask, k, w2c,
                                          window=window)
      row[f"p{power:g}_w{window}_mm"] = camera_axis_error(
          model, dataclasses.replace(init, transl=transl), seq.gt, truth_w2c)
    rows[entry.name] = row
    print(entry.name, {n: round(v, 1) for n, v in row.items()}, flush=True)
  names = [f"p{p:g}_w{w}_mm" for p, w in variants]
  lines = ["| sequence | HMR | " + " | ".join(
      f"power {p:g}, window {w}" for p, w in variants) + " |",
           "| --- | ---: |" + " ---: |" * len(variants)]
  for seq_name, row in rows.items():
    lines.append(f"| {seq_name} | {row['hmr_mm']:.0f} | " + " | ".join(
        f"{row[n]:.0f} ({100 * row[n] / row['hmr_mm']:.0f} %)" for n in names) + " |")
  means = [np.mean([100 * r[n] / r["hmr_mm"] for r in rows.values()]) for n in names]
  lines.append("| **mean, % of HMR** | 100 % | " + " | ".join(f"**{m:.0f} %**" for m in means)
               + " |")
  table = "\n".join(lines)
  print(f"\nRoot error along the camera axis after alignment, mm (% of HMR's), split "
        f"{_SPLIT.value}; {time.perf_counter() - t0:.0f} s\n\n{table}")
  with open(_OUT.value, "w") as f:
    json.dump({"split": _SPLIT.value, "sequences": rows, "table": table}, f, indent=1)


if __name__ == "__main__":
  common.run(main)
