"""The overlay video of a video run: landmarks, the observed mask's outline, the refined mesh."""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.report import figures

LANDMARK_COLOR = (1.0, 0.85, 0.1)
MASK_COLOR = (0.2, 0.6, 1.0)


def overlay_frame(image: np.ndarray, landmarks: np.ndarray, mask: np.ndarray, camera: Camera,
                  faces: np.ndarray, init_vertices: np.ndarray, refined_vertices: np.ndarray
                  ) -> np.ndarray:
  """[H, W, 3] float: the refined mesh (green; the landmark initialisation's outline red), the
  observed mask's outline (blue) and the visible landmarks (yellow dots) over ``image``."""
  out = figures.mesh_overlay(image, camera, faces, init_vertices, refined_vertices)
  inside = np.asarray(mask) >= 0.5
  out[inside & ~scipy.ndimage.binary_erosion(inside, border_value=0)] = MASK_COLOR
  h, w = out.shape[:2]
  r = max(1, round(max(h, w) / 200))
  for x, y, vis in landmarks:
    if vis < 0.5:
      continue
    u, v = int(x), int(y)
    out[max(0, v - r):min(h, v + r + 1), max(0, u - r):min(w, u + r + 1)] = LANDMARK_COLOR
  return out


def overlay_frames(body_model: body_lib.BodyModel, sequence, observations, init, refined,
                   used_mask: np.ndarray):
  """Yields the overlay of every fitted frame (``sequence``'s frames; ``used_mask`` [T]
  selects them among ``observations``)."""
  init_v, _ = body_lib.pose_frames_host(body_model, init)
  ref_v, _ = body_lib.pose_frames_host(body_model, refined)
  lms = observations.landmarks[used_mask]
  faces = np.asarray(body_model.faces)
  for t in range(len(sequence)):
    cam = Camera(K=np.asarray(sequence.cameras.K)[t],
                 world_to_cam=np.asarray(sequence.cameras.world_to_cam)[t],
                 width=sequence.cameras.width, height=sequence.cameras.height)
    yield overlay_frame(np.asarray(sequence.images[t]), lms[t], np.asarray(sequence.masks[t]),
                        cam, faces, init_v[t], ref_v[t])
