r"""Your own video in: masks and landmarks, an initial SMPL, then the joint avatar + pose fit.

  python experiments/video.py --video=clip.mp4 --output_dir=runs/clip

Needs the ``video`` extra (``pip install -e '.[video]'``: MediaPipe, whose models ship in the
wheel; nothing is downloaded). Stages, each with a progress bar: decode (``--stride``,
``--start``, ``--end``, ``--max_frames``, ``--long_side``), observe (BlazePose landmarks and
the person mask; cached in ``<output_dir>/observations.npz`` — a second run re-uses them),
initialise (SMPLify-style fit to the landmarks; ``smpl_init.npz``), the joint fit (the
default fit plus the 2D keypoint term; no depth), then the usual run directory
(``smpl_refined.npz``, ``avatar.ply`` / ``avatar.npz``, ``orbit.mp4``, ...) and
``overlay.mp4`` (landmarks, mask outline, the initial mesh's outline in red and the refined
mesh in green). ``timing.json`` has the time of each stage; ``agreement.json`` (also printed)
how well the initial and refined poses agree with what MediaPipe saw, the only check a real
clip allows: the avatar's silhouette IoU with the observed masks and the joints' median
distance to the mapped landmarks (``hsjax.video.agreement_with_observations``).

Camera: pinhole, principal point at the centre, focal length ``--focal`` (pixels of the
decoded frames) or from ``--fov`` (diagonal degrees; default 53.1°, focal = image diagonal).
The world frame is the camera frame: with a panning camera the motion is camera-relative.

Frames without a usable person leave the fit and are listed; with several people the one
detected first is followed (box overlap) and the frames showing somebody else are listed.
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
_VIDEO = flags.DEFINE_string("video", None, "The input video file (anything ffmpeg reads).")
_STRIDE = flags.DEFINE_integer("stride", 2, "Keep every k-th frame.")
_START = flags.DEFINE_integer("start", 0, "First frame number.")
_END = flags.DEFINE_integer("end", -1, "Frame number to stop before (-1: the end).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 150, "At most this many frames (0: all).")
_LONG_SIDE = flags.DEFINE_integer("long_side", 512, "Resize the long side to this many pixels "
                                  "(0: keep the file's size).")
_FOCAL = flags.DEFINE_float("focal", 0.0, "Focal length in pixels of the decoded frames (0: "
                            "from --fov).")
_FOV = flags.DEFINE_float("fov", 53.13, "Diagonal field of view, degrees, when --focal is 0.")
_KEYPOINTS_WEIGHT = flags.DEFINE_float("keypoints_weight", -1.0, "Weight of the 2D keypoint "
                                       "term (-1: the video default).")
_REDETECT = flags.DEFINE_bool("redetect", False, "Ignore a cached observations.npz.")
_FIT, _OUT, _BODY_MODEL = (common.define_fit_flags(),
                               common.define_output_flags("runs/video"),
                               common.define_body_model_flag())
flags.adopt_module_key_flags(common)


def video_fit_overrides(fit_flags: common.FitFlags) -> dict:
  """The fit settings in which a video run differs from the library's defaults
  (``hsjax.video.video_fit_config``): its schedule (a given ``--warmup_steps`` kept within it)
  unless ``--steps`` chooses one, the shape of the landmark initialisation kept unless
  ``--train_betas`` is given, the frames fitted as decoded unless ``--downsample`` is given,
  windowed around the person unless ``--person_crop`` is given, the avatar's colour degree
  unless ``--sh_degree`` is given and the unseen sides' colouring step (within the schedule)
  unless ``--fill_unseen_at`` is given; none when ``--preset`` chooses the configuration. The
  loss weights are the caller's (``hsjax.video.VIDEO_LOSS_WEIGHTS`` with ``--losses``)."""
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if fit_flags.preset.present:
    return {}
  given_steps = {"steps": fit_flags.steps.value} if fit_flags.steps.present else {}
  config = video.video_fit_config(**given_steps)
  flag_of_field = {"train_betas": fit_flags.train_betas, "downsample": fit_flags.downsample,
                   "person_crop": fit_flags.person_crop, "sh_degree": fit_flags.sh_degree,
                   "fill_unseen_at": fit_flags.fill_unseen_at}
  overrides = {field: getattr(config, field) for field, flag in flag_of_field.items()
               if not flag.present}
  if not given_steps:
    warmup = (min(fit_flags.warmup_steps.value, config.steps) if fit_flags.warmup_steps.present
              else config.warmup_steps)
    overrides.update(steps=config.steps, warmup_steps=warmup)
  return overrides


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  if not _VIDEO.value:
    raise common.InputError("--video is required (a video file)")
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import report  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.report.video import write_video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.video import overlay  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  weights = dict(video.VIDEO_LOSS_WEIGHTS)
  if _KEYPOINTS_WEIGHT.value >= 0:
    weights["keypoints_2d"] = _KEYPOINTS_WEIGHT.value
  if _FIT.losses.present:  # --losses wins over the video's weights (and a preset's)
    weights.update(dict(common.parse_losses(_FIT.losses.value)))
  config = common.fit_config(_FIT, body_model=_BODY_MODEL.value,
                             loss_weights=tuple(weights.items()), **video_fit_overrides(_FIT))
  run_dir = _OUT.output_dir.value
  progress = config.progress
  times = {}

  t0 = time.perf_counter()
  with tqdm(desc="decode", unit="frame", disable=not progress) as bar:
    try:
      clip = video.read_video(_VIDEO.value, stride=_STRIDE.value, start=_START.value,
                              end=None if _END.value < 0 else _END.value,
                              max_frames=_MAX_FRAMES.value, long_side=_LONG_SIDE.value,
                              progress=bar.update)
    except (FileNotFoundError, ValueError) as e:
      raise common.InputError(f"--video: {e}") from e
  times["decode_s"] = time.perf_counter() - t0
  t, h, w = clip.frames.shape[:3]
  print(f"{clip.path}: {t} frames of {w}x{h} at {clip.fps:.1f} fps (source frames "
        f"{clip.source_indices[0]}-{clip.source_indices[-1]}, stride {_STRIDE.value})")
  if t < config.batch_frames:
    raise common.InputError(f"--video: {t} frames decoded, fewer than --batch_frames="
                            f"{config.batch_frames}; lower --stride or --batch_frames")
  # The input is read: only now is anything written into the run directory.
  decision = common.open_run_dir(
      run_dir, "video", overwrite=_OUT.overwrite.value,
      video={"path": os.path.abspath(_VIDEO.value), "stride": _STRIDE.value,
             "start": _START.value, "end": _END.value, "max_frames": _MAX_FRAMES.value,
             "long_side": _LONG_SIDE.value, "focal": _FOCAL.value, "fov": _FOV.value},
      fit_config=config, fit_seed=_FIT.fit_seed.value)
  if decision != "new":
    print(f"{run_dir}: {'resuming' if decision == 'resume' else 'replacing'} the run there")

  cache = os.path.join(run_dir, "observations.npz")
  t0 = time.perf_counter()
  obs = None
  if os.path.exists(cache) and not _REDETECT.value:
    obs = video.load_observations(cache)
    if obs.frame_indices.tolist() != clip.source_indices.tolist() or obs.image_size != (h, w):
      print(f"{cache}: made for other frames or another size; detecting again")
      obs = None
    else:
      print(f"observations: re-using {cache}")
  if obs is None:
    ok, reason = video.mediapipe_available()
    if not ok:
      raise common.InputError(reason)
    with tqdm(total=t, desc="observe", unit="frame", disable=not progress) as bar:
      obs = video.MediaPipeObserver().observe(clip.frames, clip.source_indices,
                                              progress=bar.update)
    obs.save(cache)
  times["observe_s"] = time.perf_counter() - t0
  times["observe_ms_per_frame"] = 1000.0 * times["observe_s"] / t
  for note in obs.notes:
    print(f"note: {note}")
  used = video.usable_frames(obs)
  if not np.any(used):
    raise common.InputError(f"--video={_VIDEO.value}: no person found in any of the {t} "
                            "frames")
  if used.sum() < config.batch_frames:
    raise common.InputError(f"--video={_VIDEO.value}: a person in only {int(used.sum())} "
                            f"frames, fewer than --batch_frames={config.batch_frames}")

  body_model = common.load_body_model(_BODY_MODEL.value)
  cams = video.video_cameras(w, h, t, focal=_FOCAL.value or None,
                             diagonal_fov_deg=_FOV.value)
  t0 = time.perf_counter()
  print("initialise: fitting SMPL to the landmarks")
  init, keypoints, init_report = video.initialise(body_model, obs, cams)
  times["initialise_s"] = time.perf_counter() - t0
  print(f"initialise: {times['initialise_s']:.1f} s, final terms "
        + ", ".join(f"{k} {v:.4g}" for k, v in init_report["terms"].items()))
  io_lib.save_smpl_npz(os.path.join(run_dir, "smpl_init.npz"), init, fps=clip.fps)
  sequence, info = video.build_sequence(os.path.basename(_VIDEO.value), clip.frames, obs, cams,
                                        init, keypoints, fps=clip.fps)
  if info["message"]:
    print(f"note: {info['message']}")

  report.write_json(os.path.join(run_dir, "video.json"), {
      "path": _VIDEO.value, "frames": t, "used": info["used"], "dropped": info["dropped"],
      "focal": float(cams.K[0, 0, 0])})
  out = common.fit_evaluate_write(run_dir, sequence, config, body_model,
                                  seed=_FIT.fit_seed.value, out=_OUT, checkpoints=False,
                                  title=f"video fit of {sequence.name}")
  times.update(out["times"])
  t0 = time.perf_counter()
  refined = io_lib.load_smpl_npz(os.path.join(run_dir, "smpl_refined.npz"))
  avatar = io_lib.load_avatar(os.path.join(run_dir, "avatar.npz"))
  agreement = {name: video.agreement_with_observations(
      body_model, avatar, sequence, poses, backend=config.backend,
      tile_capacity=config.tile_capacity) for name, poses in (("init", init), ("refined", refined))}
  report.write_json(os.path.join(run_dir, "agreement.json"), agreement)
  print("agreement with the observations (init -> refined): avatar silhouette IoU "
        f"{agreement['init']['mask_iou']:.3f} -> {agreement['refined']['mask_iou']:.3f}, "
        f"keypoints {agreement['init']['keypoint_px_median']:.1f} -> "
        f"{agreement['refined']['keypoint_px_median']:.1f} px (median)")
  times["agreement_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  if _OUT.videos.value:
    frames = overlay.overlay_frames(body_model, sequence, obs, init, refined, used)
    write_video(os.path.join(run_dir, "overlay.mp4"),
                       tqdm(frames, total=len(sequence), desc="overlay", disable=not progress),
                       fps=clip.fps)
  times["overlay_s"] = time.perf_counter() - t0
  common.write_viewer(run_dir, sequence, body_model)
  with open(os.path.join(run_dir, "timing.json"), "w") as f:
    json.dump({k: round(v, 2) for k, v in times.items()}, f, indent=1)
  print("time per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
  with open(out["files"]["table.md"]) as f:
    print(f.read())


if __name__ == "__main__":
  common.run(main)
