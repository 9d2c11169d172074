"""Flags and helpers shared by the experiment scripts (fit, evaluate, ablate, demo, fit_many,
animate).

Each script defines the flag groups it needs at import time (``define_sequence_flags()``,
``define_fit_flags()``, ``define_output_flags()``), turns them into library objects
(:func:`load_sequence`, :func:`fit_config`) and writes ``flags.txt`` (replayable with
``--flagfile``) and ``config.json`` next to its results (:func:`write_config`).

Bad input (a missing path, an unknown sequence name, a wrong format, an unknown loss name)
raises :class:`InputError`; :func:`run` prints ``<script>: error: <message>`` and exits with
status 2 instead of a traceback (also for a file-system refusal, ``OSError``); any other
exception is a bug and is printed with its traceback and a pointer to report it (exit 1).

Run directories: :func:`open_run_dir` decides, once the inputs are read and validated, whether
the run is new, resumes the run already there (same configuration), or is refused (another
configuration, or a folder that is not a run directory), and only then writes ``flags.txt``
and ``config.json`` (atomically). ``--overwrite`` is the only way to replace a run's results.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shutil
import sys
import traceback
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging

from hsjax.data.loaders import FORMATS
from hsjax.fit.config import POSE_GROUPS
from kernels.rasterize.api import BACKENDS

FLAGS = flags.FLAGS

SEQUENCE_FORMATS = ("auto", "synthetic") + FORMATS


BUG_REPORT = "the issue tracker of the hsjax repository"


class InputError(ValueError):
  """A bad flag value or input file; the message names it and what was expected."""


def run(main: Callable[[list[str]], Any]) -> None:
  """``app.run(main)`` that reports :class:`InputError` as one line and exits with 2."""

  def guarded(argv):
    if not FLAGS["verbosity"].present:
      # Apply absl's default level explicitly: otherwise the INFO records of libraries that
      # configure their own loggers (e.g. jax probing for a TPU) reach the console.
      logging.set_verbosity(logging.WARNING)
    script = os.path.basename(sys.argv[0])
    try:
      return main(argv)
    except InputError as e:
      print(f"{script}: error: {e}", file=sys.stderr)
      sys.exit(2)
    except OSError as e:  # the file system refused (a path that is a file, disk full, ...)
      where = f"{e.filename}: " if getattr(e, "filename", None) else ""
      print(f"{script}: error: {where}{e.strerror or e}", file=sys.stderr)
      sys.exit(2)
    except MemoryError:
      print(f"{script}: error: out of memory; use fewer frames, a smaller --image_size or "
            "--num_gaussians", file=sys.stderr)
      sys.exit(2)
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      print(f"{script}: internal error: this is a bug in hsjax, not in your input; please "
            f"report it ({BUG_REPORT}) with the command line and the traceback above",
            file=sys.stderr)
      sys.exit(1)

  app.run(guarded)


def process_memory_bytes(field: str) -> int:
  """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc/self/status, bytes.

  Unlike ``getrusage``'s ``ru_maxrss``, which survives ``exec`` and so reports a large
  parent's memory in the process it started, ``VmHWM`` belongs to the process image.

  Raises:
    OSError: where there is no /proc (not Linux).
    RuntimeError: when the status has no such field.
  """
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024  # kB
  raise RuntimeError(f"/proc/self/status has no {field}")


def init_jax() -> None:
  """Lets ``--jax_platforms`` & co. work (call before defining this script's flags)."""
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  jax.config.parse_flags_with_absl()


# ------------------------------------------------------------------------------------------
# Sequence


@dataclasses.dataclass(frozen=True)
class SequenceFlags:
  """Holders of the flags that choose the input sequence."""

  sequence: Any
  format: Any
  seed: Any
  hmr_noise: Any
  num_frames: Any
  image_size: Any
  depth: Any
  num_eval_views: Any
  num_novel_pose: Any
  cache_dir: Any
  track_id: Any = None


def define_sequence_flags(default: str = "default") -> SequenceFlags:
  """Flags for :func:`load_sequence`."""
  from hsjax.data import hmr_noise  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.data import synthetic  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  presets = ", ".join(sorted(synthetic.PRESETS))
  return SequenceFlags(
      sequence=flags.DEFINE_string(
          "sequence", default,
          f"A synthetic sequence name ({presets}) or the path of a sequence: a directory in the "
          "hsjax layout (hsjax/data/io.py) or an importer's input."),
      format=flags.DEFINE_enum(
          "format", "auto", SEQUENCE_FORMATS,
          "How to read --sequence: 'auto' (a synthetic name, else detected from the files), "
          "'synthetic', or a loader of hsjax.data.load_sequence."),
      seed=flags.DEFINE_integer("seed", 0, "Synthetic sequences: seed of the body shape, "
                                "clothing and simulated HMR noise."),
      hmr_noise=flags.DEFINE_enum("hmr_noise", "hmr2_like", sorted(hmr_noise.HMR_NOISE_PRESETS),
                                  "Synthetic sequences: the simulated HMR error preset."),
      num_frames=flags.DEFINE_integer("num_frames", 0, "Synthetic sequences: frames (0: the "
                                      "preset's, 60 for 'default')."),
      image_size=flags.DEFINE_integer("image_size", 0, "Synthetic sequences: square image size "
                                      "in pixels (0: the preset's, 256)."),
      depth=flags.DEFINE_enum("depth", "preset", ["preset", *synthetic.DEPTH_MODES],
                              "Synthetic sequences: depth maps given to the fit (exact metric, "
                              "relative, none, or a simulated monocular-depth preset of "
                              "hsjax.data.depth_noise)."),
      num_eval_views=flags.DEFINE_integer("num_eval_views", -1, "Synthetic sequences: held-out "
                                          "cameras (-1: the preset's, 4)."),
      num_novel_pose=flags.DEFINE_integer("num_novel_pose", -1, "Synthetic sequences: held-out "
                                          "novel-pose frames (-1: the preset's, 8)."),
      cache_dir=flags.DEFINE_string("cache_dir", "", "Synthetic sequences: cache folder "
                                    "(default $HSJAX_CACHE/sequences or "
                                    "~/.cache/hsjax/sequences)."),
      track_id=flags.DEFINE_integer("track_id", -1, "4dhumans: the PHALP track id (tid) to "
                                    "import (-1: the longest track)."),
  )


def sequence_spec(f: SequenceFlags) -> dict[str, Any]:
  """The flags that identify the sequence, as stored in ``config.json``."""
  return {"sequence": f.sequence.value, "format": f.format.value, "seed": f.seed.value,
          "hmr_noise": f.hmr_noise.value, "num_frames": f.num_frames.value,
          "image_size": f.image_size.value, "depth": f.depth.value,
          "num_eval_views": f.num_eval_views.value, "num_novel_pose": f.num_novel_pose.value,
          "cache_dir": f.cache_dir.value,
          "track_id": f.track_id.value if f.track_id is not None else -1}


def load_sequence(f: SequenceFlags | dict[str, Any], body_model=None):
  """Loads the sequence the flags (or a stored :func:`sequence_spec`) name.

  Raises:
    InputError: unknown synthetic name and no such path, a missing path, or a file the
      chosen loader refuses (its message names the file and field).
  """
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.data import synthetic  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  spec = sequence_spec(f) if isinstance(f, SequenceFlags) else dict(f)
  name, fmt = spec["sequence"], spec["format"]
  is_synthetic = fmt == "synthetic" or (fmt == "auto" and name in synthetic.PRESETS
                                        and not os.path.exists(name))
  if is_synthetic:
    if name not in synthetic.PRESETS:
      raise InputError(f"--sequence: unknown synthetic sequence '{name}'; valid: "
                       f"{sorted(synthetic.PRESETS)}")
    overrides = {}
    if spec["num_frames"] > 0:
      overrides["num_frames"] = spec["num_frames"]
    if spec["image_size"] > 0:
      overrides["image_size"] = spec["image_size"]
    if spec["depth"] != "preset":
      overrides["depth"] = spec["depth"]
    if spec["num_eval_views"] >= 0:
      overrides["num_eval_views"] = spec["num_eval_views"]
    if spec["num_novel_pose"] >= 0:
      overrides["num_novel_pose"] = spec["num_novel_pose"]
    try:
      return data.synthetic_sequence(name, seed=spec["seed"], hmr_noise=spec["hmr_noise"],
                                     cache_dir=spec["cache_dir"] or None, body_model=body_model,
                                     **overrides)
    except ValueError as e:
      raise InputError(f"--sequence={name}: {e}") from e
  if not os.path.exists(name):
    raise InputError(f"--sequence: '{name}' is neither a synthetic sequence name (valid: "
                     f"{sorted(synthetic.PRESETS)}) nor an existing path")
  from hsjax.data import importers  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.data import loaders  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  try:
    resolved = fmt if fmt != "auto" else loaders.detect_format(name)
  except ValueError as e:
    raise InputError(f"--sequence={name} (--format={fmt}): {e}") from e
  kwargs = {}
  if spec.get("track_id", -1) >= 0:
    if resolved != "4dhumans":
      raise InputError(f"--track_id: only for --format=4dhumans, found format '{resolved}'")
    kwargs["track_id"] = spec["track_id"]
  if body_model is not None and resolved in importers.REROOTING_FORMATS:
    kwargs["body_model"] = body_model  # the rest pelvis the format's rotations pivot about
  from hsjax.data import sequence as seq_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  try:
    # Every frame is read (and checked) now, so a bad file stops the run before anything is
    # written, not half-way through the fit.
    return seq_lib.read_frames(data.load_sequence(name, format=fmt, **kwargs), name)
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise InputError(f"--sequence={name} (--format={fmt}): {e}") from e


# ------------------------------------------------------------------------------------------
# Body model


def define_body_model_flag():
  return flags.DEFINE_string(
      "body_model", "default",
      "Body model: 'default' (the embedded CC0 body), an SMPL .pkl / .npz file, or a folder "
      "holding SMPL_NEUTRAL.pkl.")


def load_body_model(value: str):
  from hsjax import body  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if value != "default" and not os.path.exists(value):
    raise InputError(f"--body_model: file not found: {value}")
  try:
    return body.load_body_model(value)
  except (FileNotFoundError, ValueError) as e:
    raise InputError(f"--body_model={value}: {e}") from e


# ------------------------------------------------------------------------------------------
# Fit configuration


def parse_losses(spec: str) -> tuple[tuple[str, float], ...]:
  """``"rgb:1,mask:0.5"`` -> ``(("rgb", 1.0), ("mask", 0.5))``, names checked.

  Raises:
    InputError: a malformed item, a non-numeric weight, or a name not in
      ``hsjax.losses.DEFAULT_LOSSES`` (the message lists the valid names).
  """
  from hsjax import losses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  valid = sorted(losses.DEFAULT_LOSSES)
  out = []
  for item in [s.strip() for s in spec.split(",") if s.strip()]:
    name, sep, weight = item.partition(":")
    name = name.strip()
    if not sep:
      raise InputError(f"--losses: item '{item}' must be name:weight (e.g. mask:0.5)")
    if name not in losses.DEFAULT_LOSSES:
      raise InputError(f"--losses: unknown loss term '{name}'; valid names: {', '.join(valid)}")
    try:
      value = float(weight)
    except ValueError:
      raise InputError(f"--losses: weight of '{name}' must be a number, found "
                       f"'{weight}'") from None
    out.append((name, value))
  return tuple(out)


def default_losses_help() -> str:
  from hsjax import losses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  return ", ".join(f"{n}:{w:g}" if not callable(w) else f"{n}:schedule"
                   for n, (w, _) in losses.DEFAULT_LOSSES.items())


@dataclasses.dataclass(frozen=True)
class FitFlags:
  """Holders of the flags that shape the fit (see ``hsjax.fit.FitConfig``)."""

  preset: Any
  steps: Any
  warmup_steps: Any
  pose_steps: Any
  rounds: Any
  batch_frames: Any
  num_gaussians: Any
  sh_degree: Any
  losses: Any
  refine: Any
  train_betas: Any
  lr_betas: Any
  learn_skinning: Any
  nonrigid: Any
  densify_every: Any
  means_lr: Any
  camel_refresh_every: Any
  fill_unseen_at: Any
  align_depth: Any
  depth_focal_power: Any
  depth_edge_px: Any
  backend: Any
  tile_capacity: Any
  downsample: Any
  max_fit_size: Any
  person_crop: Any
  person_crop_margin: Any
  frame_cache_gb: Any
  fit_seed: Any
  progress: Any


# Pose groups --refine chooses from (the shape has a flag of its own, --train_betas).
REFINE_GROUPS = tuple(g for g in POSE_GROUPS if g != "betas")


def define_fit_flags() -> FitFlags:
  """Flags for :func:`fit_config`; defaults are ``hsjax.fit.FitConfig``'s (the ``fast``
  preset). A flag given on the command line overrides the chosen ``--preset``'s value."""
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  d = fit.FitConfig()
  return FitFlags(
      preset=flags.DEFINE_enum(
          "preset", "fast", sorted(fit.PRESETS),
          "Named fit configuration: 'fast' (the defaults listed by these flags) or 'quality' "
          f"({preset_summary()}). Fit flags given explicitly override the preset's values."),
      steps=flags.DEFINE_integer("steps", d.steps, "Optimisation steps (warm-up included)."),
      warmup_steps=flags.DEFINE_integer("warmup_steps", d.warmup_steps,
                                        "Avatar-only steps before the poses move."),
      pose_steps=flags.DEFINE_integer(
          "pose_steps", d.pose_steps, "Steps after the warm-up during which the poses train; "
          "then only the avatar trains (0: poses train to the last step).", lower_bound=0),
      rounds=flags.DEFINE_integer(
          "rounds", d.rounds, "Fits run one after another, each after the first from a fresh "
          "avatar at the poses the one before refined (hsjax.fit.FitConfig.rounds).",
          lower_bound=1),
      batch_frames=flags.DEFINE_integer("batch_frames", d.batch_frames,
                                        "Frames rendered per step."),
      num_gaussians=flags.DEFINE_integer("num_gaussians", d.num_gaussians,
                                         "Avatar capacity N (Gaussians)."),
      sh_degree=flags.DEFINE_integer("sh_degree", d.sh_degree, "SH degree of the avatar colour."),
      losses=flags.DEFINE_string(
          "losses", "",
          "Loss weights overriding the defaults, name:weight comma-separated (0 switches a "
          f"term off), e.g. 'mask:0.5,depth:0'. Terms and default weights: "
          f"{default_losses_help()}."),
      refine=flags.DEFINE_list(
          "refine", list(REFINE_GROUPS),
          "Pose groups refined jointly with the avatar, any of "
          f"{','.join(REFINE_GROUPS)}; empty ('--refine=') keeps the HMR poses fixed (the "
          "avatar-only baseline)."),
      train_betas=flags.DEFINE_bool("train_betas", d.train_betas, "Also refine the shape."),
      lr_betas=flags.DEFINE_float("lr_betas", d.lr_betas, "Adam learning rate of the shape "
                                  "(betas units a step) when --train_betas."),
      learn_skinning=flags.DEFINE_bool("learn_skinning", d.learn_skinning,
                                       "Learn the skinning weights."),
      nonrigid=flags.DEFINE_bool("nonrigid", d.nonrigid, "Pose-dependent non-rigid MLP."),
      densify_every=flags.DEFINE_integer("densify_every", d.densify_every,
                                         "Steps between density-control passes (0: off)."),
      means_lr=flags.DEFINE_float("means_lr", dict(d.avatar_lrs)["means"],
                                  "Adam learning rate of the avatar's centres (metres)."),
      fill_unseen_at=flags.DEFINE_integer(
          "fill_unseen_at", d.fill_unseen_at, "Step after which the avatar's Gaussians the "
          "training camera never faced take the colour of the seen side, mirrored through "
          "their body part's coronal plane (hsjax.unseen); 0: never.", lower_bound=0),
      camel_refresh_every=flags.DEFINE_integer(
          "camel_refresh_every", d.camel_refresh_every,
          "Steps between searches of each Gaussian's nearest body vertex for the CAMEL terms "
          "(0: use the vertex it is anchored to)."),
      align_depth=flags.DEFINE_bool(
          "align_depth", d.align_depth, "Align each frame's initial translation to the "
          "observed metric depth before fitting (hsjax.fit.align)."),
      depth_focal_power=flags.DEFINE_float(
          "depth_focal_power", d.depth_focal_power, "Rescale depth that came with its own "
          "intrinsics by (f_camera / f_depth) ** power (0: as given)."),
      depth_edge_px=flags.DEFINE_integer(
          "depth_edge_px", d.depth_edge_px, "Drop depth within this many pixels (fitted "
          "size) of the person's silhouette, where a monocular network blends it with the "
          "background.", lower_bound=0),
      backend=flags.DEFINE_enum("backend", d.backend, list(BACKENDS), "Rasteriser backend."),
      tile_capacity=flags.DEFINE_integer("tile_capacity", d.tile_capacity,
                                         "Gaussians kept per 16x16 tile."),
      downsample=flags.DEFINE_integer(
          "downsample", d.downsample, "Integer factor by which frames are reduced for fitting "
          "(area averaging; 1: full resolution).", lower_bound=1),
      max_fit_size=flags.DEFINE_integer(
          "max_fit_size", d.max_fit_size, "Largest long side (pixels) of the fitted images: "
          "the --downsample factor grows until the frames fit (0: no limit).", lower_bound=0),
      person_crop=flags.DEFINE_bool(
          "person_crop", d.person_crop, "Fit a window around the person in each frame (one "
          "size for the sequence, placed on each frame's mask) instead of the whole frame; "
          "--downsample and --max_fit_size then apply to the window."),
      person_crop_margin=flags.DEFINE_float(
          "person_crop_margin", d.person_crop_margin, "With --person_crop: the largest mask "
          "box is widened by this fraction of its size on each side.", lower_bound=0.0,
          upper_bound=1.0),
      frame_cache_gb=flags.DEFINE_float(
          "frame_cache_gb", d.frame_cache_gb, "Host memory (GiB per sequence) for prepared "
          "frames; frames beyond it are read from disk again when a step draws them (0: "
          "stream every frame).", lower_bound=0.0),
      fit_seed=flags.DEFINE_integer("fit_seed", 0, "Seed of the fit's PRNG key."),
      progress=flags.DEFINE_bool("progress", True, "Show progress bars."),
  )


def preset_summary(name: str = "quality") -> str:
  """The fields in which preset ``name`` differs from the defaults, as ``field=value``."""
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  base, chosen = fit.FitConfig(), fit.preset(name)
  names = [field.name for field in dataclasses.fields(base)]
  return ", ".join(f"{k}={getattr(chosen, k)}" for k in names
                   if getattr(chosen, k) != getattr(base, k))


def fit_config(f: FitFlags, body_model: str = "default", **overrides):
  """The ``hsjax.fit.FitConfig`` of the flags: ``--preset``'s configuration, with every fit
  flag given on the command line applied over it (``overrides`` win over both).

  Raises:
    InputError: unknown loss names or pose groups, or a config the library rejects.
  """
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  base = fit.preset(f.preset.value)
  kwargs = dict(body_model=body_model, progress=f.progress.value)
  if f.refine.present:
    refine = [g.strip() for g in f.refine.value if g.strip()]
    unknown = [g for g in refine if g not in REFINE_GROUPS]
    if unknown:
      raise InputError(f"--refine: unknown pose group(s) {unknown}; valid: "
                       f"{list(REFINE_GROUPS)}")
    kwargs.update(train_global_orient="global_orient" in refine,
                  train_body_pose="body_pose" in refine, train_transl="transl" in refine)
  if f.losses.present:
    # On top of the preset's own weights (the quality preset keeps the ones it was chosen with).
    kwargs["loss_weights"] = tuple({**dict(base.loss_weights),
                                    **dict(parse_losses(f.losses.value))}.items())
  if f.means_lr.present:
    kwargs["avatar_lrs"] = tuple(dict(base.avatar_lrs, means=f.means_lr.value).items())
  for name in ("steps", "warmup_steps", "pose_steps", "rounds", "batch_frames", "num_gaussians",
               "sh_degree", "train_betas", "lr_betas", "learn_skinning", "nonrigid",
               "densify_every", "camel_refresh_every", "fill_unseen_at", "align_depth",
               "depth_focal_power", "depth_edge_px", "backend", "tile_capacity", "downsample",
               "max_fit_size", "person_crop", "person_crop_margin", "frame_cache_gb"):
    if getattr(f, name).present:
      kwargs[name] = getattr(f, name).value
  steps = kwargs.get("steps", base.steps)
  # The warm-up, density control and the unseen sides' pass must fit inside the schedule of a
  # short fit.
  for name in ("warmup_steps", "densify_from", "densify_until", "fill_unseen_at"):
    kwargs[name] = min(kwargs.get(name, getattr(base, name)), steps)
  kwargs.update(overrides)
  try:
    return dataclasses.replace(base, **kwargs)
  except ValueError as e:
    raise InputError(str(e)) from e


# ------------------------------------------------------------------------------------------
# Outputs


@dataclasses.dataclass(frozen=True)
class OutputFlags:
  """Holders of the flags that shape the run directory and the evaluation."""

  output_dir: Any
  eval_stride: Any
  bbox_margin: Any
  num_panels: Any
  orbit_frames: Any
  videos: Any
  lpips: Any
  overwrite: Any = None


def define_run_flags(default_output_dir: str
                     ) -> tuple[SequenceFlags, FitFlags, OutputFlags, Any]:
  """The flags of a script that fits sequences: ``(sequence, fit, output, body_model)``."""
  return (define_sequence_flags(), define_fit_flags(), define_output_flags(default_output_dir),
          define_body_model_flag())


def define_checkpoints_flag():
  return flags.DEFINE_bool("checkpoints", True, "Write checkpoints to <output_dir>/checkpoints "
                           "and resume from them.")


def define_output_flags(default_dir: str) -> OutputFlags:
  return OutputFlags(
      output_dir=flags.DEFINE_string("output_dir", default_dir, "Run directory (created)."),
      eval_stride=flags.DEFINE_integer("eval_stride", 1, "Image metrics on every k-th frame."),
      bbox_margin=flags.DEFINE_integer("bbox_margin", 8, "Pixels around the person's bounding "
                                       "box for the table's PSNR / SSIM."),
      num_panels=flags.DEFINE_integer("num_panels", 4, "Frames shown as PNG panels."),
      orbit_frames=flags.DEFINE_integer("orbit_frames", 90, "Frames of the orbit video."),
      videos=flags.DEFINE_bool("videos", True, "Write the MP4 videos."),
      lpips=flags.DEFINE_bool("lpips", True, "Compute LPIPS when its weights are present."),
      overwrite=define_overwrite_flag(),
  )


def define_overwrite_flag():
  return flags.DEFINE_bool(
      "overwrite", False,
      "Replace an existing run directory made with another configuration: it is deleted, "
      "then the run starts from scratch. Without this flag such a directory is refused and "
      "left untouched; a directory of the same configuration is resumed.")


def flags_text() -> str:
  """The script's flags as ``--name=value`` lines, replayable with ``--flagfile``.

  Flags of absl itself are left out, and jax's only where set on the command line.
  """
  lines, seen = [], set()
  for module, flag_list in sorted(FLAGS.flags_by_module_dict().items()):
    if module.startswith("absl"):
      continue
    for fl in flag_list:
      if fl.name in seen or (module.startswith("jax") and not fl.present):
        continue
      seen.add(fl.name)
      text = fl.serialize()
      if text:
        lines.append(text)
  return "\n".join(sorted(lines)) + "\n"


def flag_values() -> dict[str, Any]:
  out = {}
  for module, flag_list in FLAGS.flags_by_module_dict().items():
    if module.startswith("absl") or module.startswith("jax"):
      continue
    for fl in flag_list:
      out[fl.name] = fl.value
  return out


def _jsonable(value) -> Any:
  if dataclasses.is_dataclass(value):
    value = dataclasses.asdict(value)
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def write_config(run_dir: str, script: str, **sections) -> None:
  """Writes ``flags.txt`` and ``config.json`` (flags, ``sections``, versions, date), each
  atomically (a reader never sees a half-written file)."""
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import hsjax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.io import atomic  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  os.makedirs(run_dir, exist_ok=True)
  config = {"script": script, "flags": flag_values(),
            "versions": {"hsjax": hsjax.__version__, "jax": jax.__version__,
                         "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "devices": [str(d) for d in jax.devices()]}
  for name, value in sections.items():
    config[name] = _jsonable(value)
  atomic.write_text(os.path.join(run_dir, "config.json"),
                    json.dumps(config, indent=1, sort_keys=True, default=str))
  atomic.write_text(os.path.join(run_dir, "flags.txt"), flags_text())


# Fields of a fit configuration that may change when a run is resumed (hsjax.fit).
def _resumable_fields() -> tuple[str, ...]:
  from hsjax.fit.config import RESUMABLE_FIELDS  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  return tuple(RESUMABLE_FIELDS)


def run_dir_decision(run_dir: str, script: str, *, overwrite: bool, **sections) -> str:
  """Decides what happens to ``run_dir``; writes nothing.

  Returns:
    ``"new"`` (absent or empty), ``"resume"`` (a run directory of this script with the same
    ``sections``; fields of the fit that may change on resume are ignored) or ``"replace"``
    (another configuration, and ``overwrite``).

  Raises:
    InputError: ``run_dir`` is a file; a non-empty folder that is not a run directory (no
      ``config.json``; never deleted, even with ``overwrite``); or a run of another
      configuration without ``overwrite`` (the message names the differing sections).
  """
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise InputError(f"--output_dir: {run_dir} is a file, expected a directory (new, or a run "
                     "directory to resume)")
  if not os.path.isdir(run_dir) or not os.listdir(run_dir):
    return "new"
  path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(path):
    raise InputError(f"--output_dir: {run_dir} is not empty and not a run directory (no "
                     "config.json); choose a new or empty folder")
  try:
    with open(path) as f:
      stored = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError, OSError):
    stored = {}
  skip = set(_resumable_fields())
  differing = []
  for name, value in {"script": script, **sections}.items():
    now, before = _jsonable(value), stored.get(name)
    if isinstance(now, dict) and isinstance(before, dict) and name.startswith("fit_config"):
      now = {k: v for k, v in now.items() if k not in skip}
      before = {k: v for k, v in before.items() if k not in skip}
    if now != before:
      keys = (sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
              if isinstance(now, dict) and isinstance(before, dict) else [])
      differing.append(f"{name}" + (f" ({', '.join(keys[:6])})" if keys else ""))
  if not differing:
    return "resume"
  if overwrite:
    return "replace"
  raise InputError(f"--output_dir: {run_dir} holds a run with another configuration (differs "
                   f"in {'; '.join(differing)}); nothing was changed. Pass --overwrite to "
                   "replace its results, or choose another --output_dir")


def open_run_dir(run_dir: str, script: str, *, overwrite: bool, **sections) -> str:
  """:func:`run_dir_decision`, then clears the folder on ``"replace"`` and writes the
  provenance files (:func:`write_config`). Call once every input is read and validated."""
  decision = run_dir_decision(run_dir, script, overwrite=overwrite, **sections)
  if decision == "replace":
    shutil.rmtree(run_dir)
  write_config(run_dir, script, **sections)
  return decision


def read_config(run_dir: str) -> dict[str, Any]:
  path = os.path.join(run_dir, "config.json")
  if not os.path.isdir(run_dir):
    raise InputError(f"run directory not found: {run_dir}")
  if not os.path.exists(path):
    raise InputError(f"{run_dir}: not a run directory (no config.json)")
  with open(path) as f:
    return json.load(f)


def fit_summary(result, seconds: float) -> dict[str, Any]:
  """What ``metrics.json`` records about the fit itself (steps, step time and losses of its
  last round)."""
  history = result.history
  steps, times = history["step"], history["time"]
  # From the first record on, so that compilation (inside the first record) is left out.
  step_ms = (1000.0 * (times[-1] - times[0]) / (steps[-1] - steps[0])
             if len(steps) > 1 and steps[-1] > steps[0] else None)
  return {"steps": result.config.steps, "rounds": result.config.rounds,
          "time_s": round(seconds, 1),
          "step_ms": None if step_ms is None else round(step_ms, 1),
          "final_loss": history["total"][-1] if history["total"] else None,
          "final_terms": {k: v[-1] for k, v in history["terms"].items() if v},
          "overflow_last": history["overflow"][-1] if history["overflow"] else None}


# ------------------------------------------------------------------------------------------
# The fit -> evaluate -> write pipeline of fit.py and demo.py


def fit_evaluate_write(run_dir: str, sequence, config, body_model, *, seed: int,
                       out: OutputFlags, checkpoints: bool = True, title: str = "Results",
                       log: Callable[[str], None] = print) -> dict[str, Any]:
  """Fits ``sequence``, evaluates the result and writes the run directory.

  Returns:
    ``{"evaluation": evaluate_run's dict, "fit_summary": ..., "files": {name: path},
    "times": {"fit_s", "evaluate_s", "outputs_s"}}``.
  """
  import time  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import report  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  t0 = time.perf_counter()
  try:
    result = fit.fit(sequence, config, key=jax.random.key(seed), body_model=body_model,
                     checkpoint_dir=os.path.join(run_dir, "checkpoints") if checkpoints else None)
  except ValueError as e:
    if "checkpoint" in str(e):
      raise InputError(f"{e} (or pass --overwrite to start this run directory afresh)") from e
    raise
  t1 = time.perf_counter()
  log(f"fit: {config.steps} steps in {t1 - t0:.1f} s")
  result_eval = evaluation.evaluate_run(
      body_model, sequence, result.avatar, result.poses, background=config.background,
      frame_stride=out.eval_stride.value, bbox_margin=out.bbox_margin.value,
      backend=config.backend, tile_capacity=config.tile_capacity, use_lpips=out.lpips.value,
      progress=config.progress)
  t2 = time.perf_counter()
  log(f"evaluation: {t2 - t1:.1f} s")
  summary = fit_summary(result, t1 - t0)
  files = report.write_run(
      run_dir, body_model=body_model, sequence=sequence, avatar=result.avatar,
      poses=result.poses, evaluation_result=result_eval, history=result.history,
      fit_summary=summary, background=config.background, backend=config.backend,
      tile_capacity=config.tile_capacity, num_panels=out.num_panels.value,
      orbit_frames=out.orbit_frames.value, videos=out.videos.value, progress=config.progress,
      title=title)
  t3 = time.perf_counter()
  log(f"outputs: {t3 - t2:.1f} s -> {run_dir}")
  return {"evaluation": result_eval, "fit_summary": summary, "files": files,
          "times": {"fit_s": t1 - t0, "evaluate_s": t2 - t1, "outputs_s": t3 - t2}}


def load_run(run_dir: str):
  """``(config dict, body_model, sequence, avatar, refined poses)`` of a run directory.

  Raises:
    InputError: a missing directory or file, or a sequence that cannot be reloaded.
  """
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  config = read_config(run_dir)
  for name in ("avatar.npz", "smpl_refined.npz"):
    if not os.path.exists(os.path.join(run_dir, name)):
      raise InputError(f"{run_dir}: incomplete run directory, {name} is missing")
  fit_config = config.get("fit_config", {})
  body_model = load_body_model(fit_config.get("body_model", "default"))
  if "video" in config:
    sequence = load_video_run_sequence(run_dir, config["video"])
  elif "sequence" in config:
    sequence = load_sequence(config["sequence"], body_model=body_model)
  else:
    raise InputError(f"{run_dir}/config.json: no 'sequence' or 'video' entry; found "
                     f"{sorted(config)}")
  try:
    avatar = io_lib.load_avatar(os.path.join(run_dir, "avatar.npz"))
    poses = io_lib.load_smpl_npz(os.path.join(run_dir, "smpl_refined.npz"))
  except (FileNotFoundError, ValueError) as e:
    raise InputError(str(e)) from e
  if poses.body_pose.shape[0] != len(sequence):
    raise InputError(f"{run_dir}/smpl_refined.npz: {poses.body_pose.shape[0]} frames, the "
                     f"sequence {len(sequence)}")
  return config, body_model, sequence, avatar, poses


def load_video_run_sequence(run_dir: str, video_entry: dict[str, Any]):
  """The fitted sequence of an ``experiments/video.py`` run, rebuilt from its directory.

  The frames are decoded again from the video with the run's settings; the observations,
  the landmark initialisation and the focal length are the run's own (``observations.npz``,
  ``smpl_init.npz``, ``video.json``), so nothing is detected or fitted again.

  Raises:
    InputError: the video is no longer at its recorded path, a file of the run is missing, or
      the video now decodes to other frames than the run observed.
  """
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  for name in ("observations.npz", "smpl_init.npz", "video.json"):
    if not os.path.exists(os.path.join(run_dir, name)):
      raise InputError(f"{run_dir}: incomplete video run directory, {name} is missing")
  path = video_entry["path"]
  end = video_entry.get("end", -1)
  try:
    clip = video.read_video(path, stride=video_entry["stride"], start=video_entry["start"],
                            end=None if end < 0 else end, max_frames=video_entry["max_frames"],
                            long_side=video_entry["long_side"])
  except (FileNotFoundError, ValueError) as e:
    raise InputError(f"{run_dir}: the run's video cannot be read again ({e}); its frames are "
                     "needed to rebuild the sequence") from e
  obs = video.load_observations(os.path.join(run_dir, "observations.npz"))
  if obs.frame_indices.tolist() != clip.source_indices.tolist():
    raise InputError(f"{path}: decodes to frames {clip.source_indices[0]}-"
                     f"{clip.source_indices[-1]} ({len(clip)}), the run observed "
                     f"{obs.frame_indices[0]}-{obs.frame_indices[-1]} ({len(obs)}); the file "
                     "has changed since the run")
  with open(os.path.join(run_dir, "video.json")) as f:
    focal = float(json.load(f)["focal"])
  h, w = clip.frames.shape[1:3]
  cams = video.video_cameras(w, h, len(clip), focal=focal)
  keep = video.usable_frames(obs)
  keypoints = video.smpl_keypoints(obs.select(keep).landmarks)
  init = io_lib.load_smpl_npz(os.path.join(run_dir, "smpl_init.npz"))
  sequence, _ = video.build_sequence(os.path.basename(path), clip.frames, obs, cams, init,
                                     keypoints, fps=clip.fps)
  return sequence


def camera_frame_gt(body_model, seq):
  """``(ground truth, simulated HMR)`` of a synthetic sequence in its (static) training
  camera's frame: the world of a video fit, where the video front end is scored."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  w2c = np.asarray(seq.cameras.world_to_cam)
  return (body_lib.transform_params(body_model, seq.gt, w2c),
          body_lib.transform_params(body_model, seq.hmr, w2c))


def views_in_camera_frame(sequence, keep):
  """The held-out views of a synthetic sequence as a video fit sees the world.

  A video fit's world is its camera's frame (identity extrinsics); the views are re-expressed
  in the training camera's frame and restricted to the fitted frames ``keep [T] bool``.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import Camera  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  frames = np.flatnonzero(keep)
  cam_to_world = np.linalg.inv(np.asarray(sequence.cameras.world_to_cam, np.float64)[frames])
  views = []
  for view in sequence.eval_views:
    w2c = np.asarray(view.cameras.world_to_cam, np.float64)[frames] @ cam_to_world
    cameras = Camera(K=np.asarray(view.cameras.K)[frames], world_to_cam=w2c.astype(np.float32),
                     width=view.cameras.width, height=view.cameras.height)
    views.append(dataclasses.replace(
        view, images=np.asarray(view.images)[frames], masks=np.asarray(view.masks)[frames],
        depth=None, cameras=cameras, hmr=view.hmr.select(frames),
        gt=None if view.gt is None else view.gt.select(frames)))
  return views


ORACLE_OBSERVATIONS = ("keypoints", "masks")


def check_oracle_observations(names) -> None:
  """Raises InputError unless every name is one of :data:`ORACLE_OBSERVATIONS`."""
  unknown = sorted(set(names) - set(ORACLE_OBSERVATIONS))
  if unknown:
    raise InputError(f"--oracle: unknown observation(s) {unknown}; expected some of "
                     f"{list(ORACLE_OBSERVATIONS)}")


def with_true_observations(sequence, body_model, gt_masks, what):
  """A video sequence whose observations are replaced by the synthetic truth (scoring aid).

  With perfect 2D evidence, a refinement that reads only images (masks, RGB, 2D keypoints)
  still cannot see depth; the joint fit from the same landmark initialisation then shows how
  much of the initialisation's error image evidence can remove at all.

  Args:
    sequence: a video sequence (``hsjax.video.build_sequence``) whose ``gt`` holds the truth
      of its frames in the camera frame.
    body_model: the body model of the truth.
    gt_masks: [T, H, W] the true masks of the same frames.
    what: names from :data:`ORACLE_OBSERVATIONS`: ``keypoints`` — the true SMPL joints
      projected, confidence 1; ``masks`` — the true masks.

  Returns:
    The sequence with those observations replaced (the landmark initialisation is kept).
  """
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import project_points  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  check_oracle_observations(what)
  if sequence.gt is None:
    raise InputError(f"sequence {sequence.name!r} has no ground truth to take observations from")
  replaced = {}
  if "keypoints" in what:
    _, joints = body_lib.pose_frames_host(body_model, sequence.gt)
    uv, _ = jax.vmap(project_points)(sequence.cameras, np.asarray(joints))
    uv = np.asarray(uv, np.float32)
    replaced["keypoints_2d"] = np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1)
  if "masks" in what:
    gt_masks = np.asarray(gt_masks, np.float32)
    if gt_masks.shape != np.asarray(sequence.masks).shape:
      raise InputError(f"true masks have shape {gt_masks.shape}, the sequence's "
                       f"{np.asarray(sequence.masks).shape}")
    replaced["masks"] = gt_masks
  return dataclasses.replace(sequence, **replaced)


def write_viewer(run_dir: str, sequence, body_model) -> None:
  """Writes ``<run_dir>/viewer/`` (the browser viewer; see experiments/view.py)."""
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.report import viewer  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  avatar = io_lib.load_avatar(os.path.join(run_dir, "avatar.npz"))
  poses = io_lib.load_smpl_npz(os.path.join(run_dir, "smpl_refined.npz"))
  viewer.write_run_viewer(run_dir, body_model=body_model, sequence=sequence, avatar=avatar,
                          poses=poses, measure=False)
