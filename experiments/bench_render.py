r"""Benchmark of the rasteriser on CPU: forward and forward+backward time and memory.

Renders the ``avatar`` workload of :mod:`kernels.rasterize.scenes` (a human-shaped cloud of
surface Gaussians filling ~40% of a square frame) at several image sizes and Gaussian counts,
with the ``xla`` backend and, where ``pixels x Gaussians`` is small enough, the dense
brute-force ``reference`` (ratio = reference time / xla time, measured in the same run).

Each (backend, size, count) runs in its own subprocess so that its peak memory is its own.
Reported per configuration:

* compile: seconds to lower and compile the jitted function (forward, forward+backward).
* fwd / fwd+bwd: median wall time of ``--repeats`` runs after one warm-up, seconds, and in
  brackets the median process CPU time (all threads), the steadier number on a shared
  machine (wall time ~ CPU time / 2 on an idle 2-core machine if both cores are used). The
  forward is ``render`` (projection, binning, compositing); forward+backward is
  ``jax.value_and_grad`` of an image + mask + depth loss w.r.t. means, quats, scales,
  opacities and colours.
* xla_temp: XLA's planned temporary buffer size of the forward+backward executable
  (``compiled.memory_analysis().temp_size_in_bytes``), MiB: the working memory.
* peak_rss: the subprocess's peak resident memory (``getrusage`` max RSS) minus its RSS
  before compiling, MiB (includes compilation).
* visible Gaussians, (Gaussian, tile) intersections, the longest tile list and ``overflow``
  at the chosen ``--tile_capacity``; coverage = fraction of pixels with alpha > 0.5.

Run (about 10 minutes on 2 CPU cores)::

  python3 experiments/bench_render.py --out=/tmp/bench_render.json

Expect on 2 cores: 512^2 with 50k Gaussians forward+backward well under 1 s, and the xla
backend tens to hundreds of times faster than the dense reference.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_SIZES = flags.DEFINE_list("sizes", ["256", "512", "1024"], "Square image sizes, pixels.")
_COUNTS = flags.DEFINE_list("counts", ["10000", "50000", "200000"], "Gaussian counts.")
_BACKENDS = flags.DEFINE_list("backends", ["xla", "reference"], "Backends to time.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per measurement (median).")
_REFERENCE_REPEATS = flags.DEFINE_integer("reference_repeats", 1,
                                          "Timed runs of the (slow) dense reference.")
_TILE_CAPACITY = flags.DEFINE_integer("tile_capacity", None,
                                      "Per-tile capacity K (default: the library default).")
_REFERENCE_MAX_WORK = flags.DEFINE_float(
    "reference_max_work", 7e8, "Largest pixels x Gaussians for which the dense reference runs.")
_OUT = flags.DEFINE_string("out", None, "Write all results as JSON here.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: 'backend,size,count' to measure.")


def _rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(backend: str, size: int, count: int) -> dict:
  """Runs in the worker subprocess: compiles and times one configuration."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from kernels.rasterize import api  # pylint: disable=g-import-not-at-top
  from kernels.rasterize import binning  # pylint: disable=g-import-not-at-top
  from kernels.rasterize import projection  # pylint: disable=g-import-not-at-top
  from kernels.rasterize import scenes  # pylint: disable=g-import-not-at-top

  capacity = _TILE_CAPACITY.value or api.DEFAULT_TILE_CAPACITY
  s = scenes.make_scene("avatar", n=count, width=size, height=size, seed=0)
  target = jax.random.uniform(jax.random.key(0), (size, size, 3))

  def render(g):
    return api.rasterize(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"],
                         s.K, s.world_to_cam, width=size, height=size, backend=backend,
                         tile_capacity=capacity)

  def loss(g):
    out = render(g)
    return (jnp.mean((out.rgb - target) ** 2) + jnp.mean((out.alpha - 1.0) ** 2) +
            1e-2 * jnp.mean(out.depth))

  g = dict(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities,
           colors=s.colors)
  rss0 = _rss_mib()
  result = dict(backend=backend, size=size, count=count, tile_capacity=capacity)
  for name, fn in (("fwd", render), ("fwd_bwd", jax.value_and_grad(loss))):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(g).compile()
    result[f"compile_{name}_s"] = time.perf_counter() - t
    mem = compiled.memory_analysis()
    if mem is not None:
      result[f"xla_temp_{name}_mib"] = mem.temp_size_in_bytes / 2**20
    jax.block_until_ready(compiled(g))
    times, cpu = [], []
    for _ in range(_REPEATS.value):
      t, c = time.perf_counter(), time.process_time()
      jax.block_until_ready(compiled(g))
      times.append(time.perf_counter() - t)
      cpu.append(time.process_time() - c)
    result[f"{name}_s"] = statistics.median(times)
    result[f"{name}_cpu_s"] = statistics.median(cpu)
    if name == "fwd":
      out = compiled(g)
      result["coverage"] = float(jnp.mean(out.alpha > 0.5))
      result["visible"] = int(jnp.sum(out.visible))
      result["overflow"] = int(out.overflow)
  p = projection.project(s.means, s.quats, s.scales, s.opacities, s.K, s.world_to_cam,
                         width=size, height=size)
  tiles = binning.bin_gaussians(p.means2d, p.radii_xy, p.depths, width=size, height=size,
                                capacity=capacity)
  result["intersections"] = int(tiles.num_intersections)
  result["max_tile_count"] = int(jnp.max(tiles.counts))
  result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
  return result


def _table(rows: list[dict]) -> str:
  ref = {(r["size"], r["count"]): r for r in rows if r["backend"] == "reference"}
  head = ("| backend | size | Gaussians | visible | intersections | max/tile | overflow | "
          "coverage | compile fwd / fwd+bwd (s) | fwd wall (cpu) s | fwd+bwd wall (cpu) s | "
          "xla_temp (MiB) | "
          "peak_rss (MiB) | reference / xla (fwd, fwd+bwd) |")
  lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['backend']} | {r['size']}² | {r['count']} | error: {r['error']} |")
      continue
    ratio = ""
    base = ref.get((r["size"], r["count"]))
    if r["backend"] != "reference" and base and "fwd_s" in base:
      ratio = f"{base['fwd_s'] / r['fwd_s']:.0f}x, {base['fwd_bwd_s'] / r['fwd_bwd_s']:.0f}x"
    lines.append(
        f"| {r['backend']} | {r['size']}² | {r['count']} | {r['visible']} | "
        f"{r['intersections']} | {r['max_tile_count']} | {r['overflow']} | "
        f"{r['coverage']:.2f} | {r['compile_fwd_s']:.1f} / {r['compile_fwd_bwd_s']:.1f} | "
        f"{r['fwd_s']:.3f} ({r['fwd_cpu_s']:.3f}) | "
        f"{r['fwd_bwd_s']:.3f} ({r['fwd_bwd_cpu_s']:.3f}) | "
        f"{r.get('xla_temp_fwd_bwd_mib', float('nan')):.0f} | {r['peak_rss_mib']:.0f} | "
        f"{ratio} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if _WORKER.value:
    backend, size, count = _WORKER.value.split(",")
    print(json.dumps(_measure(backend, int(size), int(count))))
    return
  rows = []
  for size in map(int, _SIZES.value):
    for count in map(int, _COUNTS.value):
      for backend in _BACKENDS.value:
        if backend == "reference" and size * size * count > _REFERENCE_MAX_WORK.value:
          continue
        repeats = _REFERENCE_REPEATS.value if backend == "reference" else _REPEATS.value
        cmd = [sys.executable, __file__, f"--worker={backend},{size},{count}",
               f"--repeats={repeats}"]
        if _TILE_CAPACITY.value:
          cmd.append(f"--tile_capacity={_TILE_CAPACITY.value}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
          row = dict(backend=backend, size=size, count=count,
                     error=proc.stderr.strip().splitlines()[-1][:200])
        else:
          row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
  print()
  print(_table(rows))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  app.run(main)
