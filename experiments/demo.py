r"""The main demo: fit the default synthetic sequence and write every output.

  python experiments/demo.py

1. generates the default synthetic sequence (60 frames of real dance capture on the embedded
   CC0 body, 256 x 256, one training camera, 4 held-out cameras, 8 novel-pose frames,
   simulated HMR 2.0-like estimates) or loads it from the cache
   (``$HSJAX_CACHE/sequences`` or ``~/.cache/hsjax/sequences``);
2. learns the Gaussian avatar and refines the poses jointly (``hsjax.fit`` with the
   default ``FitConfig``), with a progress bar;
3. evaluates (``hsjax.evaluation.evaluate_run``: pose error vs ground truth, novel views,
   novel poses, the training view) and writes ``outputs/demo/``: ``metrics.json``,
   ``table.md``, ``smpl_refined.npz``, ``avatar.ply``, ``panels/*.png``,
   ``train_view.mp4``, ``orbit.mp4``, ``pose_error.png``, ``flags.txt``, ``config.json``,
   and ``viewer/``, the avatar moving in a browser (``experiments/view.py --serve`` shows it).

``python experiments/demo.py --preset=quality --output_dir=outputs/demo_quality`` fits at
full resolution for 600 steps with the shape refined (about 2 minutes of fitting; numbers
in README.md, "Presets: fast and quality").

Every flag of ``experiments/fit.py`` works here too (``--helpfull``); this script only
changes the output folder and prints a summary. Re-running resumes from the checkpoints in
``outputs/demo/checkpoints`` (pass ``--overwrite`` to start over; a changed configuration is refused without it).

Measured (2026-12-05, default FitConfig: 200 steps, 2000 Gaussians, 4 frames per step,
tile capacity 128, the anchor tether, the unseen sides coloured at step 150) on a 2-core
machine: 55 s wall (sequence from the cache 0 s, fit 37 s, evaluation 12 s, outputs 4 s).
Generating the sequence on the first run adds 15-45 s. It printed (mm; PSNR / SSIM in the person's bounding box)::

  HMR init    MPJPE 77.1, PA-MPJPE 53.4, root 219.8, V2V 247.1
  refined     MPJPE 24.6, PA-MPJPE 18.7, root  15.1, V2V  30.2   (-68 %, -65 %, -93 %, -88 %)
  novel view 24.62 dB / 0.754, novel pose 27.26 dB / 0.849, training view 27.70 dB / 0.843

(LPIPS is reported only where the ``lpips`` package and its weights are installed.)
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_SEQ, _FIT, _OUT, _BODY_MODEL = common.define_run_flags("outputs/demo")
_CHECKPOINTS = common.define_checkpoints_flag()
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def _line(label: str, section: dict, keys: tuple[str, ...]) -> str:
  parts = [f"{k} {section[k]:.1f}" for k in keys if section.get(k) is not None]
  return f"  {label:<25}" + ", ".join(parts)


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  t0 = time.perf_counter()
  config = common.fit_config(_FIT, body_model=_BODY_MODEL.value)
  body_model = common.load_body_model(_BODY_MODEL.value)
  print("[1/3] sequence (generated once, then cached) ...", flush=True)
  sequence = common.load_sequence(_SEQ, body_model=body_model)
  t_data = time.perf_counter() - t0
  print(f"      '{sequence.name}': {len(sequence)} frames, {sequence.image_size} px, "
        f"{len(sequence.eval_views)} held-out views ({t_data:.1f} s)", flush=True)
  run_dir = _OUT.output_dir.value
  common.open_run_dir(run_dir, "demo", overwrite=_OUT.overwrite.value,
                      sequence=common.sequence_spec(_SEQ), fit_config=config,
                      fit_seed=_FIT.fit_seed.value)
  print("[2/3] fit, [3/3] evaluate and write outputs ...", flush=True)
  out = common.fit_evaluate_write(run_dir, sequence, config, body_model,
                                  seed=_FIT.fit_seed.value, out=_OUT,
                                  checkpoints=_CHECKPOINTS.value, title="hsjax demo")
  common.write_viewer(run_dir, sequence, body_model)
  total = time.perf_counter() - t0
  result = out["evaluation"]
  print("\nsummary")
  if "pose" in result:
    pose = result["pose"]
    keys = ("mpjpe", "pa_mpjpe", "root_error", "v2v")
    print(_line("HMR init (mm)", pose["hmr"], keys))
    print(_line("refined (mm)", pose["refined"], keys))
    print(_line("improvement (%)", pose["improvement_pct"], keys))
  for key, label in (("novel_view", "novel view"), ("novel_pose", "novel pose"),
                     ("train_view", "training view")):
    if key in result:
      s = result[key]
      print(f"  {label + ' PSNR/SSIM':<25}{s['psnr']:.2f} dB / {s['ssim']:.4f}")
  times = out["times"]
  print(f"  wall time                 {total:.0f} s (data {t_data:.0f}, fit {times['fit_s']:.0f}, "
        f"evaluation {times['evaluate_s']:.0f}, outputs {times['outputs_s']:.0f})")
  print(f"  outputs                   {os.path.abspath(run_dir)} (table.md, panels/, *.mp4)")
  print(f"  viewer                    python experiments/view.py --run_dir={run_dir} --serve")


if __name__ == "__main__":
  common.run(main)
