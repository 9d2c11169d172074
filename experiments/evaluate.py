r"""Evaluates a finished run directory (of fit.py or demo.py) again.

  python experiments/evaluate.py --run_dir=outputs/demo

Reloads the sequence named in ``<run_dir>/config.json``, the avatar (``avatar.npz``) and the
poses (``smpl_refined.npz``, or ``smpl_hmr.npz`` with ``--poses=hmr``), and writes into
``--output_dir`` (default ``<run_dir>/evaluate``): ``metrics.json``, ``table.md``,
``flags.txt`` and ``config.json``. The protocol (which numbers the tables use, how novel
views and novel poses are rendered) is in ``hsjax/evaluation.py``. With ``--outputs`` the
panels, videos and plot are rendered again into the output directory too.

``--poses=hmr`` scores the fitted avatar posed with the HMR estimates instead of the refined
poses: on a joint fit it shows how much of the image quality is due to the refined poses.

Runtime on the default sequence (2 CPU cores): about 35 s (4 held-out views x 60 frames,
8 novel-pose frames, the training view), most of it compiling the renderer.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory written by fit.py, demo.py or "
                               "video.py.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "Where to write (default <run_dir>/evaluate).")
_OVERWRITE = common.define_overwrite_flag()
_POSES = flags.DEFINE_enum("poses", "refined", ["refined", "hmr"],
                           "Which poses the avatar is rendered with.")
_EVAL_STRIDE = flags.DEFINE_integer("eval_stride", 1, "Image metrics on every k-th frame.")
_BBOX_MARGIN = flags.DEFINE_integer("bbox_margin", 8, "Pixels around the person's bounding box "
                                    "for the table's PSNR / SSIM.")
_LPIPS = flags.DEFINE_bool("lpips", True, "Compute LPIPS when its weights are present.")
_OUTPUTS = flags.DEFINE_bool("outputs", False, "Also render panels, videos and the plot.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.mark_flag_as_required("run_dir")
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import report  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  run_dir = _RUN_DIR.value
  config, body_model, sequence, avatar, poses = common.load_run(run_dir)
  if _POSES.value == "hmr":
    poses = sequence.hmr
  out_dir = _OUTPUT_DIR.value or os.path.join(run_dir, "evaluate")
  fit_config = config.get("fit_config", {})
  background = tuple(fit_config.get("background", (0.0, 0.0, 0.0)))
  backend = fit_config.get("backend", "auto")
  tile_capacity = int(fit_config.get("tile_capacity", 128))
  common.open_run_dir(out_dir, "evaluate", overwrite=_OVERWRITE.value, run_config=config,
                      poses=_POSES.value)
  result = evaluation.evaluate_run(body_model, sequence, avatar, poses, background=background,
                                   frame_stride=_EVAL_STRIDE.value,
                                   bbox_margin=_BBOX_MARGIN.value, backend=backend,
                                   tile_capacity=tile_capacity, use_lpips=_LPIPS.value,
                                   progress=_PROGRESS.value)
  result["poses"] = _POSES.value
  title = f"evaluation of {run_dir} ({_POSES.value} poses)"
  if _OUTPUTS.value:
    report.write_run(out_dir, body_model=body_model, sequence=sequence, avatar=avatar,
                      poses=poses, evaluation_result=result, background=background,
                      backend=backend, tile_capacity=tile_capacity, progress=_PROGRESS.value,
                      title=title)
  else:
    os.makedirs(out_dir, exist_ok=True)
    report.write_json(os.path.join(out_dir, "metrics.json"), result)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
      f.write(report.results_markdown(result, title))
  with open(os.path.join(out_dir, "table.md")) as f:
    print(f.read())


if __name__ == "__main__":
  common.run(main)
