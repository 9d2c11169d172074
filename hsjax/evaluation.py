"""Evaluation of a fitted run: pose accuracy, and image quality on training, novel views and
novel poses.

:func:`evaluate_run` takes the fitted avatar and the per-frame poses of a sequence and returns a
JSON-friendly dict. What is measured, and how (the *protocol*, also stored in the result under
``"protocol"``):

* **Pose** (when the sequence has ground truth): :func:`hsjax.metrics.pose_metrics` of the HMR
  initialisation and of the refined poses against the ground truth (MPJPE, PA-MPJPE, PVE, V2V,
  root error, W-MPJPE, acceleration error; mm), and the relative improvement in percent,
  ``100 (hmr - refined) / hmr``. Per-frame MPJPE / PA-MPJPE / root error are kept for plots.
* **Novel view** (``sequence.eval_views``): held-out cameras that watched the same frames.
  The avatar is posed with the *given* poses of each frame (the refined ones for a joint fit,
  the HMR ones for the fixed-pose baseline) and rendered from each held-out camera, so
  errors of the global pose and translation show up as they would to a viewer.
* **Novel view, aligned** (``align_novel_view=True``, with ground truth): the same held-out
  views with each frame's body first moved rigidly onto the true joints
  (:func:`rigidly_aligned_poses`), so that only the avatar and the articulated pose are
  scored, not where the fit placed the body (to the novel view what PA-MPJPE is to MPJPE).
* **Novel pose** (``sequence.novel_pose``): frames of an unseen motion. The avatar is posed
  with that sequence's ground-truth ``body_pose``, ``global_orient`` and ``transl`` (its HMR
  estimates when it has no ground truth) and the *fitted* ``betas``: the canonical Gaussians
  were learned together with the fitted shape, so the pair is the subject model being tested,
  while taking the poses from the ground truth keeps pose-estimation error out of a number
  meant to measure how the avatar animates. (On the synthetic benchmark the fitted betas are
  the HMR betas unless the fit trains them; their residual shape error is part of the score.)
* **Training view**: the training frames re-rendered with the given poses (fit quality, not
  generalisation).
* **Drift** (:func:`gaussian_drift`): how far the avatar's Gaussians have left the body — the
  distance of each active Gaussian's centre from the nearest vertex of the posed body mesh,
  with the given poses, over the evaluated frames (mean, 95th percentile, share beyond 5 cm;
  mm / %). An avatar sampled on the surface measures about 7 mm (from inside a face to its
  nearest vertex); the growth beyond that is the drift.

Image metrics compare the render with the target image composited over the same background
as the render (``image · mask + background · (1 - mask)``, with the sequence's person mask),
since the avatar models the person and not the scene. Each is computed three ways, per image,
then averaged over images:

* ``psnr`` / ``ssim``: **inside the person's bounding box** (from the target mask, grown by
  ``bbox_margin`` pixels): the masked PSNR (MSE over the box) and the masked SSIM (the SSIM map
  averaged over the box). **These are the numbers the results tables use** (the convention of
  GauHuman / InstantAvatar, which crop to the box so that the empty background does not
  inflate the scores);
* ``psnr_mask`` / ``ssim_mask``: over the person mask only;
* ``psnr_full`` / ``ssim_full``: the whole frame.

LPIPS (AlexNet, on the bounding-box crop) is reported only when
:func:`hsjax.metrics.lpips_available` finds the package and its weights; otherwise the value
is ``None`` and ``"lpips_unavailable"`` gives the reason. No substitute number is produced.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import camel
from hsjax import forward
from hsjax import metrics
from hsjax.camera import Camera
from hsjax.rendering import DEFAULT_TILE_CAPACITY

# Image-metric keys of a summary, in table order.
IMAGE_METRICS = ("psnr", "ssim", "lpips", "psnr_mask", "ssim_mask", "psnr_full", "ssim_full")
# Pose-metric keys in table order (those pose_metrics returns).
POSE_METRICS = ("mpjpe", "pa_mpjpe", "pve", "v2v", "root_error", "w_mpjpe", "accel_error",
                "accel_error_aligned")

PROTOCOL = {
    "pose": "hsjax.metrics.pose_metrics vs ground truth, mm; improvement_pct = "
            "100 (hmr - refined) / hmr",
    "images": "targets composited over the render background with the person mask; "
              "per-image metrics averaged over images",
    "table_psnr_ssim": "psnr / ssim = masked metrics inside the target mask's bounding box "
                       "(grown by bbox_margin px); *_mask = person mask; *_full = whole frame",
    "novel_view": "held-out cameras of the training frames, avatar posed with the evaluated "
                  "poses (refined, or HMR for the fixed-pose baseline)",
    "novel_pose": "unseen motion, avatar posed with that sequence's ground-truth pose and "
                  "translation (HMR when no ground truth) and the fitted betas",
    "novel_view_aligned": "as novel_view, each frame's body first moved rigidly (rotation and "
                          "translation, no scale) onto the ground-truth joints; only with "
                          "align_novel_view",
    "lpips": "AlexNet LPIPS on the bounding-box crop, only when the package and weights are "
             "present; otherwise null with the reason",
    "drift": "distance of active Gaussian centres from the nearest posed body vertex, with the "
             "evaluated poses, over the evaluated frames; mm",
}

# Drift beyond this distance (metres) counts as having left the body.
DRIFT_FAR = 0.05


# ------------------------------------------------------------------------------------------
# Rendering


@functools.partial(jax.jit, static_argnames=("width", "height", "settings"))
def _render_posed(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                  pose: body_lib.SMPLParams, k: jax.Array, world_to_cam: jax.Array, *,
                  width: int, height: int, settings: forward.RenderSettings):
  gaussians = forward.deform_frame(avatar, body_model, pose).gaussians
  camera = Camera(K=k, world_to_cam=world_to_cam, width=width, height=height)
  out = forward.render_frame(gaussians, camera, settings)
  return out.rgb, out.alpha, out.depth, out.overflow


def render_frames(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                  poses: body_lib.SMPLParams, cameras: Camera, *, frames=None,
                  background=(0.0, 0.0, 0.0), backend: str = "auto",
                  tile_capacity: int = DEFAULT_TILE_CAPACITY, progress: bool = False,
                  desc: str = "render") -> dict[str, np.ndarray]:
  """Renders the avatar in the given poses, one camera per frame.

  Args:
    avatar: the fitted avatar.
    body_model: the body model it was fitted with.
    poses: ``betas [B]``, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``,
      ``transl [T, 3]`` (world frame).
    cameras: ``K [T, 3, 3]`` / ``world_to_cam [T, 4, 4]`` (or unbatched: the same camera for
      every frame).
    frames: indices of the frames to render (default all T).
    background: RGB behind the avatar.
    backend, tile_capacity: the rasteriser's (see :func:`hsjax.rendering.render`).
    progress: show a progress bar.
    desc: its label.

  Returns:
    numpy ``rgb [F, H, W, 3]``, ``alpha [F, H, W]``, ``depth [F, H, W]`` (metres),
    ``overflow [F]`` and ``frames [F]`` for the F rendered frames.
  """
  num_frames = int(np.asarray(poses.body_pose).shape[0])
  frames = np.arange(num_frames) if frames is None else np.asarray(frames, np.int64)
  settings = forward.RenderSettings(background=tuple(float(c) for c in np.asarray(background)),
                                    backend=backend, tile_capacity=tile_capacity)
  out = {"rgb": [], "alpha": [], "depth": [], "overflow": []}
  bar = tqdm.tqdm(frames, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
  for _, pose, k, w2c in forward.frames_on_host(poses, cameras, bar):
    rgb, alpha, depth, overflow = _render_posed(
        avatar, body_model, pose, k, w2c, width=cameras.width, height=cameras.height,
        settings=settings)
    for name, value in (("rgb", rgb), ("alpha", alpha), ("depth", depth),
                        ("overflow", overflow)):
      out[name].append(np.asarray(value))
  result = {k: np.stack(v) for k, v in out.items()}
  result["frames"] = frames
  return result


# ------------------------------------------------------------------------------------------
# Image metrics


def composite_target(image: np.ndarray, mask: np.ndarray, background) -> np.ndarray:
  """``image · mask + background · (1 - mask)``: [..., H, W, 3], [..., H, W] -> [..., H, W, 3]."""
  m = np.asarray(mask, np.float32)[..., None]
  bg = np.asarray(background, np.float32)
  return np.asarray(image, np.float32) * m + bg * (1.0 - m)


def bbox_mask(mask: np.ndarray, margin: int = 8, threshold: float = 0.5) -> np.ndarray:
  """[H, W] 0/1 float mask of the bounding box of ``mask > threshold``, grown by ``margin``
  pixels and clipped to the image; all ones when the mask is empty (nothing to crop to)."""
  mask = np.asarray(mask)
  ys, xs = np.nonzero(mask > threshold)
  out = np.zeros(mask.shape, np.float32)
  if len(ys) == 0:
    out[:] = 1.0
    return out
  h, w = mask.shape
  y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + 1 + margin, h)
  x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + 1 + margin, w)
  out[y0:y1, x0:x1] = 1.0
  return out


def bbox_slices(box: np.ndarray) -> tuple[slice, slice]:
  """Row and column slices of a rectangular 0/1 mask from :func:`bbox_mask`."""
  rows = np.flatnonzero(box.any(axis=1))
  cols = np.flatnonzero(box.any(axis=0))
  return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


@jax.jit
def _image_metrics(pred: jax.Array, target: jax.Array, mask: jax.Array, box: jax.Array
                   ) -> dict[str, jax.Array]:
  return {
      "psnr": metrics.psnr(pred, target, box),
      "ssim": metrics.ssim(pred, target, box),
      "psnr_mask": metrics.psnr(pred, target, mask),
      "ssim_mask": metrics.ssim(pred, target, mask),
      "psnr_full": metrics.psnr(pred, target),
      "ssim_full": metrics.ssim(pred, target),
  }


def image_metrics(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, *,
                  bbox_margin: int = 8, with_lpips: bool = False) -> dict[str, float]:
  """Metrics of one image (see the module docstring for the three variants).

  Args:
    pred: [H, W, 3] render in [0, 1].
    target: [H, W, 3] target in [0, 1], already over the render's background.
    mask: [H, W] target person mask in [0, 1].
    bbox_margin: pixels added around the mask's bounding box.
    with_lpips: also compute LPIPS on the box crop (the caller checks availability).

  Returns:
    dict with ``psnr``, ``ssim`` (bounding box), ``psnr_mask``, ``ssim_mask`` (person
    mask), ``psnr_full``, ``ssim_full`` (whole frame) and, when asked, ``lpips``.
  """
  box = bbox_mask(mask, bbox_margin)
  person = (np.asarray(mask) > 0.5).astype(np.float32)
  values = _image_metrics(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32),
                          jnp.asarray(person), jnp.asarray(box))
  out = {k: float(v) for k, v in values.items()}
  if with_lpips:
    rows, cols = bbox_slices(box)
    out["lpips"] = metrics.lpips(np.asarray(pred)[rows, cols], np.asarray(target)[rows, cols])
  return out


def summarize(per_image: list[dict[str, float]], lpips_reason: str | None,
              overflow: int = 0) -> dict[str, Any]:
  """Mean of per-image metric dicts; ``lpips`` is None (with the reason) when unavailable."""
  summary: dict[str, Any] = {"num_images": len(per_image), "overflow": int(overflow)}
  for key in IMAGE_METRICS:
    values = [m[key] for m in per_image if key in m]
    summary[key] = float(np.mean(values)) if values else None
  if lpips_reason:
    summary["lpips_unavailable"] = lpips_reason
  return summary


def evaluate_images(avatar, body_model, poses: body_lib.SMPLParams, cameras: Camera,
                    images, masks, *, frames=None, background=(0.0, 0.0, 0.0),
                    bbox_margin: int = 8, backend: str = "auto",
                    tile_capacity: int = DEFAULT_TILE_CAPACITY,
                    use_lpips: bool = True, progress: bool = False, desc: str = "evaluate"
                    ) -> dict[str, Any]:
  """Renders ``frames`` and scores them against ``images`` / ``masks`` (arrays or lazy frames).

  Returns:
    :func:`summarize`'s dict plus ``per_frame``: {metric: [F] list} and ``frames``.
  """
  lpips_ok, lpips_reason = metrics.lpips_available() if use_lpips else (
      False, "disabled by the caller")
  renders = render_frames(avatar, body_model, poses, cameras, frames=frames,
                          background=background, backend=backend, tile_capacity=tile_capacity,
                          progress=progress, desc=desc)
  per_image = []
  for i, t in enumerate(renders["frames"]):
    mask = np.asarray(masks[int(t)], np.float32)
    target = composite_target(np.asarray(images[int(t)], np.float32), mask, background)
    per_image.append(image_metrics(renders["rgb"][i], target, mask, bbox_margin=bbox_margin,
                                   with_lpips=lpips_ok))
  summary = summarize(per_image, None if lpips_ok else lpips_reason,
                      int(renders["overflow"].sum()))
  summary["frames"] = [int(t) for t in renders["frames"]]
  summary["per_frame"] = {k: [m[k] for m in per_image] for k in per_image[0]} if per_image else {}
  return summary


# ------------------------------------------------------------------------------------------
# Pose metrics


@jax.jit
def _drift_distances(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                     pose: body_lib.SMPLParams) -> jax.Array:
  """[N] distance (m) of each posed centre from the nearest posed body vertex, one frame."""
  gaussians = forward.deform_frame(avatar, body_model, pose).gaussians
  body = forward.pose_frames(body_model, pose)
  _, sq = camel.nearest_points(gaussians.means, body.vertices, chunk=256)
  return jnp.sqrt(sq)


def gaussian_drift(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                   poses: body_lib.SMPLParams, frames=None) -> dict[str, float]:
  """How far the active Gaussians sit from the posed body (see the module docstring).

  Args:
    avatar: the fitted avatar.
    poses: T frames of poses.
    frames: the frame indices to measure (default: all).

  Returns:
    ``{"mean_mm", "p95_mm", "beyond_5cm_pct", "num_frames"}``.
  """
  poses = _as_params(poses)
  frames = np.arange(poses.body_pose.shape[0]) if frames is None else np.asarray(frames)
  active = np.asarray(avatar.active)
  dist = np.concatenate([
      np.asarray(_drift_distances(avatar, body_model, poses.select(t)))[active]
      for t in frames])
  return {"mean_mm": float(1000.0 * dist.mean()),
          "p95_mm": float(1000.0 * np.percentile(dist, 95)),
          "beyond_5cm_pct": float(100.0 * np.mean(dist > DRIFT_FAR)),
          "num_frames": int(len(frames))}


def _as_params(p: body_lib.SMPLParams) -> body_lib.SMPLParams:
  return body_lib.SMPLParams(betas=jnp.asarray(p.betas, jnp.float32),
                             body_pose=jnp.asarray(p.body_pose, jnp.float32),
                             global_orient=jnp.asarray(p.global_orient, jnp.float32),
                             transl=jnp.asarray(p.transl, jnp.float32))


def improvement_pct(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
  """``100 (before - after) / before`` per shared key (positive = the error went down)."""
  return {k: 100.0 * (before[k] - after[k]) / before[k] for k in before
          if k in after and before[k] not in (0.0, None)}


def evaluate_poses(body_model: body_lib.BodyModel, hmr: body_lib.SMPLParams,
                   refined: body_lib.SMPLParams, gt: body_lib.SMPLParams) -> dict[str, Any]:
  """Pose metrics of the HMR initialisation and of the refined poses against ``gt``.

  Returns:
    ``{"hmr": {...}, "refined": {...}, "improvement_pct": {...}, "per_frame": {"hmr":
    {"mpjpe": [T], "pa_mpjpe": [T], "root_error": [T]}, "refined": {...}}}`` (mm).
  """
  hmr, refined, gt = _as_params(hmr), _as_params(refined), _as_params(gt)
  before = metrics.pose_metrics(body_model, hmr, gt)
  after = metrics.pose_metrics(body_model, refined, gt)
  per_frame = {name: {k: v.tolist() for k, v in
                      metrics.per_frame_pose_errors(body_model, p, gt).items()}
               for name, p in (("hmr", hmr), ("refined", refined))}
  return {"hmr": before, "refined": after, "improvement_pct": improvement_pct(before, after),
          "per_frame": per_frame}


def rigidly_aligned_poses(body_model: body_lib.BodyModel, poses: body_lib.SMPLParams,
                          gt: body_lib.SMPLParams) -> body_lib.SMPLParams:
  """``poses`` with each frame's body moved rigidly onto the ground truth.

  Per frame, the rotation and translation (no scale; :func:`hsjax.metrics.rigid_transform`)
  that best map the posed joints onto the true joints are applied to the root: articulated
  pose, shape and avatar are unchanged, the error of the global placement is gone (as
  PA-MPJPE is to MPJPE, without its scale). Rendering a held-out view with these poses
  measures the avatar and the articulated pose apart from where the fit put the body.
  """
  _, joints = body_lib.pose_frames_host(body_model, poses)
  _, true_joints = body_lib.pose_frames_host(body_model, gt)
  transforms = np.asarray(metrics.rigid_transform(jnp.asarray(joints),
                                                  jnp.asarray(true_joints)))
  return body_lib.transform_params(body_model, poses, transforms)


# ------------------------------------------------------------------------------------------
# A whole run


def evaluate_run(body_model: body_lib.BodyModel, sequence, avatar: avatar_lib.Avatar,
                 poses: body_lib.SMPLParams, *, background=(0.0, 0.0, 0.0),
                 frame_stride: int = 1, bbox_margin: int = 8, backend: str = "auto",
                 tile_capacity: int = DEFAULT_TILE_CAPACITY, use_lpips: bool = True,
                 train_view: bool = True, align_novel_view: bool = False,
                 progress: bool = False) -> dict[str, Any]:
  """Evaluates a fitted avatar and its poses on a sequence (protocol: module docstring).

  Args:
    body_model: the body model of the fit.
    sequence: the ``hsjax.data.Sequence`` that was fitted (its ``hmr``, ``gt``,
      ``eval_views`` and ``novel_pose`` are used when present).
    avatar: the fitted :class:`hsjax.avatar.Avatar`.
    poses: the poses to evaluate, T frames (refined, or the HMR ones for the baseline).
    background: the render background (the fit's), RGB.
    frame_stride: evaluate images on every ``frame_stride``-th frame (pose metrics always
      use every frame).
    bbox_margin: pixels around the person's bounding box for the table metrics.
    backend, tile_capacity: the rasteriser's.
    use_lpips: compute LPIPS when available.
    train_view: also score the training view.
    align_novel_view: also score the held-out views with the poses moved rigidly onto the
      ground truth (:func:`rigidly_aligned_poses`; needs ``sequence.gt``), under
      ``"novel_view_aligned"``: the avatar and articulated pose apart from global placement.
    progress: show progress bars.

  Returns:
    JSON-friendly dict: ``"pose"`` (when ``sequence.gt`` exists; see :func:`evaluate_poses`),
    ``"novel_view"`` (summary over all held-out views, and ``"views"``: one summary per view),
    ``"novel_pose"``, ``"train_view"`` (each when applicable), ``"drift"``
    (:func:`gaussian_drift` over the evaluated frames), ``"lpips"``
    (``{"available", "reason"}``) and ``"protocol"``.

  Raises:
    ValueError: when ``poses`` does not have the sequence's frame count.
  """
  num_frames = len(sequence)
  found = int(np.asarray(poses.body_pose).shape[0])
  if found != num_frames:
    raise ValueError(f"evaluate_run: poses have {found} frames (body_pose "
                     f"{list(np.asarray(poses.body_pose).shape)}), the sequence "
                     f"'{sequence.name}' has {num_frames}")
  if frame_stride < 1:
    raise ValueError(f"evaluate_run: frame_stride must be >= 1, found {frame_stride}")
  lpips_ok, lpips_reason = metrics.lpips_available() if use_lpips else (
      False, "disabled by the caller")
  result: dict[str, Any] = {"sequence": sequence.name, "num_frames": num_frames,
                            "frame_stride": frame_stride, "bbox_margin": bbox_margin,
                            "lpips": {"available": lpips_ok, "reason": lpips_reason},
                            "protocol": dict(PROTOCOL)}
  common = dict(background=background, bbox_margin=bbox_margin, backend=backend,
                tile_capacity=tile_capacity, use_lpips=use_lpips, progress=progress)
  frames = np.arange(0, num_frames, frame_stride)
  if sequence.gt is not None:
    result["pose"] = evaluate_poses(body_model, sequence.hmr, poses, sequence.gt)
  result["drift"] = gaussian_drift(avatar, body_model, poses, frames)
  if train_view:
    result["train_view"] = evaluate_images(avatar, body_model, poses, sequence.cameras,
                                           sequence.images, sequence.masks, frames=frames,
                                           desc="train view", **common)
  if sequence.eval_views:
    reason = None if lpips_ok else lpips_reason

    def held_out_views(evaluated_poses, label):
      """Every held-out view scored with ``evaluated_poses``: the merged summary."""
      views = []
      for i, view in enumerate(sequence.eval_views):
        summary = evaluate_images(avatar, body_model, evaluated_poses, view.cameras,
                                  view.images, view.masks, frames=frames,
                                  desc=f"{label} {i}", **common)
        summary["name"] = view.name
        views.append(summary)
      merged = [{k: v[j] for k, v in s["per_frame"].items()} for s in views
                for j in range(s["num_images"])]
      return {**summarize(merged, reason, sum(s["overflow"] for s in views)), "views": views}

    result["novel_view"] = held_out_views(poses, "novel view")
    if align_novel_view and sequence.gt is not None:
      result["novel_view_aligned"] = held_out_views(
          rigidly_aligned_poses(body_model, poses, sequence.gt), "aligned novel view")
  if sequence.novel_pose is not None:
    novel = sequence.novel_pose
    source = novel.gt if novel.gt is not None else novel.hmr
    novel_poses = body_lib.SMPLParams(betas=np.asarray(poses.betas),
                                      body_pose=np.asarray(source.body_pose),
                                      global_orient=np.asarray(source.global_orient),
                                      transl=np.asarray(source.transl))
    result["novel_pose"] = evaluate_images(avatar, body_model, novel_poses, novel.cameras,
                                           novel.images, novel.masks, desc="novel pose",
                                           **common)
    result["novel_pose"]["pose_source"] = "gt" if novel.gt is not None else "hmr"
  return result
