"""The fitting loop (host side) and the entry points :func:`fit` and :func:`fit_many`.

The loop calls the jitted step (:func:`hsjax.fit.step.train_step`, vmapped over subjects
and sharded over devices for :func:`fit_many`), and between steps does what cannot be
jitted: logging, evaluation callbacks, density control, the CAMEL nearest-vertex search and
checkpoints (:mod:`hsjax.fit.checkpoints`). Every random draw is ``fold_in(key, step)``, so a fit
killed and resumed from its last checkpoint ends bit for bit where an uninterrupted fit ends.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import density as density_lib
from hsjax import losses as losses_lib
from hsjax import metrics
from hsjax import unseen as unseen_lib
from hsjax.body import SMPLParams
from hsjax.fit import checkpoints as ckpt_lib
from hsjax.fit import crop as crop_lib
from hsjax.fit import multihost
from hsjax.fit.config import RESUMABLE_FIELDS
from hsjax.fit.config import FitConfig
from hsjax.fit.data import FitData
from hsjax.fit.data import FrameBatch
from hsjax.fit.data import FrameSource
from hsjax.fit.data import pad_frames
from hsjax.fit.data import prepare_data
from hsjax.fit.step import FitParams
from hsjax.fit.step import FitState
from hsjax.fit.step import StepOutput
from hsjax.fit.step import camel_nearest_for
from hsjax.fit.step import init_state
from hsjax.fit.step import make_optimizer
from hsjax.fit.step import resolve_losses
from hsjax.fit.step import step_frames
from hsjax.fit.step import train_step


@dataclasses.dataclass
class FitResult:
  """The outcome of :func:`fit` (of :func:`fit_many`: lists / leading S axes)."""

  avatar: Any  # the trained hsjax.avatar.Avatar.
  poses: SMPLParams  # refined poses of every frame (world frame, axis-angle).
  history: dict  # "step", "time", "total", one list per loss term, and "eval" records.
  config: FitConfig
  state: FitState | None = None  # the final state (to continue or inspect the optimiser).


class FitDivergedError(FloatingPointError):
  """A non-finite loss or gradient; carries the last good state."""

  def __init__(self, message: str, *, step: int, terms: list[str], state: FitState | None,
               checkpoint: str | None):
    super().__init__(message)
    self.step = step
    self.terms = terms
    self.state = state
    self.checkpoint = checkpoint


@dataclasses.dataclass
class FitProgress:
  """What an evaluation callback receives."""

  step: int
  params: FitParams  # current parameters (for fit_many: leading S axis).
  history: dict
  config: FitConfig
  body_model: body_lib.BodyModel


Callback = Callable[[FitProgress], Mapping[str, float] | None]


def _new_history() -> dict:
  return {"step": [], "time": [], "total": [], "overflow": [], "terms": {}, "eval": []}


def _record(history: dict, step: int, elapsed: float, out: StepOutput, batched: bool):
  """Appends one log record (multi-subject fits record per-subject lists)."""

  def host(x):
    x = np.asarray(x)
    return x.tolist() if batched else float(x)

  history["step"].append(step)
  history["time"].append(round(elapsed, 3))
  history["total"].append(host(out.total))
  history["overflow"].append(int(np.sum(np.asarray(out.overflow))))
  for name, value in out.values.items():
    history["terms"].setdefault(name, []).append(host(value))


def _nonfinite_message(step: int, out: StepOutput, batched: bool) -> tuple[str, list[str]]:
  bad = [n for n, v in out.values.items() if not np.all(np.isfinite(np.asarray(v)))]
  where = ""
  if batched:
    total = np.asarray(out.total)
    where = f" (subjects {np.flatnonzero(~np.isfinite(total)).tolist()})"
  if bad:
    return (f"non-finite loss at step {step}{where}: term(s) {bad} = "
            f"{[np.asarray(out.values[n]).tolist() for n in bad]}", bad)
  if not np.all(np.isfinite(np.asarray(out.total))):
    return f"non-finite total loss at step {step}{where} (a weight schedule?)", []
  return (f"non-finite gradient at step {step}{where} with finite loss terms "
          f"{ {n: np.asarray(v).tolist() for n, v in out.values.items()} }", [])


_densify_jit = jax.jit(density_lib.densify_and_prune, static_argnums=(4,))


def _density_pass(state: FitState, done: int, config: FitConfig, batched: bool
                  ) -> tuple[FitState, dict]:
  """Density control between jitted steps (per subject when batched); shapes never change.

  The key of subject ``s`` after ``done`` steps is ``fold_in(fold_in(key_s, 2), done)``, so a
  subject's fit is the same alone or among others, and after a resume.
  """

  def one(s: FitState) -> tuple[FitState, dict]:
    k = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(s.key), 2), done)
    avatar = avatar_lib.combine(s.params.avatar, s.buffers)
    avatar, opt_state, info = _densify_jit(avatar, s.opt_state, s.density, k, config.density)
    params, buffers = avatar_lib.split(avatar)
    return s.replace(params=s.params.replace(avatar=params), buffers=buffers,
                     opt_state=opt_state, density=density_lib.init_stats(config.num_gaussians)
                     ), info

  if not batched:
    return one(state)
  subjects = state.step.shape[0]
  results = [one(jax.tree_util.tree_map(lambda x, i=i: x[i], state)) for i in range(subjects)]
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[r[0] for r in results])
  return stacked, {"subjects": [r[1] for r in results]}


def _fill_unseen_pass(state: FitState, data: FitData, body_model: body_lib.BodyModel,
                      config: FitConfig, batched: bool) -> tuple[FitState, dict]:
  """The unseen sides of each subject's avatar coloured from the seen ones (hsjax.unseen),
  measured on its valid training frames at the fitted resolution and current poses."""

  def one(s: FitState, d: FitData) -> tuple[FitState, int]:
    avatar = avatar_lib.combine(s.params.avatar, s.buffers)
    coverage = unseen_lib.training_coverage(
        avatar, body_model, s.params.poses, d.cameras(jnp.arange(d.num_frames)),
        frames=np.flatnonzero(np.asarray(d.frame_valid)), settings=config.render_settings)
    area = float(d.frame_area) / unseen_lib.REFERENCE_AREA
    mask = unseen_lib.unseen_gaussians(avatar, coverage,
                                       min_exposure=config.unseen_min_exposure * area)
    params, buffers = avatar_lib.split(unseen_lib.fill_unseen(avatar, body_model, mask))
    return s.replace(params=s.params.replace(avatar=params), buffers=buffers), int(mask.sum())

  if not batched:
    state, count = one(state, data)
    return state, {"unseen": count}
  subjects = state.step.shape[0]
  results = [one(*jax.tree_util.tree_map(lambda x, i=i: x[i], (state, data)))
             for i in range(subjects)]
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[r[0] for r in results])
  return stacked, {"unseen": [r[1] for r in results]}


def _refresh_camel_nearest(state: FitState, body_model: body_lib.BodyModel, config: FitConfig,
                           batched: bool) -> FitState:
  """``state`` with ``camel_nearest`` recomputed for the current canonical avatar."""

  def one(params, buffers):
    return camel_nearest_for(avatar_lib.combine(params.avatar, buffers), body_model, config)

  nearest = (jax.vmap(one) if batched else one)(state.params, state.buffers)
  return state.replace(camel_nearest=nearest)


def _numerics_key(config: FitConfig) -> FitConfig:
  """``config`` with the bookkeeping fields at their defaults (they never change a step)."""
  default = FitConfig()
  return dataclasses.replace(config, **{f: getattr(default, f) for f in RESUMABLE_FIELDS})


@functools.lru_cache(maxsize=16)
def _compiled_step(config: FitConfig, losses_items: tuple, batched: bool, mesh):
  """The jitted (and vmapped / sharded) step; cached so fits with equal settings share it."""
  step_fn = functools.partial(train_step, config=config, losses=dict(losses_items),
                              tx=make_optimizer(config))
  if batched:
    step_fn = jax.vmap(step_fn, in_axes=(0, 0, 0, None))
  if mesh is None:
    return jax.jit(step_fn)
  sharded, replicated = _shardings(mesh)
  return jax.jit(step_fn, in_shardings=(sharded, sharded, sharded, replicated),
                 out_shardings=(sharded, sharded))


def _shardings(mesh):
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("subject"))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return sharded, replicated


class BatchFeeder:
  """Prepares each step's frames on the host, one step ahead, in a background thread.

  A step's frames are a pure function of the fit's key and the step
  (:func:`hsjax.fit.step.step_frames`): those of every step in ``steps`` are drawn at once,
  here, so the thread only reads and prepares frames (numpy, no JAX) while a step runs.
  Subjects held by other processes get zeros (their rows are never put on this process's
  devices).
  """

  def __init__(self, sources: Sequence[FrameSource], key_data: np.ndarray,
               frame_valid: np.ndarray, config: FitConfig, *, batched: bool,
               local: set[int], steps: range):
    self._frames = _frame_schedule(key_data, frame_valid, steps, config.batch_frames,
                                   batched)
    self._first = steps.start
    self._sources, self._batch_frames = sources, config.batch_frames
    self._batched, self._local = batched, local
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self._pending: dict[int, concurrent.futures.Future] = {}

  def prefetch(self, step: int):
    if step not in self._pending:
      self._pending[step] = self._pool.submit(self._make, step)

  def get(self, step: int) -> FrameBatch:
    """The numpy :class:`FrameBatch` of ``step`` (a leading S axis when batched)."""
    self.prefetch(step)
    return self._pending.pop(step).result()

  def close(self):
    self._pool.shutdown(wait=True, cancel_futures=True)

  def _make(self, step: int) -> FrameBatch:
    frames = self._frames[step - self._first]
    if not self._batched:
      return self._sources[0].batch(frames)
    rows = [source.batch(frames[s]) if s in self._local else
            source.empty_batch(self._batch_frames) for s, source in enumerate(self._sources)]
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *rows)


def _frame_schedule(key_data: np.ndarray, frame_valid: np.ndarray, steps: range, batch: int,
                    batched: bool) -> np.ndarray:
  """[len(steps), F] int32 frames of each step (``[len(steps), S, F]`` when batched)."""

  def one(key, step, valid):
    return step_frames(key, step, valid, batch)

  if batched:
    one = jax.vmap(one, in_axes=(0, None, 0))
  every = jax.jit(jax.vmap(one, in_axes=(None, 0, None)))
  return np.asarray(every(key_data, np.arange(steps.start, steps.stop, dtype=np.int32),
                          frame_valid))


def _run(state: FitState, data: FitData, sources: Sequence[FrameSource],
         body_model: body_lib.BodyModel, config: FitConfig, losses: dict, *, batched: bool,
         mesh=None, checkpoints, callbacks: Sequence[Callback], history: dict | None,
         desc: str = "fit") -> tuple[FitState, dict]:
  """Runs the loop from ``state.step`` to ``config.steps``; shared by fit and fit_many.

  ``sources`` are the subjects' frames (one for :func:`fit`), fed to the step a minibatch at
  a time.
  """
  key_data, frame_valid = multihost.to_host((state.key, data.frame_valid))
  local = set(range(len(sources)))
  if mesh is not None:
    sharded, replicated = _shardings(mesh)
    local = multihost.local_rows(sharded, len(sources))
    state = multihost.put(state, sharded)
    data = multihost.put(data, sharded)
    body_model = multihost.put(body_model, replicated)

  history = _new_history() if history is None else history
  start = int(np.max(multihost.to_host(state.step)))
  if start >= config.steps:
    # A finished round restored at its last step (a resumed fit): its history holds the final
    # callbacks' records and its checkpoint is on disk; nothing is left to compile or run.
    return state, history
  try:
    jitted = _compiled_step(_numerics_key(config), tuple(losses.items()), batched, mesh)
  except TypeError:  # an unhashable weight or term: no caching
    jitted = _compiled_step.__wrapped__(config, tuple(losses.items()), batched, mesh)
  time_offset = history["time"][-1] if history["time"] else 0.0
  t0 = time.perf_counter()
  last_ckpt = checkpoints.latest() if checkpoints is not None else None

  def progress_view(st: FitState, step: int) -> FitProgress:
    return FitProgress(step=step, params=multihost.addressable(st.params), history=history,
                       config=config, body_model=body_model)

  def run_callbacks(st: FitState, step: int):
    for callback in callbacks:
      record = callback(progress_view(st, step))
      if record:
        history["eval"].append({"step": step, **{k: _to_py(v) for k, v in record.items()}})

  bar = tqdm.tqdm(total=config.steps, initial=start, disable=not config.progress,
                  desc=desc, dynamic_ncols=True, leave=True)
  feeder = BatchFeeder(sources, key_data, frame_valid, config, batched=batched, local=local,
                       steps=range(start, max(config.steps, start + 1)))
  try:
    for step in range(start, config.steps):
      batch = feeder.get(step)
      if mesh is not None:
        batch = multihost.put(batch, sharded)
      new_state, out = jitted(state, data, batch, body_model)
      if step + 1 < config.steps:
        feeder.prefetch(step + 1)  # read while this step runs
      # Every step reads only what the finiteness check needs; the term values are read when
      # logged. Gathered from every process, so all of them stop and log alike.
      grads_finite, total = multihost.to_host((out.grads_finite, out.total))
      finite = bool(np.all(grads_finite)) and bool(np.all(np.isfinite(total)))
      if not finite:
        message, terms = _nonfinite_message(step, multihost.to_host(out), batched)
        if last_ckpt is not None:
          message += f"; last good checkpoint kept: {last_ckpt}"
        raise FitDivergedError(message, step=step, terms=terms, state=state,
                               checkpoint=last_ckpt)
      state = new_state
      done = step + 1
      if (done % config.log_every == 0) or done == config.steps:
        elapsed = time_offset + time.perf_counter() - t0
        out = multihost.to_host(out)
        _record(history, done, elapsed, out, batched)
        bar.set_postfix({n: f"{np.mean(np.asarray(v)):.4g}" for n, v in out.values.items()},
                        refresh=False)
      bar.update(1)
      refresh = config.camel_refresh_every > 0 and done % config.camel_refresh_every == 0
      if (config.densify_every > 0 and config.densify_from <= done <= config.densify_until
          and done % config.densify_every == 0 and done < config.steps):
        state, info = _density_pass(state, done, config, batched)
        history.setdefault("density", []).append({"step": done,
                                                  **_to_py(multihost.to_host(info))})
        refresh = True  # moved and new Gaussians need their reference vertices
      if config.fill_unseen_at and done == config.fill_unseen_at:
        # Every process colours every subject (the same result); then the shards are put back.
        state, info = _fill_unseen_pass(multihost.addressable(state),
                                        multihost.addressable(data), body_model, config,
                                        batched)
        history["unseen"] = {"step": done, **info}
        if mesh is not None:
          state = multihost.put(state, sharded)
      if refresh and done < config.steps:
        state = _refresh_camel_nearest(state, body_model, config, batched)
        if mesh is not None:
          state = jax.device_put(state, sharded)
      if config.eval_every > 0 and done % config.eval_every == 0 and done < config.steps:
        run_callbacks(state, done)
      if (checkpoints is not None and config.checkpoint_every > 0
          and done % config.checkpoint_every == 0):
        last_ckpt = checkpoints.save(done, state, history, config)
  finally:
    feeder.close()
    bar.close()
  run_callbacks(state, config.steps)
  if checkpoints is not None:
    checkpoints.save(config.steps, state, history, config)
  return state, history


def _to_py(x):
  """JSON-friendly copy of numbers / arrays / dicts / lists."""
  if isinstance(x, dict):
    return {str(k): _to_py(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_py(v) for v in x]
  if isinstance(x, (jax.Array, np.ndarray, np.generic)):
    arr = np.asarray(x)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  return x


def pose_error_callback(body_model: body_lib.BodyModel, gt: SMPLParams,
                        subject: int | None = None) -> Callback:
  """An evaluation callback recording MPJPE, PA-MPJPE and root error (mm) against ``gt``."""
  def callback(progress: FitProgress):
    poses = progress.params.poses
    if subject is not None:
      poses = jax.tree_util.tree_map(lambda x: x[subject], poses)
    m = metrics.pose_metrics(body_model, poses, gt)
    return {"mpjpe": m["mpjpe"], "pa_mpjpe": m["pa_mpjpe"], "root_error": m["root_error"]}

  return callback


def _prepare(sequence, config: FitConfig, losses, body_model):
  if body_model is None:
    body_model = body_lib.load_body_model(config.body_model)
  source = FrameSource(sequence, config)
  return (source, prepare_data(sequence, config, body_model, source=source),
          resolve_losses(config, losses), body_model)


def _initial_or_restored(make_state: Callable[[], FitState], config: FitConfig,
                         checkpoints) -> tuple[FitState, dict | None]:
  state = make_state()
  restored = checkpoints.restore(state, config) if checkpoints is not None else None
  return restored if restored is not None else (state, None)


def _run_rounds(make_state: Callable[[], FitState], data: FitData,
                sources: Sequence[FrameSource], body_model: body_lib.BodyModel,
                config: FitConfig, losses: dict, *, batched: bool, mesh=None,
                checkpoint_dir: str | None, make_checkpoints: Callable[[str], Any],
                callbacks: Sequence[Callback]) -> tuple[FitState, dict]:
  """Runs ``config.rounds`` fits of the same frames; each after the first starts from
  ``make_state()`` (a fresh avatar and optimiser, the same key) with the previous round's
  poses, which also replace the HMR estimates in ``data.init`` (the pose prior's anchor).

  Round 1 checkpoints into ``checkpoint_dir``, round r > 1 into ``checkpoint_dir/round-<r>``;
  a resumed fit restores finished rounds from their last checkpoint without re-running them.

  Returns:
    The last round's state and history; earlier rounds' histories under
    ``history["earlier_rounds"]``.
  """
  earlier, poses = [], None
  # With every pose group frozen a further round would repeat the first one exactly.
  rounds = config.rounds if config.refines_poses else 1
  for r in range(rounds):
    directory = checkpoint_dir
    if checkpoint_dir is not None and r > 0:
      directory = os.path.join(checkpoint_dir, f"round-{r + 1}")

    def start(poses=poses) -> FitState:
      state = make_state()
      return state if poses is None else state.replace(
          params=state.params.replace(poses=poses))

    checkpoints = None if directory is None else make_checkpoints(directory)
    state, history = _initial_or_restored(start, config, checkpoints)
    desc = "fit" if rounds == 1 else f"fit, round {r + 1}/{rounds}"
    state, history = _run(state, data, sources, body_model, config, losses, batched=batched,
                          mesh=mesh, checkpoints=checkpoints, callbacks=callbacks,
                          history=history, desc=desc)
    if r + 1 < rounds:
      earlier.append(history)
      poses = multihost.addressable(state.params.poses)  # every process's rows, on the host
      data = data.replace(init=poses)
  if earlier:
    history = {**history, "earlier_rounds": earlier}
  return state, history


def fit(sequence, config: FitConfig = FitConfig(), *, key: jax.Array,
        checkpoint_dir: str | None = None, losses: losses_lib.Losses | None = None,
        callbacks: Sequence[Callback] = (), body_model: body_lib.BodyModel | None = None
        ) -> FitResult:
  """Learns the avatar of one sequence and refines its per-frame poses.

  Args:
    sequence: an ``hsjax.data.Sequence`` (images, masks, optional depth, cameras, HMR
      estimates; ``gt`` when known is used only for evaluation records).
    config: the :class:`FitConfig`.
    key: a ``jax.random.key``; the whole fit is a deterministic function of it.
    checkpoint_dir: when given, checkpoints are written there every
      ``config.checkpoint_every`` steps and at the end, and a fit finding a checkpoint there
      resumes from the newest one (same config and key required) and ends exactly where an
      uninterrupted fit would.
    losses: mapping ``name -> (weight, term)`` (default ``hsjax.losses.DEFAULT_LOSSES``);
      ``config.loss_weights`` overrides weights by name.
    callbacks: called with a :class:`FitProgress` every ``config.eval_every`` steps and at
      the end; a returned dict is recorded in ``history["eval"]``. When ``sequence.gt`` is
      set, pose errors against it are recorded too.
    body_model: the body model (default ``load_body_model(config.body_model)``).

  Returns:
    :class:`FitResult` with the full trained avatar, the refined poses and the history.

  Raises:
    FitDivergedError: when a loss term or gradient becomes non-finite; the message names the
      term(s) and the step, and no checkpoint is written for the bad state.
  """
  source, data, losses, body_model = _prepare(sequence, config, losses, body_model)
  callbacks = list(callbacks)
  if getattr(sequence, "gt", None) is not None:
    callbacks.insert(0, pose_error_callback(body_model, sequence.gt))
  state, history = _run_rounds(
      lambda: init_state(data, config, body_model, key), data, [source], body_model, config,
      losses, batched=False, checkpoint_dir=checkpoint_dir,
      make_checkpoints=lambda d: ckpt_lib.FitCheckpoints(d, config.keep_checkpoints),
      callbacks=callbacks)
  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  return FitResult(avatar=avatar, poses=state.params.poses, history=history, config=config,
                   state=state)


def fit_many(sequences: Sequence[Any], config: FitConfig = FitConfig(), *,
             keys: Sequence[jax.Array] | jax.Array, mesh: jax.sharding.Mesh | None = None,
             checkpoint_dir: str | None = None, losses: losses_lib.Losses | None = None,
             callbacks: Sequence[Callback] = (),
             body_model: body_lib.BodyModel | None = None) -> FitResult:
  """Fits S subjects at once: the step of :func:`fit` under ``jax.vmap`` over subjects.

  All subjects share the config (so the avatar capacity N and the minibatch size) and must
  have the same image size; sequences of different lengths are padded to the longest (the
  padding frames are never sampled, and temporal terms skip them). With the same keys, the
  result equals S separate :func:`fit` calls to float tolerance.

  Sharding: with ``mesh`` (a ``jax.sharding.Mesh`` with an axis named ``"subject"`` whose
  size divides S), every per-subject array is sharded over that axis and the body model is
  replicated; each device runs its subjects' steps, with no communication. On one host,
  ``jax.make_mesh((jax.device_count(),), ("subject",))``.

  Multi-host (several processes, e.g. one per node; :mod:`hsjax.fit.multihost`): call
  :func:`hsjax.fit.multihost.initialize` in every process before any other JAX work, build
  the mesh over ``jax.devices()`` (all processes' devices) and run the *same* ``fit_many``
  call in every process with the full list of sequences. Each process puts only its own
  subjects' rows on its devices; the values the loop reads between steps (losses, the
  finiteness check) are gathered, so every process keeps the same history; callbacks see
  gathered parameters. The returned arrays span processes: read a subject's rows with
  :func:`hsjax.fit.multihost.local_subjects` in the process that holds it.

  Checkpoints: ``checkpoint_dir/subject-<s>/``, one directory per subject holding its rows of
  the state, written by the process that holds the subject; a resumed fit continues from the
  newest step every subject has.

  Args:
    sequences: S ``hsjax.data.Sequence`` objects.
    config: shared :class:`FitConfig`.
    keys: S PRNG keys (a list, or a key array of shape [S]).
    mesh: optional device mesh with a ``"subject"`` axis.
    checkpoint_dir, losses, callbacks, body_model: as in :func:`fit` (callbacks see
      parameters with a leading S axis).

  Returns:
    :class:`FitResult` whose ``avatar`` and ``poses`` have a leading S axis (poses padded to
    the longest sequence; ``history["num_frames"]`` gives each subject's length).
  """
  sequences = list(sequences)
  if not sequences:
    raise ValueError("fit_many: no sequences given")
  keys = [keys[i] for i in range(len(sequences))]
  if len(keys) != len(sequences):
    raise ValueError(f"fit_many: {len(sequences)} sequences but {len(keys)} keys")
  if mesh is not None:
    if "subject" not in mesh.axis_names:
      raise ValueError(f"fit_many: mesh must have an axis named 'subject', found "
                       f"{mesh.axis_names}")
    if len(sequences) % mesh.shape["subject"]:
      raise ValueError(f"fit_many: {len(sequences)} subjects do not divide over "
                       f"{mesh.shape['subject']} devices of the 'subject' axis")
    # The step is written for automatic (GSPMD) partitioning; a mesh made with explicit
    # axes (jax.make_mesh's default) is re-declared over the same devices as Auto.
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names,
                             axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names))
  elif jax.process_count() > 1:
    raise ValueError(f"fit_many: this run has {jax.process_count()} processes; pass a mesh "
                     "over all their devices (jax.make_mesh((jax.device_count(),), "
                     "('subject',))), or every process would fit and write every subject")
  if body_model is None:
    body_model = body_lib.load_body_model(config.body_model)
  losses = resolve_losses(config, losses)
  local = (set(range(len(sequences))) if mesh is None else
           multihost.local_rows(_shardings(mesh)[0], len(sequences)))
  # Subjects fitted together share one crop size (a step stacks their frames).
  crops = [None] * len(sequences)
  if config.person_crop:
    crops, _ = crop_lib.person_crops([s.masks for s in sequences],
                                     margin=config.person_crop_margin,
                                     factor_of=config.crop_factor, progress=config.progress)
  # Frames of subjects another process fits are read once (for validation) but not cached.
  sources = [FrameSource(s, config if i in local else dataclasses.replace(config,
                                                                          frame_cache_gb=0.0),
                         crop=crop)
             for i, (s, crop) in enumerate(zip(sequences, crops))]
  datas = [prepare_data(s, config, body_model, source=src)
           for s, src in zip(sequences, sources)]
  sizes = {(d.width, d.height) for d in datas}
  if len(sizes) != 1:
    raise ValueError(f"fit_many: all sequences must share one image size, found {sorted(sizes)}")
  lengths = [d.num_frames for d in datas]
  datas = [pad_frames(d, max(lengths)) for d in datas]
  data = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *datas)

  def make_state():
    states = [init_state(d, config, body_model, k) for d, k in zip(datas, keys)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)

  state, history = _run_rounds(
      make_state, data, sources, body_model, config, losses, batched=True, mesh=mesh,
      checkpoint_dir=checkpoint_dir,
      make_checkpoints=lambda d: ckpt_lib.SubjectCheckpoints(d, config.keep_checkpoints,
                                                             len(sequences), mesh),
      callbacks=list(callbacks))
  history["num_frames"] = lengths
  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  return FitResult(avatar=avatar, poses=state.params.poses, history=history, config=config,
                   state=state)
