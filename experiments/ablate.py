r"""The paper-style comparison on one sequence, as one Markdown table.

  python experiments/ablate.py --sequence=default --output_dir=runs/ablate

Rows (``--variants``, all by default):

* ``hmr``: the HMR initialisation (pose metrics only; no avatar);
* ``fixed``: an avatar fitted with the poses frozen at HMR (GART-style baseline; its image
  metrics are rendered with the HMR poses);
* ``photometric``: joint refinement with the photometric terms only (mask and depth off);
* ``photometric_mask``: + the mask term;
* ``photometric_depth``: + the depth terms (mask off);
* ``joint``: joint refinement with every default term (HumanSplatHMR).

Every variant starts from the loss weights of ``--losses`` and the fit flags, then switches
terms off (weight 0): photometric = ``rgb`` + ``dssim``, mask = ``mask``, depth = ``depth`` +
``depth_ssi``; the priors and avatar regularisers stay on in every row. Writes
``ablation.md`` (printed), ``ablation.json`` and, per variant, ``<variant>/metrics.json``
(with ``--write_runs``, each variant's full run directory).

Measured (2026-11-25, default FitConfig of 900 steps) on the 2-core development machine: 891 s
wall for all six rows. Numbers (mm; novel-view PSNR dB / SSIM in the person's bounding box)::

  HMR initialisation           MPJPE 77.1  PA 53.4  V2V 246.7  root 219.9
  avatar, poses fixed at HMR   MPJPE 77.1  PA 53.4  V2V 246.7  root 219.9  17.62 / 0.514
  joint, photometric only      MPJPE 44.0  PA 31.6  V2V 204.3  root 193.1  17.41 / 0.483
  joint, photometric + mask    MPJPE 48.2  PA 32.5  V2V 213.1  root 196.7  17.27 / 0.476
  joint, photometric + depth   MPJPE 36.6  PA 26.6  V2V  46.9  root  54.4  22.39 / 0.705
  joint, all losses            MPJPE 40.2  PA 29.6  V2V  55.3  root  60.3  22.24 / 0.691

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
_SEQ = common.define_sequence_flags()
_FIT = common.define_fit_flags()
_OUT = common.define_output_flags("runs/ablate")
_BODY_MODEL = common.define_body_model_flag()

# name -> (label, pose groups refined?, loss-weight overrides)
_PHOTO_OFF = {"mask": 0.0, "depth": 0.0, "depth_ssi": 0.0}
VARIANTS = {
    "hmr": ("HMR initialisation", None, {}),
    "fixed": ("avatar, poses fixed at HMR", False, {}),
    "photometric": ("joint, photometric only", True, _PHOTO_OFF),
    "photometric_mask": ("joint, photometric + mask", True, {"depth": 0.0, "depth_ssi": 0.0}),
    "photometric_depth": ("joint, photometric + depth", True, {"mask": 0.0}),
    "joint": ("joint, all losses (HumanSplatHMR)", True, {}),
}
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS),
                              f"Rows of the table, any of {', '.join(VARIANTS)}.")
_WRITE_RUNS = flags.DEFINE_bool("write_runs", False, "Write each variant's full run directory "
                                "(panels, videos, avatar) instead of its metrics only.")
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def variant_config(base, name: str):
  """The FitConfig of a variant: ``base`` with its pose groups and loss overrides."""
  import dataclasses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  _, refine, overrides = VARIANTS[name]
  weights = dict(base.loss_weights)
  weights.update(overrides)
  config = dataclasses.replace(base, loss_weights=tuple(sorted(weights.items())))
  return config.avatar_only() if refine is False else config


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fitting as fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import outputs  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  unknown = [v for v in _VARIANTS.value if v not in VARIANTS]
  if unknown:
    raise common.InputError(f"--variants: unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
  base = common.fit_config(_FIT, body_model=_BODY_MODEL.value)
  body_model = common.load_body_model(_BODY_MODEL.value)
  sequence = common.load_sequence(_SEQ, body_model=body_model)
  if sequence.gt is None and "hmr" in _VARIANTS.value:
    raise common.InputError(f"--variants=hmr needs ground-truth poses; sequence "
                            f"'{sequence.name}' has none")
  out_dir = _OUT.output_dir.value
  configs = {v: variant_config(base, v) for v in _VARIANTS.value if v != "hmr"}
  common.write_config(out_dir, "ablate", sequence=common.sequence_spec(_SEQ),
                      fit_configs={k: json.loads(c.to_json()) for k, c in configs.items()})
  rows, results = [], {}
  for name in _VARIANTS.value:
    label = VARIANTS[name][0]
    print(f"== {name}: {label}")
    if name == "hmr":
      result = {"pose": evaluation.evaluate_poses(body_model, sequence.hmr, sequence.hmr,
                                                  sequence.gt)}
    else:
      config = configs[name]
      t0 = time.perf_counter()
      fitted = fit.fit(sequence, config, key=jax.random.key(_FIT.fit_seed.value),
                       body_model=body_model)
      seconds = time.perf_counter() - t0
      result = evaluation.evaluate_run(
          body_model, sequence, fitted.avatar, fitted.poses, background=config.background,
          frame_stride=_OUT.eval_stride.value, bbox_margin=_OUT.bbox_margin.value,
          backend=config.backend, tile_capacity=config.tile_capacity,
          use_lpips=_OUT.lpips.value, progress=config.progress)
      summary = common.fit_summary(fitted, seconds)
      run_dir = os.path.join(out_dir, name)
      if _WRITE_RUNS.value:
        outputs.write_run(run_dir, body_model=body_model, sequence=sequence,
                          avatar=fitted.avatar, poses=fitted.poses, evaluation_result=result,
                          history=fitted.history, fit_summary=summary,
                          background=config.background, backend=config.backend,
                          tile_capacity=config.tile_capacity, num_panels=_OUT.num_panels.value,
                          orbit_frames=_OUT.orbit_frames.value, videos=_OUT.videos.value,
                          progress=config.progress, title=label)
      else:
        os.makedirs(run_dir, exist_ok=True)
        outputs.write_json(os.path.join(run_dir, "metrics.json"), dict(result, fit=summary))
      result["fit"] = summary
    results[name] = result
    rows.append((label, result))
    table = outputs.ablation_table(rows)
    with open(os.path.join(out_dir, "ablation.md"), "w") as f:  # rewritten after every row
      f.write(_markdown(sequence, table, results))
  outputs.write_json(os.path.join(out_dir, "ablation.json"),
                     {k: _compact(v) for k, v in results.items()})
  with open(os.path.join(out_dir, "ablation.md")) as f:
    print(f.read())


def _compact(tree):
  """``tree`` without its per-frame lists (the per-variant metrics.json keep them)."""
  if isinstance(tree, dict):
    return {k: _compact(v) for k, v in tree.items() if k != "per_frame"}
  if isinstance(tree, list):
    return [_compact(v) for v in tree]
  return tree


def _markdown(sequence, table: str, results: dict) -> str:
  times = ", ".join(f"{k} {v['fit']['time_s']:.0f} s" for k, v in results.items() if "fit" in v)
  lpips_note = ""
  for v in results.values():
    lp = v.get("lpips")
    if lp and not lp["available"]:
      lpips_note = f"\n\nLPIPS: n/a ({lp['reason']})."
      break
  return (f"# Ablation on `{sequence.name}` ({len(sequence)} frames)\n\n{table}\n\n"
          "Pose errors in mm (MPJPE and PA-MPJPE pelvis- / Procrustes-aligned, V2V and root "
          "unaligned, world frame). PSNR (dB) / SSIM inside the person's bounding box; novel "
          "view = held-out cameras with each row's poses; novel pose = unseen motion with "
          f"ground-truth poses and the fitted shape.{lpips_note}\n\nFit times: {times}.\n")


if __name__ == "__main__":
  common.run(main)
