r"""Fits several subjects at once: one vmapped (and optionally sharded) optimisation.

  python experiments/fit_many.py --sequences=default:0,default:1 --output_dir=runs/many

``--sequences`` lists subjects as ``name:seed`` (synthetic; the other sequence flags apply
to each), ``name`` (seed 0) or paths of sequences. All subjects share the fit configuration
and must have the same image size; shorter sequences are padded and their padding frames are
never sampled (``hsjax.fit_many``). With ``--shard``, subjects are sharded over the
``"subject"`` axis of a mesh of all devices (their number must divide the number of
subjects); on a CPU, expose several host devices first:

  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python experiments/fit_many.py --sequences=default:0,default:1 --shard

Each subject gets ``<output_dir>/<index>_<name>/`` with its metrics (its full run directory
with ``--write_runs``), and ``summary.md`` compares them. Checkpoints go to
``<output_dir>/checkpoints/subject-<index>/``; the same command resumes a killed run.

Several hosts (``--distributed``): every process runs the same command; subjects are sharded
over all processes' devices, each process writes the checkpoints and run directories of the
subjects it holds, and process 0 writes ``summary.md`` (complete on a shared file system).
Two processes on one machine (CPU devices):

  python experiments/fit_many.py --sequences=default:0,default:1 --distributed \
      --coordinator_address=localhost:12345 --num_processes=2 --process_id=0 &
  python experiments/fit_many.py --sequences=default:0,default:1 --distributed \
      --coordinator_address=localhost:12345 --num_processes=2 --process_id=1

Under SLURM (``srun``) or on a Cloud TPU slice, ``--distributed`` alone: JAX reads the
run's size and each process's rank from the environment.

Runtime on 2 CPU cores: roughly S times one fit's step time (vmapped steps do S times the
work) plus one compilation; two default subjects take about twice the demo's fit time.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_SEQ, _FIT, _OUT, _BODY_MODEL = common.define_run_flags("runs/fit_many")
_SEQUENCES = flags.DEFINE_list("sequences", ["default:0", "default:1"],
                               "Subjects: synthetic 'name:seed' / 'name', or sequence paths.")
_SHARD = flags.DEFINE_bool("shard", False, "Shard subjects over all devices (a 'subject' mesh).")
_WRITE_RUNS = flags.DEFINE_bool("write_runs", False, "Write each subject's full run directory "
                                "(panels, videos, avatar) instead of its metrics only.")
_CHECKPOINTS = common.define_checkpoints_flag()
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run on JAX's distributed runtime: every "
    "process runs this same command (implies --shard). The run's size and this process's "
    "rank come from the three flags below, or from SLURM, a Cloud TPU slice or Open MPI.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "--distributed: host:port "
                                   "of process 0 (default: $JAX_COORDINATOR_ADDRESS, or "
                                   "detected).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "--distributed: processes in "
                                      "the run (default: detected).", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "--distributed: this process's rank, "
                                   "0 ... num_processes - 1 (default: detected).",
                                   lower_bound=0)
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def subject_specs(items: list[str], base: dict) -> list[dict]:
  """Sequence specs (as :func:`common.sequence_spec`) of the ``--sequences`` items."""
  specs = []
  for item in items:
    spec = dict(base)
    name, sep, seed = item.rpartition(":")
    if sep and seed.lstrip("-").isdigit() and not os.path.exists(item):
      spec.update(sequence=name, seed=int(seed))
    else:
      spec.update(sequence=item)
    specs.append(spec)
  if not specs:
    raise common.InputError("--sequences: no subjects given")
  return specs


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  from hsjax.fit import multihost  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if _DISTRIBUTED.value:  # before any other JAX work
    multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import report  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  config = common.fit_config(_FIT, body_model=_BODY_MODEL.value)
  body_model = common.load_body_model(_BODY_MODEL.value)
  specs = subject_specs(_SEQUENCES.value, common.sequence_spec(_SEQ))
  sequences = [common.load_sequence(s, body_model=body_model) for s in specs]
  mesh = None
  if _SHARD.value or _DISTRIBUTED.value:
    devices = jax.device_count()
    if len(sequences) % devices:
      raise common.InputError(f"--shard: {len(sequences)} subjects do not divide over "
                              f"{devices} devices")
    # Auto axes: the step mixes sharded per-subject arrays with the replicated body model.
    mesh = jax.make_mesh((devices,), ("subject",), axis_types=(jax.sharding.AxisType.Auto,))
  out_dir = _OUT.output_dir.value
  lead = jax.process_index() == 0
  if lead:
    common.open_run_dir(out_dir, "fit_many", overwrite=_OUT.overwrite.value, sequences=specs,
                        fit_config=config, fit_seed=_FIT.fit_seed.value)
  keys = [jax.random.fold_in(jax.random.key(_FIT.fit_seed.value), i)
          for i in range(len(sequences))]
  t0 = time.perf_counter()
  try:
    result = fit.fit_many(sequences, config, keys=keys, mesh=mesh, body_model=body_model,
                          checkpoint_dir=(os.path.join(out_dir, "checkpoints")
                                          if _CHECKPOINTS.value else None))
  except ValueError as e:
    raise common.InputError(str(e)) from e
  seconds = time.perf_counter() - t0
  print(f"fit_many: {len(sequences)} subjects, {config.steps} steps in {seconds:.1f} s")
  summary = {"steps": config.steps, "time_s": round(seconds, 1), "subjects": len(sequences)}
  labels = [f"{i}_{os.path.basename(os.path.normpath(spec['sequence']))}_{spec['seed']}"
            for i, spec in enumerate(specs)]
  # Each process evaluates and writes the subjects its devices hold.
  held = multihost.local_subjects((result.avatar, result.poses), len(sequences))
  for i, (avatar, refined) in held.items():
    seq, n = sequences[i], len(sequences[i])
    poses = body_lib.SMPLParams(betas=refined.betas, body_pose=refined.body_pose[:n],
                                global_orient=refined.global_orient[:n],
                                transl=refined.transl[:n])
    ev = evaluation.evaluate_run(body_model, seq, avatar, poses, background=config.background,
                                 frame_stride=_OUT.eval_stride.value,
                                 bbox_margin=_OUT.bbox_margin.value, backend=config.backend,
                                 tile_capacity=config.tile_capacity, use_lpips=_OUT.lpips.value,
                                 progress=config.progress)
    run_dir = os.path.join(out_dir, labels[i])
    if _WRITE_RUNS.value:
      report.write_run(run_dir, body_model=body_model, sequence=seq, avatar=avatar,
                        poses=poses, evaluation_result=ev, fit_summary=summary,
                        background=config.background, backend=config.backend,
                        tile_capacity=config.tile_capacity, num_panels=_OUT.num_panels.value,
                        orbit_frames=_OUT.orbit_frames.value, videos=_OUT.videos.value,
                        progress=config.progress, title=labels[i])
    else:
      os.makedirs(run_dir, exist_ok=True)
      report.write_json(os.path.join(run_dir, "metrics.json"), dict(ev, fit=summary))
      io_lib.save_smpl_npz(os.path.join(run_dir, "smpl_refined.npz"), poses, fps=seq.fps)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("fit_many: subjects written")
  if lead:
    write_summary(out_dir, labels, len(sequences), config.steps, seconds, mesh is not None)


def write_summary(out_dir: str, labels: list[str], subjects: int, steps: int, seconds: float,
                  sharded: bool) -> None:
  """``summary.md`` from the subjects' ``metrics.json`` (those another host wrote to its own
  disk are listed as such)."""
  from hsjax import report  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  rows, elsewhere = [], []
  for label in labels:
    path = os.path.join(out_dir, label, "metrics.json")
    if not os.path.exists(path):
      elsewhere.append(label)
      continue
    with open(path) as f:
      ev = json.load(f)
    if "pose" in ev:
      rows.append((f"{label} (HMR init)", {"pose": {"refined": ev["pose"]["hmr"]}}))
    rows.append((label, ev))
  table = report.ablation_table(rows)
  text = (f"# fit_many: {subjects} subjects\n\n{table}\n\n{steps} steps, "
          f"{seconds:.0f} s for all subjects{' (sharded)' if sharded else ''}.\n")
  if elsewhere:
    text += (f"\nNot on this host's disk (written by the host that fitted them): "
             f"{', '.join(elsewhere)}.\n")
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  common.run(main)
