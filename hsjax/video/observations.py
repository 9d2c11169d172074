"""What a person detector sees in a video, the interface of a detector, and person tracking.

:class:`Observations` holds per frame a person mask, the 33 BlazePose landmarks in pixels
with visibility, the 33 metric world landmarks, the person's box and a detected flag. An
*observer* is anything with ``observe(frames) -> Observations`` (:class:`Observer`); the
MediaPipe backend is :class:`hsjax.video.mediapipe_observer.MediaPipeObserver`, and another
detector (MediaPipe's Tasks API with a model file of the user's, a 4D-Humans run converted to
BlazePose's 33 landmarks) plugs in by returning the same arrays. Observations are saved next
to a run (``observations.npz``) so that a second fit does not detect again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Protocol

import numpy as np

NUM_LANDMARKS = 33
# BlazePose's 33 landmarks (odd = the person's left).
LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index")
_FIELDS = ("masks", "landmarks", "world_landmarks", "boxes", "detected", "frame_indices")


@dataclasses.dataclass(frozen=True)
class Observations:
  """Per-frame observations of one person (host side, numpy).

  Frames where the person was not detected have ``detected`` False, a zero mask, zero
  landmarks with visibility 0 and a zero box; nothing is NaN.
  """

  masks: np.ndarray  # [T, H, W] float32 person mask in [0, 1] (soft at the border).
  landmarks: np.ndarray  # [T, 33, 3] float32 (x, y) pixels (centres at +0.5), visibility.
  # [T, 33, 3] float32 metres, origin at the hips' midpoint, axes of the camera (x right,
  # y down, z forward), as BlazePose's ``pose_world_landmarks``.
  world_landmarks: np.ndarray
  boxes: np.ndarray  # [T, 4] float32 person box (x0, y0, x1, y1) pixels.
  detected: np.ndarray  # [T] bool.
  frame_indices: np.ndarray  # [T] int64 frame numbers in the source video.
  backend: str = ""  # which observer produced them, and its settings.
  notes: tuple[str, ...] = ()  # what the observer reports (other people, lost track, ...).

  def __len__(self) -> int:
    return int(self.detected.shape[0])

  @property
  def image_size(self) -> tuple[int, int]:
    """(H, W) pixels."""
    return tuple(self.masks.shape[1:3])

  def select(self, index) -> Observations:
    """The observations of frames ``index`` (a slice, mask or index array)."""
    return dataclasses.replace(self, **{f: getattr(self, f)[index] for f in _FIELDS})

  def save(self, path: str) -> None:
    """Writes ``path`` (``.npz``; masks as uint8, which is what a video holds)."""
    np.savez_compressed(
        path, masks=np.round(np.clip(self.masks, 0, 1) * 255).astype(np.uint8),
        landmarks=self.landmarks, world_landmarks=self.world_landmarks, boxes=self.boxes,
        detected=self.detected, frame_indices=self.frame_indices,
        backend=np.asarray(self.backend), notes=np.asarray(json.dumps(list(self.notes))))


def load_observations(path: str) -> Observations:
  """Reads :meth:`Observations.save`'s file.

  Raises:
    FileNotFoundError / ValueError: naming the file and the missing or malformed field.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such observations file")
  with np.load(path, allow_pickle=False) as f:
    missing = [k for k in _FIELDS if k not in f]
    if missing:
      raise ValueError(f"{path}: missing field(s) {missing}; found {sorted(f.keys())}")
    arrays = {k: f[k] for k in _FIELDS}
    backend = str(f["backend"]) if "backend" in f else ""
    notes = tuple(json.loads(str(f["notes"]))) if "notes" in f else ()
  t = arrays["detected"].shape[0]
  for name, shape in (("landmarks", (t, NUM_LANDMARKS, 3)),
                      ("world_landmarks", (t, NUM_LANDMARKS, 3)), ("boxes", (t, 4))):
    if arrays[name].shape != shape:
      raise ValueError(f"{path}: field '{name}' expected {list(shape)}, found "
                       f"{list(arrays[name].shape)}")
  return Observations(masks=arrays["masks"].astype(np.float32) / 255.0,
                      landmarks=arrays["landmarks"].astype(np.float32),
                      world_landmarks=arrays["world_landmarks"].astype(np.float32),
                      boxes=arrays["boxes"].astype(np.float32),
                      detected=arrays["detected"].astype(bool),
                      frame_indices=arrays["frame_indices"].astype(np.int64), backend=backend,
                      notes=notes)


class Observer(Protocol):
  """A person detector: frames in, :class:`Observations` of one person out."""

  def observe(self, frames: np.ndarray, frame_indices: np.ndarray | None = None,
              progress=None) -> Observations:
    """Observes ``frames`` [T, H, W, 3] uint8 RGB (consecutive, in order).

    Args:
      frames: the video's frames.
      frame_indices: [T] frame numbers in the source (default ``arange(T)``).
      progress: optional callable ``(n)`` called after each frame.
    """
    ...


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
  """Intersection over union of two boxes (x0, y0, x1, y1)."""
  ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = ix * iy
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return float(inter / union) if union > 0 else 0.0


def landmark_box(landmarks: np.ndarray, width: int, height: int,
                 min_visibility: float = 0.3) -> np.ndarray:
  """[4] box (x0, y0, x1, y1) of the landmarks [33, 3] with visibility >= min_visibility,
  clipped to the image (all landmarks when too few are visible)."""
  vis = landmarks[:, 2] >= min_visibility
  pts = landmarks[vis, :2] if vis.sum() >= 4 else landmarks[:, :2]
  x0, y0 = pts.min(axis=0)
  x1, y1 = pts.max(axis=0)
  return np.array([np.clip(x0, 0, width), np.clip(y0, 0, height), np.clip(x1, 0, width),
                   np.clip(y1, 0, height)], np.float32)


def crop_window(box: np.ndarray, width: int, height: int, margin: float = 0.5
                ) -> tuple[int, int, int, int]:
  """A square-ish window (x0, y0, x1, y1) integer pixels around ``box`` grown by ``margin``
  of its size on every side, clipped to the image."""
  w, h = box[2] - box[0], box[3] - box[1]
  side = max(w, h) * (1.0 + 2.0 * margin)
  cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
  x0, y0 = int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2)))
  x1, y1 = int(min(width, np.ceil(cx + side / 2))), int(min(height, np.ceil(cy + side / 2)))
  return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def describe_frames(frame_indices) -> str:
  """Compact list of frame numbers: ``3-7, 12, 20-21``."""
  idx = sorted(int(i) for i in frame_indices)
  parts, i = [], 0
  while i < len(idx):
    j = i
    while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
      j += 1
    parts.append(str(idx[i]) if i == j else f"{idx[i]}-{idx[j]}")
    i = j + 1
  return ", ".join(parts)
