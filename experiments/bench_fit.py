r"""Times one fitting step by stage, and the end-to-end default fit.

Stages (the fit's own: ``hsjax.forward`` and ``hsjax.fit.step``), each a separately jitted function on the default sequence's first minibatch with the
default ``FitConfig`` (so each number is that stage alone, compiled alone):

* ``body_fk``: SMPL forward of the minibatch's frames (vertices, joints) and the joints of
  every frame of the sequence (what the temporal terms use);
* ``deform``: LBS of the avatar into the minibatch's frames (``hsjax.forward.deform_frames``);
* ``render``: the rasteriser on the deformed Gaussians (forward only), vmapped over frames;
* ``render_fwd_bwd``: the same with its backward pass (the gradient of an L1 image loss);
* ``loss``: ``hsjax.losses.total_loss`` of the default mapping on a fixed render;
* ``update``: the Optax update of the avatar and the poses from a fixed gradient;
* ``step``: the whole ``hsjax.fit.train_step`` (all of the above with every backward pass);
* ``camel_terms`` / ``depth_3d``: value and gradient of the CAMEL terms (at their default
  weights) / of the 3D depth term (visibility selection, unprojection, Chamfer) alone;
  ``depth_3d_p<P>``: the 3D depth term with P depth pixels per frame (``all``: every valid
  one) instead of the default 512;
* ``camel_search``: one exact search of every Gaussian's nearest template vertex, run every
  ``FitConfig.camel_refresh_every`` steps outside the step; its per-step share is printed
  next to its full cost, which a search inside every step would add;
* ``step_without_new_terms``: the step with the CAMEL and 3D depth weights at 0; the
  difference to ``step`` is what those terms cost;
* ``step_absolute_depth``: the step with the absolute depth terms (``depth`` 0.5,
  ``depth_3d`` 1) in place of the default offset/shape split (``depth_root``,
  ``depth_relative``, ``depth_3d_relative_skin``): the difference is what the split's per-frame
  medians (a sort of the person's pixels) cost.

Before / after (``--compare_repeats``, default 30; 0 skips it): the rasteriser's forward +
backward, the loss terms' value and gradient, and the whole step, each also traced with the
implementations they had before the sub-tile compositor, the ellipse tile binning, the
sort-free depth median and the argmin-free nearest-point search
(:func:`previous_implementations`), and timed interleaved with the current ones (one call of
each in turn, median over the rounds), so that a load change on a shared machine hits both
alike. The load average before and after is printed with them.

Reported per stage: compile time and median / p10 / p90 over ``--repeats`` calls. With
``--e2e`` the script also runs the default demo path once, end to end: generating the
synthetic sequence (uncached: ``cache_dir=False``), the full default fit, and the pose errors
before / after; this is the "≤ 10 min on 2 CPU cores" number.

Command (the numbers in BENCHMARKS.md, section Fitting)::

  python3 experiments/bench_fit.py --e2e --out=bench_fit.json

Stage timing alone takes 2-4 minutes on 2 shared CPU cores (mostly compilation); ``--e2e``
adds the fit itself.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import camel
from hsjax import fit as fit_lib
from hsjax import forward
from hsjax import losses as losses_lib
from hsjax.losses import depth as depth_lib
from kernels.rasterize import api as raster_api
from kernels.rasterize import binning
from kernels.rasterize import xla


_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per stage.")
_E2E = flags.DEFINE_bool("e2e", False, "Also time the end-to-end default fit (minutes).")
_OUT = flags.DEFINE_string("out", "bench_fit.json", "JSON output path.")
_MD = flags.DEFINE_string("markdown", "", "Also write the Markdown tables to this path.")
_COMPARE_REPEATS = flags.DEFINE_integer(
    "compare_repeats", 30, "Interleaved rounds of the before / after comparison (0: skip).")
_DEPTH_POINTS = flags.DEFINE_list(
    "depth_3d_points", ["256", "1024", "0"], "Also time the 3D depth term with these numbers "
    "of depth pixels per frame (0: every valid pixel; the default term uses 512).")


# The depth terms before the offset/shape split (metric L1 and Chamfer on the absolute depth).
ABSOLUTE_DEPTH_WEIGHTS = {"depth": 0.5, "depth_3d": 1.0, "depth_relative": 0.0,
                          "depth_root": 0.0, "depth_3d_relative": 0.0,
                          "depth_3d_relative_skin": 0.0}


def _time(fn, *args, repeats: int) -> dict:
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  ms = 1e3 * np.asarray(times)
  return {"compile_s": round(compile_s, 2), "median_ms": round(float(np.median(ms)), 1),
          "p10_ms": round(float(np.percentile(ms, 10)), 1),
          "p90_ms": round(float(np.percentile(ms, 90)), 1)}


def _argsort_kth_index(x, k):
  """The depth median's pick as it was: a full sort of the frame's pixels."""
  return jnp.argsort(x)[k]


def _argmin_nearest_points(queries, points, *, points_valid=None, chunk=2048):
  """hsjax.camel.nearest_points as it was: XLA's argmin, one chunk padded to ``chunk``."""
  num_q = queries.shape[0]
  q = jnp.pad(queries, ((0, (-num_q) % chunk), (0, 0))).reshape(-1, chunk, 3)
  p_sq = jnp.sum(points * points, -1)
  if points_valid is not None:
    p_sq = jnp.where(points_valid, p_sq, jnp.inf)

  def one_chunk(qc):
    d = p_sq[None, :] - 2.0 * qc @ points.T
    idx = jnp.argmin(d, axis=1)
    return idx.astype(jnp.int32), jnp.sum((qc - points[idx]) ** 2, -1) + jnp.where(
        jnp.isinf(jnp.min(d, axis=1)), jnp.inf, 0.0)

  idx, sq = jax.lax.map(one_chunk, q)
  return idx.reshape(-1)[:num_q], sq.reshape(-1)[:num_q]


@contextlib.contextmanager
def previous_implementations():
  """Functions traced inside use the implementations the step had before: tiles binned by
  their screen boxes, whole 16x16 tiles composited 32 per chunk, the depth median by a sort
  and the nearest-point search by argmin. Results are the same but for float rounding and
  for tiles that overflow (box binning keeps other Gaussians there)."""
  # pylint: disable=protected-access
  saved = (binning.bin_gaussians, xla.composite_xla, depth_lib._kth_smallest_index,
           camel.nearest_points)

  def box_binning(*args, conics=None, opacities=None, **kwargs):
    del conics, opacities
    return saved[0](*args, **kwargs)

  binning.bin_gaussians = box_binning
  xla.composite_xla = functools.partial(saved[1], subtile=None, tiles_per_chunk=32)
  depth_lib._kth_smallest_index = _argsort_kth_index
  camel.nearest_points = _argmin_nearest_points
  try:
    yield
  finally:
    (binning.bin_gaussians, xla.composite_xla, depth_lib._kth_smallest_index,
     camel.nearest_points) = saved


def _time_interleaved(fns: dict, args: tuple, rounds: int) -> dict:
  """Median ms of each already compiled ``fns[name](*args)``, called in turn ``rounds`` times."""
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - t0)
  return {name: round(1e3 * float(np.median(t)), 1) for name, t in times.items()}


def before_after(sequence, config: fit_lib.FitConfig, body_model, rounds: int) -> dict:
  """Before / after medians (ms) of the render's forward + backward, the loss terms' value
  and gradient on a fixed render, and the step (see the module docstring)."""
  source = fit_lib.FrameSource(sequence, config)
  data = fit_lib.prepare_data(sequence, config, source=source)
  state = fit_lib.init_state(data, config, body_model, jax.random.key(0))
  losses = fit_lib.resolve_losses(config)
  tx = fit_lib.make_optimizer(config)
  batch = jax.device_put(source.batch(np.arange(config.batch_frames)))
  frames = batch.frames
  cam = data.cameras(frames)
  images = batch.image
  settings = config.render_settings

  def render_loss(avatar, poses, body_model):
    deformed = forward.deform_frames(avatar, body_model, poses.select(frames))
    return jnp.mean(jnp.abs(forward.render_frames(deformed.gaussians, cam, settings).rgb
                            - images))

  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  poses = state.params.poses
  deformed = forward.deform_frames(avatar, body_model, poses.select(frames))
  render = jax.jit(lambda g: forward.render_frames(g, cam, settings))(deformed.gaussians)
  frame = fit_lib.step.frame_batch(data, batch)
  ctx = losses_lib.StepContext(
      step=jnp.int32(config.warmup_steps), body=forward.pose_frames(body_model, poses.select(
          frames)), deformed=deformed, sequence_joints=forward.sequence_joints(body_model, poses),
      frame_valid=data.frame_valid, init=data.init, body_model=body_model, camera=cam,
      camel_nearest=state.camel_nearest)

  # Every term of the step on a fixed render; the context is an argument, not a constant.
  def terms(render, params, ctx):
    full = fit_lib.FitParams(avatar=avatar_lib.combine(params.avatar, state.buffers),
                             poses=params.poses)
    return losses_lib.total_loss(losses, render, frame, full, ctx)[0]

  stages = {
      "render_fwd_bwd": (jax.grad(render_loss, argnums=(0, 1), allow_int=True),
                         (avatar, poses, body_model)),
      "loss_terms": (jax.value_and_grad(terms, argnums=(0, 1), allow_int=True),
                     (render, state.params, ctx)),
      "step": (functools.partial(fit_lib.train_step, config=config, losses=losses, tx=tx),
               (state, data, batch, body_model)),
  }
  out = {"load_average_before": os.getloadavg()}
  for name, (fn, args) in stages.items():
    # Two function objects: jax.jit caches traces per function, and each needs its own.
    before, after = jax.jit(lambda *a, fn=fn: fn(*a)), jax.jit(lambda *a, fn=fn: fn(*a))
    with previous_implementations():
      jax.block_until_ready(before(*args))  # traced and compiled with the old functions
    jax.block_until_ready(after(*args))
    out[name] = _time_interleaved({"before": before, "after": after}, args, rounds)
  out["load_average_after"] = os.getloadavg()
  out["rounds"] = rounds
  return out


def stage_times(sequence, config: fit_lib.FitConfig, body_model, repeats: int,
                depth_points: tuple[int, ...] = ()) -> dict:
  """Per-stage timings of one step of ``config`` on ``sequence`` (the fit's own stages)."""
  source = fit_lib.FrameSource(sequence, config)
  data = fit_lib.prepare_data(sequence, config, source=source)
  state = fit_lib.init_state(data, config, body_model, jax.random.key(0))
  losses = fit_lib.resolve_losses(config)
  batch = jax.device_put(source.batch(np.arange(config.batch_frames)))
  frames = batch.frames
  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  poses = state.params.poses
  cam = data.cameras(frames)
  settings = config.render_settings
  out = {}

  # The body model is an argument, not a closure constant: XLA would otherwise spend seconds
  # constant-folding template quantities (as the fit's step does, it stays an input).
  @jax.jit
  def body_fk(poses, body_model):
    return (forward.pose_frames(body_model, poses.select(frames)),
            forward.sequence_joints(body_model, poses))

  out["body_fk"] = _time(body_fk, poses, body_model, repeats=repeats)

  @jax.jit
  def deform(avatar, poses, body_model):
    return forward.deform_frames(avatar, body_model, poses.select(frames))

  out["deform"] = _time(deform, avatar, poses, body_model, repeats=repeats)
  deformed = deform(avatar, poses, body_model)

  def render_fn(gaussians):
    return forward.render_frames(gaussians, cam, settings)

  out["render"] = _time(jax.jit(render_fn), deformed.gaussians, repeats=repeats)
  images = batch.image
  out["render_fwd_bwd"] = _time(
      jax.jit(jax.grad(lambda g: jnp.mean(jnp.abs(render_fn(g).rgb - images)))),
      deformed.gaussians, repeats=repeats)
  render = jax.jit(render_fn)(deformed.gaussians)
  overflow = int(np.sum(np.asarray(render.overflow)))

  frame = fit_lib.step.frame_batch(data, batch)
  body, sequence_joints = body_fk(poses, body_model)

  def terms(losses, render, params, deformed, body_model):
    ctx = losses_lib.StepContext(
        step=jnp.int32(config.warmup_steps), body=body, deformed=deformed,
        sequence_joints=sequence_joints, frame_valid=data.frame_valid, init=data.init,
        body_model=body_model, camera=cam, camel_nearest=state.camel_nearest)
    full = fit_lib.FitParams(avatar=avatar_lib.combine(params.avatar, state.buffers),
                             poses=params.poses)
    return losses_lib.total_loss(losses, render, frame, full, ctx)

  out["loss"] = _time(jax.jit(functools.partial(terms, losses)), render, state.params,
                      deformed, body_model, repeats=repeats)
  camel_names = [n for n in losses if n.startswith("camel_")]
  variants = [("camel_terms", {n: losses[n] for n in camel_names}),
              ("depth_3d", {"depth_3d": losses["depth_3d"]})]
  for points in depth_points:  # the 3D depth term at other pixel budgets
    term = losses_lib.make_depth_chamfer(max_points=points or None)
    variants.append((f"depth_3d_p{points or 'all'}", {"depth_3d": (1.0, term)}))
  for stage, subset in variants:
    if all(w == 0 for w, _ in subset.values()):  # switched off: time it at weight 1
      subset = {n: (1.0, fn) for n, (_, fn) in subset.items()}
    grad = jax.jit(jax.value_and_grad(lambda p, d, bm, subset=subset: terms(
        subset, render, p, d, bm)[0], argnums=(0, 1)))
    out[stage] = _time(grad, state.params, deformed, body_model, repeats=repeats)
  out["camel_search"] = _time(fit_lib.step.nearest_template_vertices, avatar.means, body_model,
                              repeats=repeats)

  tx = fit_lib.make_optimizer(config)
  grads = jax.tree_util.tree_map(lambda x: 1e-3 * jnp.ones_like(x), state.params)

  @jax.jit
  def update(grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  out["update"] = _time(update, grads, state.opt_state, state.params, repeats=repeats)
  step = jax.jit(functools.partial(fit_lib.train_step, config=config, losses=losses, tx=tx))
  out["step"] = _time(step, state, data, batch, body_model, repeats=repeats)
  plain = losses_lib.with_weights(
      losses, {n: 0.0 for n in [*camel_names, "depth_3d", "depth_3d_relative",
                                "depth_3d_relative_skin"]})
  step = jax.jit(functools.partial(fit_lib.train_step, config=config, losses=plain, tx=tx))
  out["step_without_new_terms"] = _time(step, state, data, batch, body_model, repeats=repeats)
  absolute = losses_lib.with_weights(losses, ABSOLUTE_DEPTH_WEIGHTS)
  step = jax.jit(functools.partial(fit_lib.train_step, config=config, losses=absolute, tx=tx))
  out["step_absolute_depth"] = _time(step, state, data, batch, body_model, repeats=repeats)
  return {"stages": out, "overflow": overflow,
          "camel_refresh_every": config.camel_refresh_every,
          "setup": {"num_gaussians": config.num_gaussians, "batch_frames": config.batch_frames,
                    "image": [data.height, data.width], "frames": data.num_frames,
                    "backend": raster_api.resolve_backend(config.backend),
                    "tile_capacity": config.tile_capacity}}


def end_to_end(config: fit_lib.FitConfig, body_model) -> dict:
  """Data generation (uncached) + the default fit + pose errors, timed."""
  from hsjax import metrics  # pylint: disable=g-import-not-at-top
  from hsjax.data import synthetic_sequence  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  sequence = synthetic_sequence("default", seed=0, hmr_noise="hmr2_like", cache_dir=False)
  t1 = time.perf_counter()
  result = fit_lib.fit(sequence, config, key=jax.random.key(0), body_model=body_model)
  t2 = time.perf_counter()
  before = metrics.pose_metrics(body_model, sequence.hmr, sequence.gt)
  after = metrics.pose_metrics(body_model, result.poses, sequence.gt)
  keys = ("mpjpe", "pa_mpjpe", "root_error")
  return {"data_s": round(t1 - t0, 1), "fit_s": round(t2 - t1, 1),
          "total_s": round(t2 - t0, 1), "steps": config.steps,
          "hmr": {k: round(before[k], 1) for k in keys},
          "refined": {k: round(after[k], 1) for k in keys}}


def markdown(result: dict) -> str:
  s = result["setup"]
  lines = [
      f"Minibatch: {s['batch_frames']} frames of {s['image'][1]}x{s['image'][0]} px "
      f"(after `downsample`), N = {s['num_gaussians']} Gaussians, backend `{s['backend']}`, "
      f"tile capacity {s['tile_capacity']}; tile overflow on this minibatch: "
      f"{result['overflow']}.", "",
      "| stage | compile s | median ms | p10 ms | p90 ms |", "|---|---|---|---|---|"]
  for name, t in result["stages"].items():
    lines.append(f"| {name} | {t['compile_s']} | {t['median_ms']} | {t['p10_ms']} | "
                 f"{t['p90_ms']} |")
  st = result["stages"]
  new = st["step"]["median_ms"] - st["step_without_new_terms"]["median_ms"]
  search = st["camel_search"]["median_ms"] / max(result["camel_refresh_every"], 1)
  lines += ["", f"CAMEL + 3D depth terms: {new:.1f} ms of the {st['step']['median_ms']} ms "
            f"step ({100 * new / st['step']['median_ms']:.0f} %); the nearest-vertex search "
            f"every {result['camel_refresh_every']} steps adds {search:.1f} ms a step "
            f"(searched inside every step it would add {st['camel_search']['median_ms']} ms).",
            "", f"Depth split (root / relative terms) against the absolute depth terms: "
            f"{st['step']['median_ms']} vs {st['step_absolute_depth']['median_ms']} ms a step "
            f"(x{st['step']['median_ms'] / st['step_absolute_depth']['median_ms']:.2f})."]
  if "before_after" in result:
    ba = result["before_after"]
    lines += ["", f"Before / after, interleaved, median of {ba['rounds']} rounds (load average "
              f"{ba['load_average_before'][0]:.2f} before, {ba['load_average_after'][0]:.2f} "
              "after):", "", "| stage | before ms | after ms | speed-up |", "|---|---|---|---|"]
    for name in ("render_fwd_bwd", "loss_terms", "step"):
      b, a = ba[name]["before"], ba[name]["after"]
      lines.append(f"| {name} | {b} | {a} | x{b / a:.2f} |")
  if "e2e" in result:
    e = result["e2e"]
    lines += ["", "| end to end | data s | fit s | total s | steps |", "|---|---|---|---|---|",
              f"| default demo fit | {e['data_s']} | {e['fit_s']} | {e['total_s']} | "
              f"{e['steps']} |", "",
              "| pose error (mm) | HMR init | refined | change |", "|---|---|---|---|"]
    for k in ("mpjpe", "pa_mpjpe", "root_error"):
      before, after = e["hmr"][k], e["refined"][k]
      lines.append(f"| {k} | {before} | {after} | {100 * (after - before) / before:+.1f} % |")
  return "\n".join(lines)


def main(argv):
  del argv
  from hsjax.data import synthetic_sequence  # pylint: disable=g-import-not-at-top
  body_model = body_lib.load_body_model("default")
  config = fit_lib.FitConfig(progress=False)
  sequence = synthetic_sequence("default", seed=0, hmr_noise="hmr2_like")
  result = stage_times(sequence, config, body_model, _REPEATS.value,
                       tuple(int(p) for p in _DEPTH_POINTS.value))
  if _COMPARE_REPEATS.value > 0:
    result["before_after"] = before_after(sequence, config, body_model, _COMPARE_REPEATS.value)
  if _E2E.value:
    result["e2e"] = end_to_end(config, body_model)
  result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "jax": jax.__version__, "device": str(jax.devices()[0]),
                       "load_average": os.getloadavg()}
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1)
  table = markdown(result)
  print(table)
  if _MD.value:
    with open(_MD.value, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  jax.config.parse_flags_with_absl()
  app.run(main)
