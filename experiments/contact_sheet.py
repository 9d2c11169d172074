r"""Contact sheet of a synthetic sequence: frames, masks, depth, GT and simulated-HMR meshes.

Rows (columns are frames ``--frames``): the training-view images; the masks; the metric depth
(near = bright, turbo-like colour ramp, invalid = black); the ground-truth mesh (green) and the
simulated HMR mesh (red) overlaid on the image; then one row per held-out view; and the
novel-pose frames. The initial HMR errors (MPJPE, PA-MPJPE, root error) are printed.

Usage (about 30-60 s on 2 CPU cores the first time; the sequence is then cached)::

  python3 experiments/contact_sheet.py --out=docs/contact_sheet.png

Expected output for the default sequence (seed 0, ``hmr2_like``): MPJPE 77.1 mm, PA-MPJPE
53.4 mm, root error 219.9 mm.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
import imageio.v3 as iio
import jax
import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.data import HMR_NOISE_PRESETS, render_mesh, synthetic_sequence
from hsjax.data.synthetic import smooth_normals
from hsjax import metrics

_NAME = flags.DEFINE_string("name", "default", "Synthetic sequence name.")
_SEED = flags.DEFINE_integer("seed", 0, "Sequence seed.")
_NOISE = flags.DEFINE_enum("hmr_noise", "hmr2_like", sorted(HMR_NOISE_PRESETS),
                           "HMR noise preset.")
_FRAMES = flags.DEFINE_list("frames", ["0", "15", "30", "45", "59"], "Frames to show.")
_OUT = flags.DEFINE_string("out", "docs/contact_sheet.png", "Output PNG.")


def _depth_color(depth: np.ndarray) -> np.ndarray:
  """[H, W] metres -> [H, W, 3]: a blue-to-yellow ramp over the valid range, black invalid."""
  valid = depth > 0
  if not valid.any():
    return np.zeros((*depth.shape, 3), np.float32)
  lo, hi = depth[valid].min(), depth[valid].max()
  x = np.clip((hi - depth) / max(hi - lo, 1e-6), 0, 1)  # near = 1
  ramp = np.stack([x, 0.2 + 0.6 * np.sin(np.pi * x), 1.0 - x], -1)
  return np.where(valid[..., None], ramp, 0.0).astype(np.float32)


def _overlay(image, model, params, t, camera, color, alpha=0.55):
  out = body_lib.body_forward(model, params.betas, params.body_pose[t], params.global_orient[t],
                              params.transl[t])
  verts = np.asarray(out.vertices)
  normals = smooth_normals(verts, np.asarray(model.faces))
  rgb, mask, _ = render_mesh(verts, np.asarray(model.faces), camera,
                             vertex_colors=np.broadcast_to(color, verts.shape), normals=normals,
                             background=(0.0, 0.0, 0.0), ambient=0.4)
  # On a black background the anti-aliased render is already colour x coverage.
  return image * (1 - alpha * mask[..., None]) + alpha * rgb


def _camera(seq, t):
  return Camera(K=np.asarray(seq.cameras.K[t]), world_to_cam=np.asarray(
      seq.cameras.world_to_cam[t]), width=seq.cameras.width, height=seq.cameras.height)


def main(argv):
  del argv
  seq = synthetic_sequence(_NAME.value, seed=_SEED.value, hmr_noise=_NOISE.value)
  model = body_lib.load_body_model()
  frames = [int(f) for f in _FRAMES.value]
  gt_j = body_lib.pose_frames_host(model, seq.gt)[1]
  hmr_j = body_lib.pose_frames_host(model, seq.hmr)[1]
  errors = {"mpjpe_mm": metrics.mpjpe(hmr_j, gt_j), "pa_mpjpe_mm": metrics.pa_mpjpe(hmr_j, gt_j),
            "root_error_mm": metrics.root_error(hmr_j, gt_j)}
  print(json.dumps({"sequence": seq.name, "seed": _SEED.value, "hmr_noise": _NOISE.value,
                    **{k: round(v, 1) for k, v in errors.items()}}))

  rows = []
  rows.append([np.asarray(seq.images[t]) for t in frames])
  rows.append([np.repeat(np.asarray(seq.masks[t])[..., None], 3, -1) for t in frames])
  rows.append([_depth_color(np.asarray(seq.depth[t])) for t in frames])
  overlay = []
  for t in frames:
    img = np.asarray(seq.images[t]) * 0.6
    img = _overlay(img, model, seq.gt, t, _camera(seq, t), (0.1, 0.9, 0.2))
    img = _overlay(img, model, seq.hmr, t, _camera(seq, t), (0.95, 0.15, 0.1))
    overlay.append(img)
  rows.append(overlay)
  for view in seq.eval_views:
    rows.append([np.asarray(view.images[t]) for t in frames])
  if seq.novel_pose is not None:
    n = len(seq.novel_pose)
    picks = np.linspace(0, n - 1, len(frames)).round().astype(int)
    rows.append([np.asarray(seq.novel_pose.images[t]) for t in picks])
  sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  iio.imwrite(_OUT.value, np.round(np.clip(sheet, 0, 1) * 255).astype(np.uint8))
  print(f"wrote {_OUT.value} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
  jax.config.parse_flags_with_absl()
  app.run(main)
