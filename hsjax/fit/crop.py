"""Crops of the person: the window of each frame a fit sees when it fits the person, not the
whole frame (``FitConfig.person_crop``).

One crop size for the whole sequence (a step renders its frames as one batch), placed per
frame around the person's mask. Each frame's window becomes its camera: the principal point
moves by the window's origin, so the crop is an exact pinhole camera of its own and nothing
else in the fit changes. A person small in a large frame is then fitted at the frame's
resolution at the cost of the person's pixels only, and ``FitConfig.max_fit_size`` limits the
crop, not the frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tqdm


@dataclasses.dataclass(frozen=True)
class PersonCrop:
  """Per-frame windows of one size: frame ``t`` keeps pixels ``[y0, y0 + height)`` x
  ``[x0, x0 + width)`` of the source frame, ``(x0, y0) = origins[t]``."""

  origins: np.ndarray  # [T, 2] int (x0, y0), source pixels.
  height: int  # source pixels.
  width: int  # source pixels.

  def window(self, t: int) -> tuple[slice, slice]:
    """The (rows, columns) slices of frame ``t``."""
    x0, y0 = (int(v) for v in self.origins[t])
    return slice(y0, y0 + self.height), slice(x0, x0 + self.width)

  def shift_intrinsics(self, k: np.ndarray) -> np.ndarray:
    """[T, 3, 3] intrinsics of the source frames -> those of the crops (principal point
    moved by each window's origin)."""
    k = np.array(k, np.float32)
    k[:, 0, 2] -= self.origins[:, 0]
    k[:, 1, 2] -= self.origins[:, 1]
    return k


def mask_boxes(masks, *, progress: bool = False) -> np.ndarray:
  """[T, 4] float (x0, y0, x1, y1) of each mask's person pixels (> 0.5), pixel edges, so a
  single pixel at (x, y) is (x, y, x + 1, y + 1); NaN for a frame without any.

  ``masks`` [T, H, W] is read one frame at a time (lazily loaded sequences stay lazy).
  """
  boxes = np.full((len(masks), 4), np.nan)
  for t in tqdm.tqdm(range(len(masks)), desc="person boxes", disable=not progress,
                     leave=False):
    person = np.asarray(masks[t]) > 0.5
    rows, cols = np.flatnonzero(person.any(axis=1)), np.flatnonzero(person.any(axis=0))
    if rows.size:
      boxes[t] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
  return boxes


def crop_size(boxes: list[np.ndarray], image_sizes: list[tuple[int, int]], *, margin: float,
              factor_of) -> tuple[int, int, int]:
  """``(height, width, factor)``: one crop size for every frame of every sequence, and the
  factor by which crops of that size are fitted.

  The largest box's height and width over ``boxes`` (one [T, 4] array per sequence), each
  widened by ``margin`` (a fraction of it) on both sides and kept within the smallest of
  ``image_sizes`` (``(height, width)`` per sequence); ``factor_of(height, width)``
  (``FitConfig.crop_factor``) gives the factor, and each side is rounded up to a
  multiple of it (down where rounding up would leave the frame).

  Raises:
    ValueError: a sequence has no frame with a person.
  """
  extents = []
  for i, b in enumerate(boxes):
    valid = np.all(np.isfinite(b), axis=-1)
    if not valid.any():
      which = "" if len(boxes) == 1 else f" (sequence {i})"
      raise ValueError(f"sequence.masks{which}: a person crop needs the person in at least "
                       f"one mask; all {len(b)} masks are empty")
    extents.append((b[valid, 2:] - b[valid, :2]).max(axis=0))  # (w, h)
  width, height = np.ceil(np.max(extents, axis=0) * (1.0 + 2.0 * margin)).astype(int)
  image_h = min(h for h, _ in image_sizes)
  image_w = min(w for _, w in image_sizes)
  height, width = int(min(height, image_h)), int(min(width, image_w))
  factor = factor_of(height, width)

  def fitted(size: int, limit: int) -> int:
    up = -(-size // factor) * factor
    return up if up <= limit else (limit // factor) * factor

  return fitted(height, image_h), fitted(width, image_w), factor


def crop_origins(boxes: np.ndarray, image_size: tuple[int, int], height: int,
                 width: int) -> np.ndarray:
  """[T, 2] int (x0, y0): windows of ``height`` x ``width`` centred on each frame's box and
  moved inside the ``image_size`` ``(height, width)`` frame; a frame without a box takes the
  centre interpolated from the frames that have one (the nearest one's at the ends)."""
  valid = np.all(np.isfinite(boxes), axis=-1)
  t = np.arange(len(boxes))
  centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
  centre = np.stack([np.interp(t, t[valid], centre[valid, i]) for i in range(2)], axis=-1)
  image_h, image_w = image_size
  x0 = np.clip(np.round(centre[:, 0] - 0.5 * width), 0, image_w - width)
  y0 = np.clip(np.round(centre[:, 1] - 0.5 * height), 0, image_h - height)
  return np.stack([x0, y0], axis=-1).astype(np.int64)


def person_crops(masks: list, *, margin: float, factor_of,
                 progress: bool = False) -> tuple[list[PersonCrop], int]:
  """The windows of each sequence's ``masks`` [T, H, W] (one crop size shared by all, so
  that several subjects can be fitted together) and the factor they are fitted at."""
  boxes = [mask_boxes(m, progress=progress) for m in masks]
  sizes = [tuple(int(n) for n in m.shape[1:3]) for m in masks]
  height, width, factor = crop_size(boxes, sizes, margin=margin, factor_of=factor_of)
  crops = [PersonCrop(crop_origins(b, s, height, width), height, width)
           for b, s in zip(boxes, sizes)]
  return crops, factor
