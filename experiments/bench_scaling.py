r"""How the fit's step time and memory grow with resolution, Gaussians, frames per step and
sequence length.

  python experiments/bench_scaling.py --out=bench_scaling.json --markdown=bench_scaling.md

Every point is measured in a process of its own (so its peak memory is its own): a synthetic
sequence (default body, ``dance_b``, ``hmr2_like``, ``unidepth_like`` depth; generated and
cached on disk beforehand by the parent process, then loaded lazily, frame by frame), the
default ``FitConfig`` with one factor changed, ``prepare_data`` (one pass over the frames,
which keeps them prepared in host memory up to ``FitConfig.frame_cache_gb``), and the jitted
default ``train_step`` compiled once and then called ``--repeats`` times on consecutive
steps, fed as in a fit (each step's frames prepared on the host while the previous step
runs; the time of a step includes waiting for its frames). Reported: data preparation,
compilation, median / p10 / p90 step time, the tile overflow of the last step and the
process's peak resident memory (``VmHWM``, :func:`peak_rss_gb`), with the step time's ratio
to the default point (measured in the same run).

Sweeps, one factor at a time around the default fit (256² images fitted at 128²,
2,000 Gaussians, 4 frames per step, 60 frames):

* ``resolution``: the rendered (fitted) image 128², 256², 512², 1024² (images of that size,
  fitted at full resolution: ``downsample=1``);
* ``gaussians``: 2,000, 20,000, 200,000 (tile capacity kept at the default 128: the
  overflow column counts the Gaussian-tile pairs dropped);
* ``frames_per_step``: 1, 2, 4, 8;
* ``length``: 60, 150, 300, 600 frames of 512² images fitted at 256² (``downsample=2``),
  and 600 frames without a frame cache (every drawn frame read from disk and prepared again),
  with the time of a full default fit estimated as data preparation + compilation + the
  default number of steps × the median step.

A full run with ``--repeats=5`` takes about 6 minutes on 2 CPU cores once the sequences are
cached (generating them the first time, the 600-frame 512² one above all, adds about 10
minutes); ``--sweeps`` picks a subset. ``bench_fit.py`` times the stages of one default
step.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

_OUT = flags.DEFINE_string("out", "bench_scaling.json", "JSON output path.")
_MD = flags.DEFINE_string("markdown", "", "Also write the Markdown table to this path.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed steps per point.", lower_bound=3)
_SWEEPS = flags.DEFINE_list("sweeps", ["resolution", "gaussians", "frames_per_step", "length"],
                            "Which sweeps to run.")
_POINT = flags.DEFINE_string("point", "", "Internal: measure one point (JSON) and print it.")

# The default fit: 256² images fitted at 128², 2,000 Gaussians, 4 frames per step, 60 frames.
DEFAULT = {"image_size": 256, "downsample": 2, "num_gaussians": 2000, "batch_frames": 4,
           "num_frames": 60}
SWEEPS = {
    "resolution": [{"image_size": r, "downsample": 1} for r in (128, 256, 512, 1024)],
    "gaussians": [{"num_gaussians": n} for n in (2000, 20000, 200000)],
    "frames_per_step": [{"batch_frames": b} for b in (1, 2, 4, 8)],
    "length": [{"num_frames": t, "image_size": 512, "downsample": 2} for t in (60, 150, 300, 600)]
              + [{"num_frames": 600, "image_size": 512, "downsample": 2, "frame_cache_gb": 0.0}],
}


def peak_rss_gb() -> float:
  """This process's peak resident memory, GiB: ``VmHWM`` (``common.process_memory_bytes``: a
  point's process is started by a parent that may have just generated a long sequence), or
  ``ru_maxrss`` where there is no /proc."""
  try:
    return common.process_memory_bytes("VmHWM") / 2**30
  except (OSError, RuntimeError):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB


def measure(point: dict, repeats: int) -> dict:
  """One point, in this process: times and peak memory (see the module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit as fit_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  t0 = time.perf_counter()
  sequence = _sequence(point)
  t1 = time.perf_counter()
  config = fit_lib.FitConfig(num_gaussians=point["num_gaussians"],
                             batch_frames=point["batch_frames"], downsample=point["downsample"],
                             frame_cache_gb=point.get("frame_cache_gb", 4.0), progress=False)
  body_model = body_lib.load_body_model(config.body_model)
  source = fit_lib.FrameSource(sequence, config)
  data = fit_lib.prepare_data(sequence, config, body_model, source=source)
  jax.block_until_ready(data)
  t2 = time.perf_counter()
  state = fit_lib.init_state(data, config, body_model, jax.random.key(0))
  # Past the warm-up, so that the poses train as in most of a fit.
  first = config.warmup_steps
  state = state.replace(step=jax.numpy.int32(first))
  step = jax.jit(functools.partial(fit_lib.train_step, config=config,
                                   losses=fit_lib.resolve_losses(config),
                                   tx=fit_lib.make_optimizer(config)))
  # Frames are fed as in a fit: each step's prepared on the host while the previous one runs.
  feeder = fit_lib.loop.BatchFeeder([source], np.asarray(state.key),
                                    np.asarray(data.frame_valid), config, batched=False,
                                    local={0}, steps=range(first, first + repeats + 2))
  t3 = time.perf_counter()
  state, out = step(state, data, feeder.get(first), body_model)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t3
  times = []
  for i in range(1, repeats + 1):
    t = time.perf_counter()
    batch = feeder.get(first + i)
    state, out = step(state, data, batch, body_model)
    feeder.prefetch(first + i + 1)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t)
  feeder.close()
  step_ms = 1000.0 * np.asarray(times)
  rendered = point["image_size"] // point["downsample"]
  return {**point, "rendered": rendered, "load_s": round(t1 - t0, 1),
          "prepare_s": round(t2 - t1, 2), "compile_s": round(compile_s, 1),
          "step_ms": round(float(np.median(step_ms)), 1),
          "step_ms_p10": round(float(np.percentile(step_ms, 10)), 1),
          "step_ms_p90": round(float(np.percentile(step_ms, 90)), 1),
          "overflow": int(np.sum(np.asarray(out.overflow))),
          "peak_rss_gb": round(peak_rss_gb(), 2),
          "full_fit_s_estimate": round(t2 - t1 + compile_s
                                       + config.steps * float(np.median(step_ms)) / 1000, 0)}


def _sequence(point: dict):
  """The point's synthetic sequence (from the cache when generated before)."""
  from hsjax.data import synthetic_sequence  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  return synthetic_sequence("default", seed=0, hmr_noise="hmr2_like", depth="unidepth_like",
                            num_frames=point["num_frames"], image_size=point["image_size"],
                            num_eval_views=0, num_novel_pose=0)


def run_point(point: dict, repeats: int) -> dict:
  """:func:`measure` in a fresh process (the sequence generated and cached here first)."""
  _sequence(point)
  cmd = [sys.executable, os.path.abspath(__file__), f"--point={json.dumps(point)}",
         f"--repeats={repeats}"]
  done = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if done.returncode != 0:
    raise RuntimeError(f"point {point} failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
  head = ("| sweep | rendered | Gaussians | frames/step | frames | step ms (p10–p90) | × default "
          "| compile s | prepare s | overflow | peak RSS GB | full fit s (est.) |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
  body = "".join(
      f"| {r['sweep']} | {r['rendered']}² | {r['num_gaussians']:,} | {r['batch_frames']} | "
      f"{r['num_frames']} | {r['step_ms']} ({r['step_ms_p10']}–{r['step_ms_p90']}) | "
      f"{r['ratio_to_default']:.2f} | {r['compile_s']} | {r['prepare_s']} | {r['overflow']:,} | "
      f"{r['peak_rss_gb']} | {r['full_fit_s_estimate']:.0f} |\n" for r in rows)
  return head + body


def main(argv):
  del argv
  if _POINT.value:
    print(json.dumps(measure(json.loads(_POINT.value), _REPEATS.value)))
    return
  unknown = set(_SWEEPS.value) - set(SWEEPS)
  if unknown:
    raise app.UsageError(f"--sweeps: unknown {sorted(unknown)}; choose from {sorted(SWEEPS)}")
  t0 = time.perf_counter()
  print("default point ...", flush=True)
  default = run_point(DEFAULT, _REPEATS.value)
  rows = [dict(default, sweep="default", ratio_to_default=1.0)]
  for sweep in _SWEEPS.value:
    for change in SWEEPS[sweep]:
      point = {**DEFAULT, **change}
      print(f"{sweep}: {change} ...", flush=True)
      result = run_point(point, _REPEATS.value)
      label = sweep if point.get("frame_cache_gb", 1.0) > 0 else f"{sweep}, no frame cache"
      rows.append(dict(result, sweep=label,
                       ratio_to_default=result["step_ms"] / default["step_ms"]))
      print(f"  step {result['step_ms']} ms, peak RSS {result['peak_rss_gb']} GB", flush=True)
  table = markdown(rows)
  print(table)
  print(f"{time.perf_counter() - t0:.0f} s in all")
  with open(_OUT.value, "w") as f:
    json.dump({"rows": rows, "repeats": _REPEATS.value,
               "time_s": round(time.perf_counter() - t0, 1)}, f, indent=1)
  if _MD.value:
    with open(_MD.value, "w") as f:
      f.write(table)


if __name__ == "__main__":
  app.run(main)
