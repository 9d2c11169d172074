r"""Calibrates the BlazePose -> SMPL correspondence on synthetic sequences (pixels only).

  python experiments/video_landmark_offsets.py --output_dir=runs/video_landmark_offsets

MediaPipe observes the rendered frames of the *calibration* sequences (``--sequences``:
captured clips and seeds other than the video benchmark's ``default:0, kick:3, spin:4``); the
true SMPL joints projected with the synthetic camera are the targets. For every SMPL joint
the script prints the systematic offset (mean of mapped minus true, in the image, as a
fraction of the person's torso length) and the mean error, with the naive correspondence
and with the fitted one, then writes ``offsets.json`` (per joint, before/after, the fitted
weights) and prints the ``_CALIBRATED`` table that ``hsjax/video/correspondence.py`` holds.

The ridge of :func:`hsjax.video.correspondence.fit_weights` is chosen by leave-one-sequence-
out validation over the calibration sequences; the weights are then fitted on all of them.
``--holdout`` sequences (default: the benchmark's) are observed only to *report* the
correspondence's error where it was not fitted; nothing is chosen on them.

Errors are also given in 3D: BlazePose's world landmarks mapped with the same weights against
the true joints, both relative to the pelvis, in millimetres (the bone directions the
landmark fit uses come from there).

Runtime on 2 busy CPU cores: ~2 minutes for 6 sequences of 60 frames (sequence generation
the first time, then ~5 s of MediaPipe per sequence; observations are cached in
``--output_dir``).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()

_SEQUENCES = flags.DEFINE_list("sequences", ["dance_a:1", "punch:2", "jump:5"],
                               "Calibration sequences (name:seed): the weights are fitted here.")
_HOLDOUT = flags.DEFINE_list("holdout", ["default:0", "kick:3", "spin:4"],
                             "Sequences only reported on (the video benchmark's).")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", 60, "Frames per sequence.")
_RIDGES = flags.DEFINE_list("ridges", ["0.3", "1", "3", "10", "30", "100"],
                            "Candidate ridges (chosen by leave-one-sequence-out).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/video_landmark_offsets",
                                  "Where offsets.json and the cached observations go.")


def observe_sequence(spec: str, num_frames: int, cache_dir: str, body_model):
  """(landmarks [T,33,3] px, world [T,33,3] m, true joints [T,24,2] px, true camera-frame
  joints [T,24,3] m, used [T] bool) of one synthetic sequence's training view."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  name, _, seed = spec.partition(":")
  seq = data.synthetic_sequence(name, seed=int(seed or 0), num_frames=num_frames,
                                num_eval_views=0, num_novel_pose=0, depth="none")
  path = os.path.join(cache_dir, f"observations_{name}_{seed or 0}_{num_frames}.npz")
  if os.path.isfile(path):
    obs = video.load_observations(path)
  else:
    frames = np.round(np.asarray(seq.images) * 255).astype(np.uint8)
    obs = video.MediaPipeObserver().observe(frames)
    obs.save(path)
  _, joints = body_lib.pose_frames_host(body_model, seq.gt)  # [T, 24, 3] world
  w2c = np.asarray(seq.cameras.world_to_cam, np.float64)
  k = np.asarray(seq.cameras.K, np.float64)
  cam = np.einsum("tij,tkj->tki", w2c[:, :3, :3], joints) + w2c[:, None, :3, 3]
  uvw = np.einsum("tij,tkj->tki", k, cam)
  uv = uvw[..., :2] / uvw[..., 2:3]
  return obs.landmarks, obs.world_landmarks, uv, cam, video.usable_frames(obs)


def torso_length(landmarks):
  """[N] the sequence's median distance from the hips' midpoint to the shoulders' midpoint
  (pixels). A per-frame length would shrink to nothing when the torso leans towards the camera
  and blow that frame's residuals up; the synthetic person stays at about one distance."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  hips = 0.5 * (landmarks[:, 23, :2] + landmarks[:, 24, :2])
  shoulders = 0.5 * (landmarks[:, 11, :2] + landmarks[:, 12, :2])
  return np.full(len(landmarks), np.median(np.linalg.norm(shoulders - hips, axis=-1)))


# Left <-> right: BlazePose landmark and SMPL joint permutations of a mirror image.
_LANDMARK_MIRROR = (0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19,
                    22, 21, 24, 23, 26, 25, 28, 27, 30, 29, 32, 31)
_JOINT_MIRROR = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20,
                 23, 22)


def mirrored(data_):
  """The samples' mirror images (x negated, left and right swapped): fitting on both makes
  the weights left-right symmetric, as the body is, instead of following one clip's
  asymmetries."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  lm, world, uv, cam, scale = data_
  flip = np.array([-1.0, 1.0, 1.0], np.float32)
  lm_m = lm[:, _LANDMARK_MIRROR] * flip
  uv_m = uv[:, _JOINT_MIRROR] * flip[:2]
  return (lm_m, world[:, _LANDMARK_MIRROR] * flip, uv_m, cam[:, _JOINT_MIRROR] * flip, scale)


def errors(weights, data_):
  """Per joint: mean offset [24, 2] and mean error [24] (torso lengths), 2D error [24]
  pixels, and root-relative 3D error [24] mm, over the given samples."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.video import correspondence  # pylint: disable=g-import-not-at-top,import-outside-toplevel  # noqa: E501
  lm, world, uv, cam, scale = data_
  pred = correspondence.smpl_keypoints(lm, weights)[..., :2]
  scale = scale[:, None, None]
  d = (pred - uv) / scale
  pred3 = correspondence.smpl_world_joints(world, weights)
  pred3 = pred3 - pred3[:, :1]
  true3 = cam - cam[:, :1]
  return {"offset": d.mean(0), "error": np.linalg.norm(d, axis=-1).mean(0),
          "error_px": np.linalg.norm(pred - uv, axis=-1).mean(0),
          "error_3d_mm": 1000 * np.linalg.norm(pred3 - true3, axis=-1).mean(0)}


def fit(data_, ridge):
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.video import correspondence  # pylint: disable=g-import-not-at-top,import-outside-toplevel  # noqa: E501
  lm, _, uv, _, scale = concat([data_, mirrored(data_)])
  scale = scale[:, None, None]
  centre = 0.5 * (lm[:, 23:24, :2] + lm[:, 24:25, :2])
  return correspondence.fit_weights((lm[..., :2] - centre) / scale, (uv - centre) / scale,
                                    np.ones(len(lm)), ridge=ridge)


def concat(parts):
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  return tuple(np.concatenate([p[i] for p in parts]) for i in range(5))


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.video import correspondence  # pylint: disable=g-import-not-at-top,import-outside-toplevel  # noqa: E501
  ok, reason = video.mediapipe_available()
  if not ok:
    raise common.InputError(reason)
  overlap = ({s.partition(":")[0].replace("default", "dance_b") for s in _SEQUENCES.value}
             & {s.partition(":")[0].replace("default", "dance_b") for s in _HOLDOUT.value})
  if overlap:
    raise common.InputError(f"--sequences and --holdout share clip(s) {sorted(overlap)}: "
                            "calibrate on other clips than those reported on")
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  body_model = body_lib.load_body_model("default")
  per_seq = {}
  for spec in list(_SEQUENCES.value) + list(_HOLDOUT.value):
    lm, world, uv, cam, used = observe_sequence(spec, _NUM_FRAMES.value, _OUTPUT_DIR.value,
                                                body_model)
    per_seq[spec] = (lm[used], world[used], uv[used], cam[used], torso_length(lm[used]))
    print(f"{spec}: {int(used.sum())}/{len(used)} frames usable")
  calib = list(_SEQUENCES.value)
  ridges = [float(r) for r in _RIDGES.value]
  # Leave one calibration sequence out: fit on the others, score on it.
  cv = {}
  for r in ridges:
    errs = []
    for held in calib:
      w = fit(concat([per_seq[s] for s in calib if s != held]), r)
      errs.append(float(errors(w, per_seq[held])["error"].mean()))
    cv[r] = float(np.mean(errs))
  ridge = min(cv, key=cv.get)
  print("leave-one-sequence-out mean joint error (torso lengths) by ridge: "
        + ", ".join(f"{r:g}: {e:.4f}" for r, e in cv.items()) + f" -> ridge {ridge:g}")
  weights = fit(concat([per_seq[s] for s in calib]), ridge)

  report = {"calibration": calib, "holdout": list(_HOLDOUT.value), "ridge": ridge,
            "ridge_validation": {str(k): v for k, v in cv.items()}, "sets": {}}
  names = ("pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle",
           "r_ankle", "spine3", "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head",
           "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hand",
           "r_hand")
  for label, specs in (("calibration (fitted here)", calib),
                       ("holdout (not fitted here)", list(_HOLDOUT.value))):
    if not specs:
      continue
    d = concat([per_seq[s] for s in specs])
    before, after = errors(correspondence.NAIVE_WEIGHTS, d), errors(weights, d)
    print(f"\n{label}: {', '.join(specs)} ({len(d[0])} frames)")
    print("| joint | offset naive (x, y) | error naive | error fitted | px naive / fitted "
          "| 3D mm naive / fitted |")
    print("|---|---|---|---|---|---|")
    for j in range(24):
      print(f"| {j} {names[j]} | ({before['offset'][j, 0]:+.3f}, {before['offset'][j, 1]:+.3f}) "
            f"| {before['error'][j]:.3f} | {after['error'][j]:.3f} | "
            f"{before['error_px'][j]:.1f} / {after['error_px'][j]:.1f} | "
            f"{before['error_3d_mm'][j]:.0f} / {after['error_3d_mm'][j]:.0f} |")
    print(f"| mean | | {before['error'].mean():.3f} | {after['error'].mean():.3f} | "
          f"{before['error_px'].mean():.1f} / {after['error_px'].mean():.1f} | "
          f"{before['error_3d_mm'].mean():.0f} / {after['error_3d_mm'].mean():.0f} |")
    report["sets"][label.split()[0]] = {
        "sequences": specs, "frames": len(d[0]),
        "naive": {k: v.tolist() for k, v in before.items()},
        "fitted": {k: v.tolist() for k, v in after.items()}}
  table = {}
  for j, (support, _) in correspondence.SUPPORT.items():
    row = {n: round(float(weights[j, video.LANDMARK_NAMES.index(n)]), 4) for n in support}
    row[support[0]] = round(1.0 - sum(v for n, v in row.items() if n != support[0]), 4)
    table[j] = row  # rounded, and still summing to 1
  report["weights"] = {str(j): row for j, row in table.items()}
  with open(os.path.join(_OUTPUT_DIR.value, "offsets.json"), "w") as f:
    json.dump(report, f, indent=1)
  print("\n_CALIBRATED = {")
  for j, row in table.items():
    print(f"    {j}: {row!r},")
  print("}")


if __name__ == "__main__":
  common.run(main)
