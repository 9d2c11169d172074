r"""Benchmarks hsjax's SMPL forward pass (FK + LBS) against the ``smplx`` package on CPU.

Both run in the same process on the same CPU threads: hsjax as one jitted ``body_forward``
(vertices, 24 joints, the 24 world transforms and the rotation matrices), smplx as
``SMPL.forward`` under ``torch.no_grad()`` (vertices and joints) from a plain ``.pkl`` written
from the same model arrays. Reported per batch size: compile time (hsjax), median and p10/p90
of ``--repeats`` timed calls after ``--warmup`` untimed ones, the smplx / hsjax time ratio
(> 1: hsjax is faster), the peak resident-memory increase while the timed calls run (VmHWM
after a reset, minus RSS before), XLA's own buffer estimate, and the largest vertex
difference between the two (a check that both did the same work).

Command (the numbers in BENCHMARKS.md)::

  python3 experiments/bench_body.py --batch_sizes=1,64,1024 --model=default \
      --out=bench_body.json

``--posedirs=random`` fills the model's pose blend shapes with small random values, so both
libraries also pay for the 207 x 3V pose-corrective product (real SMPL files have them; the
embedded default body has none and hsjax skips the product for it).
About 1-2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import platform
import tempfile
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import body

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "64", "1024"], "Batch sizes to time.")
_MODEL = flags.DEFINE_string("model", "default",
                             "'default' (embedded body) or the path of an SMPL .pkl / .npz.")
_POSEDIRS = flags.DEFINE_enum("posedirs", "model", ["model", "random"],
                              "Keep the model's posedirs, or replace them by random ones.")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per batch size and library.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed calls before timing.")
_BUDGET_S = flags.DEFINE_float("budget_s", 15.0,
                               "Stop timing a (library, batch) pair after this many seconds "
                               "once at least 5 calls are timed.")
_THREADS = flags.DEFINE_integer("threads", 0,
                                "CPU threads: 0 = the CPUs this process may use (torch gets "
                                "that many; XLA's CPU backend uses them all); 1 = both "
                                "libraries single-threaded.")
_SKIP_SMPLX = flags.DEFINE_bool("skip_smplx", False, "Time hsjax only.")
_OUT = flags.DEFINE_string("out", "bench_body.json", "JSON output path.")


def _reset_peak_rss() -> bool:
  """Resets VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _time_calls(fn, repeats: int, warmup: int) -> dict:
  for _ in range(warmup):
    fn()
  gc.collect()
  rss_before = common.process_memory_bytes("VmRSS")
  peak_ok = _reset_peak_rss()
  times, cpu_times = [], []
  for _ in range(repeats):
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
    if len(times) >= 5 and sum(times) > _BUDGET_S.value:
      break
  peak = common.process_memory_bytes("VmHWM") - rss_before if peak_ok else None
  times = np.asarray(times) * 1e3
  return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10)),
          # CPU time of the process (all threads): steadier than wall time on a shared machine.
          "cpu_median_ms": float(np.median(cpu_times) * 1e3),
          "p90_ms": float(np.percentile(times, 90)), "calls": len(times),
          "peak_rss_increase_mb": None if peak is None else max(peak, 0) / 2**20}


def _random_params(batch: int, num_betas: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {
      "betas": rng.normal(size=(batch, num_betas)).astype(np.float32),
      "body_pose": rng.normal(scale=0.4, size=(batch, 23, 3)).astype(np.float32),
      "global_orient": rng.normal(scale=0.5, size=(batch, 3)).astype(np.float32),
      "transl": rng.normal(scale=0.5, size=(batch, 3)).astype(np.float32),
  }


def _bench_hsjax(model: body.BodyModel, params: dict) -> tuple[dict, np.ndarray]:
  args = (model, *(jnp.asarray(params[k]) for k in ("betas", "body_pose", "global_orient",
                                                     "transl")))
  start = time.perf_counter()
  compiled = jax.jit(body.body_forward).lower(*args).compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  xla_mb = None
  if mem is not None:
    xla_mb = (mem.temp_size_in_bytes + mem.output_size_in_bytes) / 2**20

  def call():
    return jax.block_until_ready(compiled(*args))

  stats = _time_calls(call, _REPEATS.value, _WARMUP.value)
  stats.update(compile_s=compile_s, xla_temp_plus_output_mb=xla_mb)
  return stats, np.asarray(call().vertices)


def _bench_smplx(pkl_path: str, params: dict, num_betas: int) -> tuple[dict, np.ndarray]:
  import smplx  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  model = smplx.SMPL(model_path=pkl_path, num_betas=num_betas)
  batch = params["betas"].shape[0]
  t = {k: torch.from_numpy(v) for k, v in params.items()}
  kwargs = dict(betas=t["betas"], body_pose=t["body_pose"].reshape(batch, 69),
                global_orient=t["global_orient"], transl=t["transl"])

  def call():
    with torch.no_grad():
      return model(**kwargs)

  stats = _time_calls(call, _REPEATS.value, _WARMUP.value)
  return stats, call().vertices.numpy()


def _write_smplx_pkl(arrays: dict, directory: str) -> str:
  import scipy.sparse  # pylint: disable=g-import-not-at-top
  keys = ("v_template", "shapedirs", "posedirs", "weights", "kintree_table", "f")
  data = {k: np.asarray(arrays[k]) for k in keys}
  data["J_regressor"] = scipy.sparse.csc_matrix(np.asarray(arrays["J_regressor"]))
  path = os.path.join(directory, "SMPL_NEUTRAL.pkl")
  with open(path, "wb") as f:
    pickle.dump(data, f, protocol=2)
  return path


def _wall(stats: dict | None) -> str:
  if stats is None:
    return "-"
  return f"{stats['median_ms']:.2f} ({stats['p10_ms']:.2f}-{stats['p90_ms']:.2f})"


def _mem(stats: dict | None) -> str:
  if stats is None or stats["peak_rss_increase_mb"] is None:
    return "n/a" if stats else "-"
  return f"{stats['peak_rss_increase_mb']:.0f}"


def _ratio(value: float | None) -> str:
  return "-" if value is None else f"{value:.2f}x"


def main(argv):
  del argv
  threads = _THREADS.value or len(os.sched_getaffinity(0))
  if threads == 1:
    # Must be set before the first JAX computation initialises the CPU backend.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  elif _THREADS.value and threads != len(os.sched_getaffinity(0)):
    raise ValueError(f"--threads={threads}: XLA's CPU backend can only be limited to 1 thread "
                     f"or use all {len(os.sched_getaffinity(0))}; pass 0 or 1")
  path = body.default_body_path() if _MODEL.value == "default" else _MODEL.value
  arrays = body.read_body_file(path)
  num_verts = np.asarray(arrays["v_template"]).shape[0]
  if arrays.get("posedirs") is None:
    arrays["posedirs"] = np.zeros((num_verts, 3, body.NUM_POSE_FEATURES), np.float32)
  if _POSEDIRS.value == "random":
    rng = np.random.default_rng(1)
    arrays["posedirs"] = rng.normal(scale=1e-3, size=(num_verts, 3, body.NUM_POSE_FEATURES)
                                   ).astype(np.float32)
  num_betas = 10
  model = body.body_model_from_arrays(arrays, num_betas=num_betas, source=path)

  results = []
  with tempfile.TemporaryDirectory() as tmp:
    pkl = None
    if not _SKIP_SMPLX.value:
      import torch  # pylint: disable=g-import-not-at-top
      torch.set_num_threads(threads)
      pkl = _write_smplx_pkl(arrays, tmp)
    for batch in (int(b) for b in _BATCH_SIZES.value):
      params = _random_params(batch, num_betas)
      row = {"batch": batch}
      row["hsjax"], verts = _bench_hsjax(model, params)
      if pkl is not None:
        row["smplx"], ref = _bench_smplx(pkl, params, num_betas)
        row["ratio_smplx_over_hsjax"] = row["smplx"]["median_ms"] / row["hsjax"]["median_ms"]
        row["cpu_ratio_smplx_over_hsjax"] = (row["smplx"]["cpu_median_ms"] /
                                             row["hsjax"]["cpu_median_ms"])
        row["max_vertex_diff_m"] = float(np.abs(verts - ref).max())
      results.append(row)
      print(f"batch {batch}: done", flush=True)

  env = {
      "model": _MODEL.value, "posedirs": _POSEDIRS.value, "num_vertices": num_verts,
      "has_posedirs": model.has_posedirs, "threads": threads,
      "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
      "jax": jax.__version__, "backend": jax.default_backend(),
      "repeats": _REPEATS.value, "warmup": _WARMUP.value,
  }
  if pkl is not None:
    import smplx  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    env.update(torch=torch.__version__, smplx=getattr(smplx, "__version__", "0.1.28"))
  header = ("| batch | hsjax wall ms median (p10-p90) | compile s | smplx wall ms median "
            "(p10-p90) | smplx / hsjax wall | CPU ms hsjax / smplx | smplx / hsjax CPU "
            "| peak RSS +MB hsjax / smplx | XLA buffers MB | max abs Δv m |")
  lines = [header, "|" + "---|" * 10]
  for r in results:
    h, s = r["hsjax"], r.get("smplx")
    cells = [str(r["batch"]), _wall(h), f"{h['compile_s']:.2f}", _wall(s),
             _ratio(r.get("ratio_smplx_over_hsjax")),
             f"{h['cpu_median_ms']:.2f} / {s['cpu_median_ms']:.2f}" if s else
             f"{h['cpu_median_ms']:.2f} / -",
             _ratio(r.get("cpu_ratio_smplx_over_hsjax")), f"{_mem(h)} / {_mem(s)}",
             f"{h['xla_temp_plus_output_mb']:.1f}" if h["xla_temp_plus_output_mb"] else "n/a",
             f"{r['max_vertex_diff_m']:.1e}" if s else "-"]
    lines.append("| " + " | ".join(cells) + " |")
  table = "\n".join(lines)
  print(f"\nSMPL FK + LBS on {env['cpu']} ({threads} threads), model {env['model']} "
        f"(V={num_verts}, posedirs: {'non-zero' if model.has_posedirs else 'zero, skipped'})\n")
  print(table)
  with open(_OUT.value, "w", encoding="utf8") as f:
    json.dump({"env": env, "results": results, "table": table}, f, indent=2)
  print(f"\nwrote {_OUT.value}")


if __name__ == "__main__":
  jax.config.parse_flags_with_absl()
  app.run(main)
