r"""Fits one sequence: learns its Gaussian avatar, refines its HMR poses, evaluates, writes a run.

  python experiments/fit.py --sequence=default --output_dir=runs/default

``--sequence`` is a synthetic sequence name (``default``, ``walk_path``, ``squats``, ...), a
directory in the hsjax layout (``hsjax/data/io.py``), or an importer's input with
``--format`` (``4dhumans``, ``neuman``, ``peoplesnapshot``, ``zju``). The run directory gets
``flags.txt`` (replay with ``--flagfile=runs/default/flags.txt``), ``config.json``,
``metrics.json``, ``table.md``, ``smpl_refined.npz`` / ``smpl_hmr.npz`` (smplx naming),
``avatar.npz`` / ``avatar.ply``, ``panels/*.png``, ``train_view.mp4``, ``orbit.mp4`` and
``pose_error.png`` (see ``hsjax/report/run_dir.py``). Checkpoints go to ``<output_dir>/checkpoints``;
running the same command again resumes from the newest one. A run directory made with another
configuration is refused untouched unless ``--overwrite`` is given (which replaces it).

Examples::

  # the avatar-only baseline (poses fixed at HMR), photometric + mask losses only
  python experiments/fit.py --refine= --losses=depth:0 --output_dir=runs/fixed
  # a tiny smoke run (about a minute of compilation, seconds of fitting)
  python experiments/fit.py --num_frames=6 --image_size=64 --num_eval_views=1 \
      --num_novel_pose=2 --steps=10 --warmup_steps=4 --num_gaussians=400 --batch_frames=2 \
      --densify_every=0 --orbit_frames=8 --output_dir=/tmp/smoke

Runtime and numbers on the default sequence (2 CPU cores): those of ``experiments/demo.py``,
which runs this pipeline with the same defaults (see its docstring and README.md).
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_SEQ, _FIT, _OUT, _BODY_MODEL = common.define_run_flags("runs/fit")
_CHECKPOINTS = common.define_checkpoints_flag()
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  config = common.fit_config(_FIT, body_model=_BODY_MODEL.value)  # cheap checks first
  body_model = common.load_body_model(_BODY_MODEL.value)
  sequence = common.load_sequence(_SEQ, body_model=body_model)
  run_dir = _OUT.output_dir.value
  decision = common.open_run_dir(run_dir, "fit", overwrite=_OUT.overwrite.value,
                                 sequence=common.sequence_spec(_SEQ), fit_config=config,
                                 fit_seed=_FIT.fit_seed.value)
  if decision != "new":
    print(f"{run_dir}: {'resuming' if decision == 'resume' else 'replacing'} the run there")
  print(f"sequence '{sequence.name}': {len(sequence)} frames, {sequence.image_size} px, "
        f"{len(sequence.eval_views)} held-out views")
  out = common.fit_evaluate_write(run_dir, sequence, config, body_model, seed=_FIT.fit_seed.value,
                                  out=_OUT, checkpoints=_CHECKPOINTS.value,
                                  title=f"fit of {sequence.name}")
  with open(out["files"]["table.md"]) as f:
    print(f.read())


if __name__ == "__main__":
  common.run(main)
