r"""Where the landmark initialisation's error lies: depth flips of bones, and what undoing them
would give (calibration clips; the ground truth scores, nothing is fitted on it).

  python experiments/video_init_diagnostics.py --output_dir=runs/video_init_diagnostics

For every ``--sequences`` entry (``name:seed``; default the calibration clips of
``experiments/video_landmark_offsets.py`` and ``InitConfig.w_bones``), MediaPipe observes the
rendered frames and the landmark initialisation is fitted as ``experiments/video.py`` fits it
(the synthetic camera's intrinsics). Then, against the ground truth in the camera frame:

* per bone, the fraction of frames where it points the other way in depth than the truth
  (counted where the truth's bone is at least 0.3 out of the image plane: |d_z| / |d| > 0.3)
  and its mean angle error;
* an oracle that undoes every such flip with the truth's sign (the bone and its subtree
  reflected in depth, parents first) and the root-relative MPJPE / PA-MPJPE before and after:
  the most a search over depth flips could give;
* the initialisation's MPJPE / PA-MPJPE with the world landmarks' directions of
  ``--drop_bones`` left out (``InitConfig.bones``), next to all of them;
* its root-relative error split along the camera's optical axis (depth, which the images show
  only through foreshortening and occlusion) and across it (the image plane), with the mean
  distance of the projected joints to the true ones in pixels.

Prints the tables and writes ``results.json``. About 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()

_SEQUENCES = flags.DEFINE_list("sequences", ["dance_a:1", "punch:2", "jump:5", "spin:6",
                                             "kick:7"], "Synthetic sequences as name:seed.")
_DROP_BONES = flags.DEFINE_list("drop_bones", ["7-10", "8-11", "12-15"],
                                "Bones (parent-child SMPL joints) whose world-landmark "
                                "direction the compared initialisation leaves out.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/video_init_diagnostics",
                                  "Where results go.")
# Bones whose depth flips are counted: the limbs, hands, feet and the neck-head bone.
FLIP_BONES = ((1, 4), (4, 7), (2, 5), (5, 8), (16, 18), (18, 20), (17, 19), (19, 21), (7, 10),
              (8, 11), (20, 22), (21, 23), (12, 15))
OUT_OF_PLANE = 0.3  # |d_z| / |d| above which a bone's depth sign counts


def depth_flips(joints, truth):
  """[T, 24, 3] x2 -> {bone: (flipped fraction, mean angle error in degrees)}."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  out = {}
  for a, b in FLIP_BONES:
    d, g = joints[:, b] - joints[:, a], truth[:, b] - truth[:, a]
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    g = g / np.linalg.norm(g, axis=-1, keepdims=True)
    flipped = (np.abs(g[:, 2]) > OUT_OF_PLANE) & (np.sign(d[:, 2]) != np.sign(g[:, 2]))
    angle = np.degrees(np.arccos(np.clip(np.sum(d * g, -1), -1.0, 1.0)))
    out[f"{a}-{b}"] = (float(flipped.mean()), float(angle.mean()))
  return out


def depth_and_image_plane_error(joints, truth):
  """Root-relative error [T, 24, 3] x2 (camera frame, metres) -> (mean |error along the
  optical axis|, mean |error across it|) in mm, over all joints but the root."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  error = (joints - joints[:, :1]) - (truth - truth[:, :1])
  error = 1000.0 * error[:, 1:]
  along = float(np.mean(np.abs(error[..., 2])))
  return along, float(np.mean(np.linalg.norm(error[..., :2], axis=-1)))


def projected_error_px(joints, truth, cameras):
  """Mean distance in pixels of the projected joints [T, 24, 3] to the true ones (T cameras)."""
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import project_points  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  project = jax.vmap(project_points)
  error = project(cameras, np.asarray(joints))[0] - project(cameras, np.asarray(truth))[0]
  return float(np.mean(np.linalg.norm(np.asarray(error), axis=-1)))


def undo_flips(joints, truth, parents):
  """[T, 24, 3]: ``joints`` with every bone whose depth sign disagrees with ``truth``
  reflected in depth about its parent joint, its subtree following (parents first)."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  fixed = np.array(joints, np.float64)
  subtree = {j: [j] for j in range(24)}
  for j in range(23, 0, -1):  # SMPL joints are ordered parents first
    subtree[int(parents[j])] += subtree[j]
  for b in range(1, 24):
    a = int(parents[b])
    d, g = fixed[:, b] - fixed[:, a], truth[:, b] - truth[:, a]
    flip = ((np.abs(g[:, 2]) / np.linalg.norm(g, axis=-1) > OUT_OF_PLANE)
            & (np.sign(d[:, 2]) != np.sign(g[:, 2])))
    shift = np.zeros_like(d)
    shift[:, 2] = -2.0 * d[:, 2]
    for k in subtree[b]:
      fixed[flip, k] += shift[flip]
  return fixed


def main(argv):
  del argv
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import metrics  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import Camera  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  ok, reason = video.mediapipe_available()
  if not ok:
    raise common.InputError(reason)
  try:
    dropped = {tuple(int(j) for j in b.split("-")) for b in _DROP_BONES.value}
  except ValueError as e:
    raise common.InputError(f"--drop_bones: entries must be parent-child, e.g. 7-10 ({e})")
  full = video.InitConfig()
  unknown = dropped - set(full.bones)
  if unknown:
    raise common.InputError(f"--drop_bones: {sorted(unknown)} are not bones the "
                            f"initialisation uses; valid: {list(full.bones)}")
  fewer = dataclasses.replace(full, bones=tuple(b for b in full.bones if b not in dropped))
  body_model = body_lib.load_body_model("default")
  parents = np.asarray(body_model.parents)

  def root_relative_mpjpe(j, g):
    return float(metrics.mpjpe(jnp.asarray(j), jnp.asarray(g)))

  def pa_mpjpe(j, g):
    return float(metrics.pa_mpjpe(jnp.asarray(j), jnp.asarray(g)))

  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  rows = []
  for spec in _SEQUENCES.value:
    name, _, seed = spec.partition(":")
    seq = data.synthetic_sequence(name, seed=int(seed or 0), num_frames=60, num_eval_views=0,
                                  num_novel_pose=0, depth="none")
    frames = np.round(np.asarray(seq.images) * 255).astype(np.uint8)
    obs = video.MediaPipeObserver().observe(frames)
    cams = video.video_cameras(seq.cameras.width, seq.cameras.height, len(seq),
                               focal=float(np.asarray(seq.cameras.K)[0, 0, 0]))
    keep = video.usable_frames(obs)
    gt_cam, _ = common.camera_frame_gt(body_model, seq)
    _, truth = body_lib.pose_frames_host(body_model, gt_cam)
    truth = truth[keep]
    init, _, _ = video.initialise(body_model, obs, cams, full)
    _, joints = body_lib.pose_frames_host(body_model, init)
    init_fewer, _, _ = video.initialise(body_model, obs, cams, fewer)
    _, joints_fewer = body_lib.pose_frames_host(body_model, init_fewer)
    fixed = undo_flips(joints, truth, parents)
    row = {"sequence": spec, "flips": depth_flips(joints, truth),
           "mpjpe": root_relative_mpjpe(joints, truth), "pa_mpjpe": pa_mpjpe(joints, truth),
           "mpjpe_flips_undone": root_relative_mpjpe(fixed, truth),
           "pa_mpjpe_flips_undone": pa_mpjpe(fixed, truth),
           "mpjpe_fewer_bones": root_relative_mpjpe(joints_fewer, truth),
           "pa_mpjpe_fewer_bones": pa_mpjpe(joints_fewer, truth)}
    row["depth_error_mm"], row["image_plane_error_mm"] = depth_and_image_plane_error(joints, truth)
    kept_cameras = Camera(K=np.asarray(cams.K)[keep], world_to_cam=np.asarray(
        cams.world_to_cam)[keep], width=cams.width, height=cams.height)
    row["projected_error_px"] = projected_error_px(joints, truth, kept_cameras)
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "flips"}), flush=True)
  with open(os.path.join(_OUTPUT_DIR.value, "results.json"), "w") as f:
    json.dump({"drop_bones": sorted(dropped), "rows": rows}, f, indent=1)
  print("\nDepth flips, fraction of frames (mean angle error, degrees):")
  print("| bone | " + " | ".join(r["sequence"] for r in rows) + " |")
  print("|---|" + "---|" * len(rows))
  for bone in rows[0]["flips"]:
    print(f"| {bone} | " + " | ".join(f"{r['flips'][bone][0]:.2f} ({r['flips'][bone][1]:.0f}°)"
                                     for r in rows) + " |")
  print("\nRoot-relative MPJPE / PA-MPJPE (mm):")
  print("| sequence | initialisation | flips undone (oracle) | without "
        f"{', '.join(_DROP_BONES.value)} |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['sequence']} | {r['mpjpe']:.1f} / {r['pa_mpjpe']:.1f} | "
          f"{r['mpjpe_flips_undone']:.1f} / {r['pa_mpjpe_flips_undone']:.1f} "
          f"({100 * (1 - r['mpjpe_flips_undone'] / r['mpjpe']):.0f} %) | "
          f"{r['mpjpe_fewer_bones']:.1f} / {r['pa_mpjpe_fewer_bones']:.1f} |")
  mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mpjpe", "pa_mpjpe",
                                                            "mpjpe_fewer_bones",
                                                            "pa_mpjpe_fewer_bones")}
  print(f"| mean | {mean['mpjpe']:.1f} / {mean['pa_mpjpe']:.1f} | | "
        f"{mean['mpjpe_fewer_bones']:.1f} / {mean['pa_mpjpe_fewer_bones']:.1f} |")
  print("\nThe initialisation's root-relative error along the optical axis (depth) and across it "
        "(image plane), mm, and its projected joints' distance to the true ones, px:")
  print("| sequence | depth | image plane | projected |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['sequence']} | {r['depth_error_mm']:.1f} | {r['image_plane_error_mm']:.1f} | "
          f"{r['projected_error_px']:.1f} |")


if __name__ == "__main__":
  common.run(main)
