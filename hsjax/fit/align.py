"""Depth-aligned initial translation: HMR's root depth corrected with the observed depth.

A monocular HMR network gets the distance of the person wrong far more than anything else
(the scale–depth ambiguity: a body 10 % too far looks 10 % too small, which a slightly wrong
shape or focal length explains as well). When the sequence has *metric* depth, that error
can be measured before the fit: pose the HMR body, find the depth of its visible surface at
each pixel, and compare with the observed depth over the person's pixels. Each frame's body
is then slid along the camera ray through its pelvis by the median difference, which keeps
its 2D projection (the root's exactly, the rest to first order) and its articulation.

Without this the fit has to remove the error by gradient descent against the image terms,
which the avatar, trained during the warm-up at the HMR poses, has by then partly absorbed
(its Gaussians grow or shrink to fill the silhouette at the wrong distance); the evidence is
in BENCHMARKS.md (benchmark suite, dev split).

The alignment is robust, not exact: the median over pixels ignores the silhouette's bleeding
and holes of a monocular depth map; frames with too few person pixels take their neighbours'
correction (an optional temporal median filter exists, but HMR's depth error has a per-frame
part that it would keep: on the dev split, with ``depth_focal_power=1`` and every person
pixel's depth, the root error along the camera axis left after alignment is 29 % of HMR's per
frame, 39 % with a 5-frame filter). The fit hands it depth without the silhouette's outer ring
(``FitConfig.depth_edge_px``), where a monocular network blends the person with the
background. The depth network's own scale error remains, and the depth terms of the fit see
the same depth.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from hsjax import body as body_lib
from hsjax.body import SMPLParams


def surface_depth(points_cam: np.ndarray, K: np.ndarray, height: int, width: int
                  ) -> np.ndarray:
  """A point z-buffer: [N, 3] camera-frame points -> [H, W] nearest z per pixel (inf: none).

  With the mesh's vertices as points this is the visible surface's depth wherever the body
  is sampled densely enough (a body vertex every few millimetres, pixels of a centimetre).
  """
  z = points_cam[:, 2]
  front = z > 1e-6
  uv = points_cam[front] @ np.asarray(K, np.float64).T
  px = np.floor(uv[:, :2] / uv[:, 2:3]).astype(np.int64)
  inside = (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
  zbuf = np.full((height, width), np.inf)
  np.minimum.at(zbuf, (px[inside, 1], px[inside, 0]), z[front][inside])
  return zbuf


def depth_offsets(vertices: np.ndarray, depth: np.ndarray, masks: np.ndarray, K: np.ndarray,
                  world_to_cam: np.ndarray, *, min_pixels: int = 20) -> np.ndarray:
  """[T] median (observed − body surface) depth per frame, metres; NaN without evidence.

  Args:
    vertices: [T, V, 3] posed body vertices, world frame.
    depth: [T, H, W] observed metric depth, 0 where invalid.
    masks: [T, H, W] person masks in [0, 1].
    K: [T, 3, 3] intrinsics of ``depth``'s pixels.
    world_to_cam: [T, 4, 4].
    min_pixels: fewer person pixels with both depths than this gives NaN.
  """
  return np.array([frame_depth_offset(vertices[t], depth[t], masks[t], K[t], world_to_cam[t],
                                      min_pixels=min_pixels) for t in range(depth.shape[0])],
                  np.float64)


def frame_depth_offset(vertices: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                       K: np.ndarray, world_to_cam: np.ndarray, *, min_pixels: int = 20
                       ) -> float:
  """:func:`depth_offsets` of one frame: vertices [V, 3], depth / mask [H, W], K [3, 3],
  world_to_cam [4, 4] -> metres, NaN without evidence."""
  height, width = depth.shape
  rot, trans = world_to_cam[:3, :3], world_to_cam[:3, 3]
  zbuf = surface_depth(vertices @ rot.T + trans, K, height, width)
  both = np.isfinite(zbuf) & (mask > 0.5) & (depth > 0)
  if both.sum() < min_pixels:
    return float("nan")
  return float(np.median(depth[both]) - np.median(zbuf[both]))


def smooth_offsets(offsets: np.ndarray, window: int = 5) -> np.ndarray:
  """Fills NaN frames from their nearest neighbours and median-filters over ``window`` frames.

  All NaN (no frame with evidence): zeros, so the translation stays HMR's.
  """
  offsets = np.asarray(offsets, np.float64)
  known = np.flatnonzero(np.isfinite(offsets))
  if known.size == 0:
    return np.zeros_like(offsets)
  filled = np.interp(np.arange(len(offsets)), known, offsets[known])
  return scipy.ndimage.median_filter(filled, size=min(window, len(offsets)), mode="nearest")


def align_translation(body_model: body_lib.BodyModel, params: SMPLParams, depth: np.ndarray,
                      masks: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, *,
                      window: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Slides each frame's body along the camera ray through its pelvis onto the observed depth.

  Args:
    body_model: the fit's body model.
    params: the initial (HMR) parameters of T frames, world frame.
    depth, masks, K, world_to_cam: as :func:`depth_offsets`.
    window: frames of the temporal median filter (1: none, the default: HMR's depth error
      has a per-frame part, which a filter would leave in; the fit's temporal terms smooth).

  Returns:
    ``(transl [T, 3], offsets [T])``: the aligned translation (float32) and the smoothed
    per-frame depth correction applied, metres (positive: the body moved away).
  """
  vertices, joints = body_lib.pose_frames_host(body_model, params)
  offsets = smooth_offsets(depth_offsets(vertices, np.asarray(depth), np.asarray(masks),
                                         np.asarray(K), np.asarray(world_to_cam)), window)
  return slide_along_rays(params.transl, joints[:, 0], offsets, world_to_cam), offsets


def slide_along_rays(transl: np.ndarray, pelvis: np.ndarray, offsets: np.ndarray,
                     world_to_cam: np.ndarray) -> np.ndarray:
  """[T, 3] float32 ``transl`` moved so that each pelvis ([T, 3], world) keeps its pixel and
  its camera depth changes by ``offsets`` [T] metres (world_to_cam [T, 4, 4])."""
  rot = np.asarray(world_to_cam)[:, :3, :3].astype(np.float64)
  trans = np.asarray(world_to_cam)[:, :3, 3].astype(np.float64)
  pelvis_cam = np.einsum("tij,tj->ti", rot, pelvis) + trans
  moved = pelvis_cam * ((pelvis_cam[:, 2] + offsets) / pelvis_cam[:, 2])[:, None]
  shift_world = np.einsum("tji,tj->ti", rot, moved - pelvis_cam)
  return (np.asarray(transl, np.float64) + shift_world).astype(np.float32)
