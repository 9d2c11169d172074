r"""Ablations on one sequence, as one Markdown table.

  python experiments/ablate.py --sequence=default --output_dir=runs/ablate
  python experiments/ablate.py --grid=camel --depth=unidepth_like --output_dir=runs/camel_unidepth

``--grid`` picks the rows (``--variants`` lists them by name instead):

``paper`` — the method against its baselines and loss groups:

* ``hmr``: the HMR initialisation (pose metrics only; no avatar);
* ``fixed``: an avatar fitted with the poses frozen at HMR (GART-style baseline; its image
  metrics are rendered with the HMR poses);
* ``photometric``: joint refinement with the photometric terms only (mask and depth off);
* ``photometric_mask``: + the mask term;
* ``photometric_depth``: + the depth terms (mask off);
* ``joint``: joint refinement with every default term (HumanSplatHMR).

``camel`` — the CAMEL regularisers and the depth terms: ``joint`` (the default: three CAMEL
terms, coverage off, 2D + 3D depth), ``camel_off`` (no CAMEL term), ``camel_full`` (all four),
``camel_no_<term>`` (all four but one; ``joint`` is all four but coverage), ``depth_off``,
``depth_2d`` (the per-pixel L1 only), ``depth_3d`` (the Chamfer only). Run it once per depth
preset (``--depth=exact``, ``--depth=unidepth_like``).

``camel_sweep`` — the settings around the defaults: band δ of 2 / 5 cm (default 1 cm),
point-to-mesh weight x10, CAMEL on the posed mesh instead of the canonical one, the avatar's
centres learning at 3DGS's rate 1.6e-4 and at 4.8e-4 instead of the default 1.6e-3, each
with and without CAMEL (CAMEL matters as much as the avatar has room to drift), 3D depth
weight 0.3 / 3 (default 1).

Every variant starts from the loss weights of ``--losses`` and the fit flags, then changes
what its row says: photometric = ``rgb`` + ``dssim``, mask = ``mask``, depth = ``depth`` +
``depth_3d`` + ``depth_ssi``; the priors and other avatar regularisers stay on in every row. A
term a row switches on that is off by default gets ``ON_WEIGHTS``. Writes ``ablation.md``
(printed), ``ablation.json`` and, per variant, ``<variant>/metrics.json`` (with
``--write_runs``, each variant's full run directory). The tables in README.md come from these
commands; BENCHMARKS.md keeps their dates and times.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, NamedTuple

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_SEQ, _FIT, _OUT, _BODY_MODEL = common.define_run_flags("runs/ablate")

# A term a variant switches on although the base mapping has it at 0 gets this weight.
ON = "on"
ON_WEIGHTS = {"camel_coverage": 10.0, "depth": 0.5, "depth_3d": 1.0}
CAMEL_TERMS = ("camel_point_to_mesh", "camel_surface", "camel_flatness", "camel_coverage")
DEPTH_TERMS = ("depth", "depth_3d", "depth_ssi", "depth_relative", "depth_root",
               "depth_root_skin", "depth_3d_relative", "depth_3d_relative_skin")
_DEPTH_OFF = {t: 0.0 for t in DEPTH_TERMS}
# The absolute depth terms in place of the default split (offset -> root, shape -> pose).
_DEPTH_ABSOLUTE = {**_DEPTH_OFF, "depth": ON, "depth_3d": ON}
_CAMEL_OFF = {t: 0.0 for t in CAMEL_TERMS}
# Centre learning rates below the default 1.6e-3: 3DGS's 1.6e-4, and 3x that.
_CENTRE_LR_3DGS = {"means": 1.6e-4}
_CENTRE_LR_X3 = {"means": 4.8e-4}


class Variant(NamedTuple):
  """One row: what it changes of the base fit (``--losses`` and the fit flags)."""

  label: str
  refine: bool | None  # poses refined? None: no fit at all (the HMR row).
  weights: dict = {}  # loss name -> weight (or ON).
  terms: Callable[[], dict] | None = None  # () -> {loss name: replacement term}.
  lrs: dict = {}  # avatar group -> learning rate.


def _camel_terms(**kwargs) -> Callable[[], dict]:
  """Replacement CAMEL terms: point-to-mesh with ``kwargs`` (delta, space), surface in the
  same space; what is not given keeps the library's default."""

  def build():
    from hsjax import losses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    surface_kwargs = {k: v for k, v in kwargs.items() if k == "space"}
    return {"camel_point_to_mesh": losses.make_camel_point_to_mesh(**kwargs),
            "camel_surface": losses.make_camel_surface(**surface_kwargs)}

  return build


VARIANTS = {
    "hmr": Variant("HMR initialisation", None),
    "fixed": Variant("avatar, poses fixed at HMR", False),
    "photometric": Variant("joint, photometric only", True, {"mask": 0.0, **_DEPTH_OFF}),
    "photometric_mask": Variant("joint, photometric + mask", True, _DEPTH_OFF),
    "photometric_depth": Variant("joint, photometric + depth", True, {"mask": 0.0}),
    "joint": Variant("joint, all losses (HumanSplatHMR)", True),
    # CAMEL: none, all four, each left out of all four.
    "camel_off": Variant("CAMEL off", True, _CAMEL_OFF),
    "camel_full": Variant("CAMEL, all four terms", True, {t: ON for t in CAMEL_TERMS}),
    **{f"camel_no_{t[6:]}": Variant(f"CAMEL without {t[6:]}", True,
                                    {**{u: ON for u in CAMEL_TERMS}, t: 0.0})
       for t in CAMEL_TERMS},
    # Depth: none; the root term with the 2D (per-pixel L1) or the 3D (Chamfer) shape term;
    # the absolute terms instead of the offset/shape split.
    "depth_off": Variant("depth off", True, _DEPTH_OFF),
    "depth_2d": Variant("depth root + 2D (L1) shape only", True,
                        {"depth_3d_relative_skin": 0.0}),
    "depth_3d": Variant("depth root + 3D (Chamfer) shape only", True, {"depth_relative": 0.0}),
    "depth_absolute": Variant("depth absolute (L1 + Chamfer)", True, _DEPTH_ABSOLUTE),
    # The sweep behind the CAMEL and 3D depth defaults (centre LR 1.6e-3, δ = 1 cm, 3D depth 1).
    "camel_delta_2cm": Variant("CAMEL band δ = 2 cm", True, terms=_camel_terms(delta=0.02)),
    "camel_delta_5cm": Variant("CAMEL band δ = 5 cm", True, terms=_camel_terms(delta=0.05)),
    "camel_p2m_x10": Variant("CAMEL point-to-mesh weight x10", True,
                             {"camel_point_to_mesh": 100.0}),
    "camel_posed": Variant("CAMEL on the posed mesh", True, terms=_camel_terms(space="posed")),
    "centre_lr_3dgs": Variant("centre LR 1.6e-4 (3DGS)", True, lrs=_CENTRE_LR_3DGS),
    "centre_lr_3dgs_camel_off": Variant("centre LR 1.6e-4, CAMEL off", True, _CAMEL_OFF,
                                        lrs=_CENTRE_LR_3DGS),
    "centre_lr_x3": Variant("centre LR 4.8e-4", True, lrs=_CENTRE_LR_X3),
    "centre_lr_x3_camel_off": Variant("centre LR 4.8e-4, CAMEL off", True, _CAMEL_OFF,
                                      lrs=_CENTRE_LR_X3),
    "depth_3d_x0.3": Variant("3D depth weight 0.3", True, {"depth_3d_relative_skin": 0.3}),
    "depth_3d_x3": Variant("3D depth weight 3", True, {"depth_3d_relative_skin": 3.0}),
}
GRIDS = {
    "paper": ["hmr", "fixed", "photometric", "photometric_mask", "photometric_depth", "joint"],
    "camel": ["hmr", "joint", "camel_off", "camel_full",
              *(f"camel_no_{t[6:]}" for t in CAMEL_TERMS[:3]),
              "depth_off", "depth_2d", "depth_3d", "depth_absolute"],
    "camel_sweep": ["joint", "camel_off", "camel_delta_2cm", "camel_delta_5cm", "camel_p2m_x10",
                    "camel_posed", "centre_lr_x3", "centre_lr_x3_camel_off", "centre_lr_3dgs",
                    "centre_lr_3dgs_camel_off", "depth_3d_x0.3", "depth_3d_x3"],
}
_GRID = flags.DEFINE_enum("grid", "paper", list(GRIDS),
                          "The default rows: 'paper' (the method against its baselines and "
                          "loss groups), 'camel' (CAMEL terms and depth terms left out) or "
                          "'camel_sweep' (their settings).")
_VARIANTS = flags.DEFINE_list("variants", [], "Rows of the table (default: those of --grid), "
                              f"any of {', '.join(VARIANTS)}.")
_WRITE_RUNS = flags.DEFINE_bool("write_runs", False, "Write each variant's full run directory "
                                "(panels, videos, avatar) instead of its metrics only.")
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def variant_config(base, name: str):
  """The FitConfig of a variant: ``base`` with its pose groups, loss weights and rates.

  A weight of ``ON`` keeps the base weight of the term when it is non-zero and otherwise
  uses ``ON_WEIGHTS``.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  variant = VARIANTS[name]
  base_weights = {k: w for k, (w, _) in fit.resolve_losses(base).items()}
  weights = dict(base.loss_weights)
  for term, value in variant.weights.items():
    if value == ON:
      value = base_weights[term] if base_weights[term] != 0 else ON_WEIGHTS[term]
    weights[term] = value
  lrs = dict(base.avatar_lrs, **variant.lrs)
  config = dataclasses.replace(base, loss_weights=tuple(sorted(weights.items())),
                               avatar_lrs=tuple(lrs.items()))
  return config.avatar_only() if variant.refine is False else config


def variant_losses(name: str):
  """The loss mapping of a variant (weights come from its config): None for the default."""
  variant = VARIANTS[name]
  if variant.terms is None:
    return None
  from hsjax import losses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  mapping = dict(losses.DEFAULT_LOSSES)
  for term_name, term in variant.terms().items():
    mapping[term_name] = (mapping[term_name][0], term)
  return mapping


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import report  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  variants = _VARIANTS.value or GRIDS[_GRID.value]
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise common.InputError(f"--variants: unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
  base = common.fit_config(_FIT, body_model=_BODY_MODEL.value)
  body_model = common.load_body_model(_BODY_MODEL.value)
  sequence = common.load_sequence(_SEQ, body_model=body_model)
  if sequence.gt is None and "hmr" in variants:
    raise common.InputError(f"--variants=hmr needs ground-truth poses; sequence "
                            f"'{sequence.name}' has none")
  out_dir = _OUT.output_dir.value
  configs = {v: variant_config(base, v) for v in variants if v != "hmr"}
  common.open_run_dir(out_dir, "ablate", overwrite=_OUT.overwrite.value,
                      sequence=common.sequence_spec(_SEQ),
                      fit_configs={k: json.loads(c.to_json()) for k, c in configs.items()})
  rows, results = [], {}
  for name in variants:
    label = VARIANTS[name].label
    print(f"== {name}: {label}")
    if name == "hmr":
      result = {"pose": evaluation.evaluate_poses(body_model, sequence.hmr, sequence.hmr,
                                                  sequence.gt)}
    else:
      config = configs[name]
      t0 = time.perf_counter()
      fitted = fit.fit(sequence, config, key=jax.random.key(_FIT.fit_seed.value),
                       losses=variant_losses(name), body_model=body_model)
      seconds = time.perf_counter() - t0
      result = evaluation.evaluate_run(
          body_model, sequence, fitted.avatar, fitted.poses, background=config.background,
          frame_stride=_OUT.eval_stride.value, bbox_margin=_OUT.bbox_margin.value,
          backend=config.backend, tile_capacity=config.tile_capacity,
          use_lpips=_OUT.lpips.value, progress=config.progress)
      summary = common.fit_summary(fitted, seconds)
      run_dir = os.path.join(out_dir, name)
      if _WRITE_RUNS.value:
        report.write_run(run_dir, body_model=body_model, sequence=sequence,
                          avatar=fitted.avatar, poses=fitted.poses, evaluation_result=result,
                          history=fitted.history, fit_summary=summary,
                          background=config.background, backend=config.backend,
                          tile_capacity=config.tile_capacity, num_panels=_OUT.num_panels.value,
                          orbit_frames=_OUT.orbit_frames.value, videos=_OUT.videos.value,
                          progress=config.progress, title=label)
      else:
        os.makedirs(run_dir, exist_ok=True)
        report.write_json(os.path.join(run_dir, "metrics.json"), dict(result, fit=summary))
      result["fit"] = summary
    results[name] = result
    rows.append((label, result))
    table = report.ablation_table(rows)
    with open(os.path.join(out_dir, "ablation.md"), "w") as f:  # rewritten after every row
      f.write(_markdown(sequence, table, results))
  report.write_json(os.path.join(out_dir, "ablation.json"),
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
