r"""The video front end measured on synthetic sequences: MediaPipe sees only rendered pixels.

  python experiments/video_synthetic.py --output_dir=runs/video_synthetic

For every ``--sequences`` entry (``name:seed``), the training view's frames are observed
(``hsjax.video.MediaPipeObserver``), the landmark initialisation is fitted, and the joint fit
runs on the video sequence (images, MediaPipe masks, the 2D keypoint term; no depth), exactly
as ``experiments/video.py`` does for a real clip, except that the camera's intrinsics are the
synthetic camera's (a calibrated camera) instead of the field-of-view prior. The ground truth,
expressed in the camera frame, is used only to score: MPJPE / PA-MPJPE / root error of (a) the
landmark initialisation, (b) the joint fit, next to (c) the simulated ``hmr2_like``
initialisation of the same sequence, and the mask IoU of the refined render against the
ground-truth mask. Prints a table and writes ``results.json``.

The default ``--sequences`` are the evaluation sequences: the correspondence was calibrated
on other clips (``experiments/video_landmark_offsets.py``), and settings are compared on
those (e.g. ``--sequences=dance_a:1,punch:2,jump:5``; ``--steps=0 --bones_weight=W`` compares
initialisations only). Measured (the video fit's defaults: bone-direction weight 3, keypoint
weight 0.1, mask weight 10, full resolution, windows around the person, SH degree 0, 600
steps; about 2 minutes a sequence on 2 CPU cores): MPJPE / PA-MPJPE landmark init -> joint
fit ``default:0`` 79.6 / 65.1 -> 80.6 / 60.4 mm, ``kick:3`` 152.1 / 114.5 -> 140.4 / 106.5,
``spin:4`` 153.5 / 84.6 -> 136.6 / 78.2; refined mask IoU 0.939, 0.895, 0.851.

The refined avatar is also scored in ``--eval_views`` held-out views of each sequence
(re-expressed in the training camera's frame, the video fit's world): novel-view PSNR inside
the person's box, plain and with each frame's body first moved rigidly onto the truth
(``novel_view_aligned_psnr``), and the training view's.

``--oracle=keypoints,masks`` hands the joint fit the true 2D joints and the true masks in place
of MediaPipe's (the initialisation still reads MediaPipe's): the fit's improvement then bounds
what any refinement from image evidence alone can gain over that initialisation.
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

_SEQUENCES = flags.DEFINE_list("sequences", ["default:0", "kick:3", "spin:4"],
                               "Synthetic sequences as name:seed.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", 60, "Frames per sequence.")
_STEPS = flags.DEFINE_integer("steps", -1, "Joint-fit steps (0: initialisation only; -1: "
                              "the video fit's, hsjax.video.VIDEO_SCHEDULE).")
_WARMUP = flags.DEFINE_integer("warmup_steps", -1, "Avatar-only steps (-1: the video fit's).")
_POSE_STEPS = flags.DEFINE_integer("pose_steps", 0, "Steps after the warm-up during which the "
                                   "poses train (0: to the last step; FitConfig.pose_steps).",
                                   lower_bound=0)
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Joint fits run one after another, each after the "
                               "first from a fresh avatar at the poses the one before refined "
                               "(FitConfig.rounds).", lower_bound=1)
_FILL_UNSEEN_AT = flags.DEFINE_integer("fill_unseen_at", -1, "Step at which the unseen sides "
                                       "take the seen side's colour (-1: the video fit's, "
                                       "hsjax.video.VIDEO_FILL_UNSEEN_AT, within the schedule).")
_KEYPOINTS_WEIGHT = flags.DEFINE_float("keypoints_weight", -1.0,
                                       "Weight of the 2D keypoint term (-1: the video default).")
_POSE_PRIOR_WEIGHT = flags.DEFINE_float("pose_prior_weight", -1.0, "Weight of the pose prior "
                                        "in the joint fit (-1: the video default).")
_BONES_WEIGHT = flags.DEFINE_float("bones_weight", -1.0, "Weight of the world landmarks' bone "
                                   "directions in the initialisation (-1: InitConfig's).")
_LOSSES = flags.DEFINE_string("losses", "", "Loss weights over the video fit's, as "
                              "name:weight,... (e.g. anchor_tether:30).")
_PERSON_CROP = flags.DEFINE_bool("person_crop", None, "Fit windows around the person instead "
                                  "of whole frames (FitConfig.person_crop; default: the video "
                                  "fit's, hsjax.video.VIDEO_PERSON_CROP).")
_SH_DEGREE = flags.DEFINE_integer("sh_degree", -1, "SH degree of the avatar's colour (-1: the "
                                  "video fit's, hsjax.video.VIDEO_SH_DEGREE).")
_EVAL_VIEWS = flags.DEFINE_integer("eval_views", 4, "Held-out views rendered with each sequence, "
                                   "in which the refined avatar is scored (0: none).",
                                   lower_bound=0)
_EVAL_STRIDE = flags.DEFINE_integer("eval_stride", 3, "Score the held-out views on every n-th "
                                    "fitted frame.", lower_bound=1)
_ORACLE = flags.DEFINE_list("oracle", [], "Observations the joint fit takes from the truth "
                           "instead of MediaPipe: keypoints (the true joints projected), masks "
                           "(the true masks). The initialisation still reads MediaPipe's: the "
                           "fit then shows how much of its error image evidence can remove.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/video_synthetic", "Where results go.")


def refined_render_iou(avatar, body_model, poses, sequence, config) -> float:
  """Mean IoU of the avatar's silhouette (alpha > 0.5) with the ground-truth masks."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import metrics  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  frames = np.arange(len(sequence))
  renders = evaluation.render_frames(avatar, body_model, poses, sequence.cameras, frames=frames,
                                     background=config.background, backend=config.backend,
                                     tile_capacity=config.tile_capacity)
  return float(np.mean(metrics.mask_iou(renders["alpha"], sequence.gt_masks)))


def main(argv):
  del argv
  import dataclasses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import metrics  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  common.check_oracle_observations(_ORACLE.value)  # before minutes of observing
  ok, reason = video.mediapipe_available()
  if not ok:
    raise common.InputError(reason)
  body_model = body_lib.load_body_model("default")
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  rows = []
  for spec in _SEQUENCES.value:
    name, _, seed = spec.partition(":")
    seq = data.synthetic_sequence(name, seed=int(seed or 0), num_frames=_NUM_FRAMES.value,
                                  num_eval_views=_EVAL_VIEWS.value, num_novel_pose=0,
                                  depth="none")
    frames = np.round(np.asarray(seq.images) * 255).astype(np.uint8)
    t0 = time.perf_counter()
    obs = video.MediaPipeObserver().observe(frames)
    t1 = time.perf_counter()
    cams = video.video_cameras(seq.cameras.width, seq.cameras.height, len(seq),
                               focal=float(np.asarray(seq.cameras.K)[0, 0, 0]))
    init_config = video.InitConfig()
    if _BONES_WEIGHT.value >= 0:
      init_config = dataclasses.replace(init_config, w_bones=_BONES_WEIGHT.value)
    init, keypoints, _ = video.initialise(body_model, obs, cams, init_config)
    t2 = time.perf_counter()
    gt_cam, hmr_cam = common.camera_frame_gt(body_model, seq)
    keep = video.usable_frames(obs)

    def sel(p):
      return body_lib.SMPLParams(betas=p.betas, body_pose=p.body_pose[keep],
                                 global_orient=p.global_orient[keep], transl=p.transl[keep])

    gt_k = sel(gt_cam)
    row = {"sequence": spec, "frames": len(seq), "detected": int(obs.detected.sum()),
           "used": int(keep.sum()), "observe_ms_per_frame": 1000 * (t1 - t0) / len(seq),
           "init_s": t2 - t1,
           "hmr2_like": metrics.pose_metrics(body_model, sel(hmr_cam), gt_k),
           "landmark_init": metrics.pose_metrics(body_model, init, gt_k)}
    gt_masks = np.asarray(seq.masks)[keep]
    row["observed_mask_iou"] = float(np.mean(metrics.mask_iou(obs.masks[keep], gt_masks)))
    steps = video.VIDEO_SCHEDULE[0] if _STEPS.value < 0 else _STEPS.value
    if steps > 0:
      vseq, _ = video.build_sequence(spec, frames, obs, cams, init, keypoints, fps=seq.fps,
                                     gt=gt_k)
      if _ORACLE.value:
        vseq = common.with_true_observations(vseq, body_model, gt_masks, _ORACLE.value)
        row["oracle"] = list(_ORACLE.value)
      weights = dict(video.VIDEO_LOSS_WEIGHTS)
      if _KEYPOINTS_WEIGHT.value >= 0:
        weights["keypoints_2d"] = _KEYPOINTS_WEIGHT.value
      if _POSE_PRIOR_WEIGHT.value >= 0:
        weights["pose_prior"] = _POSE_PRIOR_WEIGHT.value
      weights.update(common.parse_losses(_LOSSES.value))
      given = {"warmup_steps": min(_WARMUP.value, steps)} if _WARMUP.value >= 0 else {}
      if _FILL_UNSEEN_AT.value >= 0:
        given["fill_unseen_at"] = _FILL_UNSEEN_AT.value
      if _PERSON_CROP.value is not None:
        given["person_crop"] = _PERSON_CROP.value
      if _SH_DEGREE.value >= 0:
        given["sh_degree"] = _SH_DEGREE.value
      config = video.video_fit_config(steps=steps, pose_steps=_POSE_STEPS.value,
                                      rounds=_ROUNDS.value, loss_weights=tuple(weights.items()),
                                      progress=False, **given)
      t3 = time.perf_counter()
      result = fit.fit(vseq, config, key=jax.random.key(0), body_model=body_model)
      row["fit_s"] = time.perf_counter() - t3
      row["joint_fit"] = metrics.pose_metrics(body_model, result.poses, gt_k)
      vseq_eval = dataclasses.replace(vseq)
      vseq_eval.gt_masks = gt_masks
      row["mask_iou"] = refined_render_iou(result.avatar, body_model, result.poses, vseq_eval,
                                           config)
      if seq.eval_views:
        scored = dataclasses.replace(vseq, eval_views=common.views_in_camera_frame(seq, keep))
        ev = evaluation.evaluate_run(body_model, scored, result.avatar, result.poses,
                                     background=config.background, use_lpips=False,
                                     frame_stride=_EVAL_STRIDE.value, align_novel_view=True)
        row["train_view_psnr"] = ev["train_view"]["psnr"]
        row["novel_view_psnr"] = ev["novel_view"]["psnr"]
        row["novel_view_aligned_psnr"] = ev["novel_view_aligned"]["psnr"]
      for k in ("mpjpe", "pa_mpjpe"):
        a, b = row["landmark_init"][k], row["joint_fit"][k]
        row[f"{k}_improvement_pct"] = 100.0 * (a - b) / a
    rows.append(row)
    print(json.dumps(row, default=float))
    with open(os.path.join(_OUTPUT_DIR.value, "results.json"), "w") as f:
      json.dump(rows, f, indent=1, default=float)
  print("| sequence | used/frames | init | MPJPE hmr2_like / landmark / fit | PA-MPJPE hmr2_like / "
        "landmark / fit | root error landmark / fit | mask IoU MediaPipe / fit | "
        "novel-view PSNR / aligned |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    fitm = r.get("joint_fit", {})

    def g(d, k):
      return f"{d[k]:.1f}" if k in d else "-"

    print(f"| {r['sequence']} | {r['used']}/{r['frames']} | {r['init_s']:.0f} s | "
          f"{g(r['hmr2_like'], 'mpjpe')} / {g(r['landmark_init'], 'mpjpe')} / {g(fitm, 'mpjpe')} | "
          f"{g(r['hmr2_like'], 'pa_mpjpe')} / {g(r['landmark_init'], 'pa_mpjpe')} / "
          f"{g(fitm, 'pa_mpjpe')} | {g(r['landmark_init'], 'root_error')} / "
          f"{g(fitm, 'root_error')} | {r['observed_mask_iou']:.3f} / "
          f"{r.get('mask_iou', float('nan')):.3f} | "
          f"{r.get('novel_view_psnr', float('nan')):.2f} / "
          f"{r.get('novel_view_aligned_psnr', float('nan')):.2f} |")


if __name__ == "__main__":
  common.run(main)
