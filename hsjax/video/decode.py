"""Decoding a plain video into frames (imageio-ffmpeg, a core dependency).

:func:`read_video` reads any file imageio's ffmpeg plugin reads, keeps every ``stride``-th
frame of ``[start, end)``, at most ``max_frames`` of them, and resizes the long side.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class VideoFrames:
  """Decoded frames of a video (host side)."""

  frames: np.ndarray  # [T, H, W, 3] uint8 RGB.
  source_indices: np.ndarray  # [T] int frame numbers in the file.
  fps: float  # frames per second of the kept frames (the file's fps / stride).
  source_size: tuple[int, int]  # (width, height) in the file, pixels.
  path: str

  def __len__(self) -> int:
    return int(self.frames.shape[0])


def resize_long_side(frame: np.ndarray, long_side: int) -> np.ndarray:
  """[H, W, 3] uint8 resized (area filter) so that max(H, W) == long_side; 0 keeps it."""
  h, w = frame.shape[:2]
  if long_side <= 0 or max(h, w) == long_side:
    return frame
  s = long_side / max(h, w)
  size = (max(1, round(w * s)), max(1, round(h * s)))
  return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX
                                                  if s < 1 else Image.Resampling.BILINEAR))


def read_video(path: str, *, stride: int = 1, start: int = 0, end: int | None = None,
               max_frames: int = 0, long_side: int = 0, progress=None) -> VideoFrames:
  """Decodes ``path``.

  Args:
    path: a video file imageio-ffmpeg can read (mp4, mov, avi, webm, ...).
    stride: keep every ``stride``-th frame.
    start: first frame number kept.
    end: frame number to stop before (None: the end of the file).
    max_frames: keep at most this many frames (0: no limit).
    long_side: resize so the longer image side has this many pixels (0: as in the file).
    progress: optional callable ``(n)`` called after each kept frame (a progress bar's
      ``update``).

  Raises:
    FileNotFoundError: no such file.
    ValueError: unreadable (not a video ffmpeg decodes), or no frame in the chosen range;
      the message names the file and the range.
  """
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if stride < 1 or start < 0 or max_frames < 0 or long_side < 0:
    raise ValueError(f"read_video: stride >= 1, start >= 0, max_frames >= 0, long_side >= 0 "
                     f"required, found stride={stride}, start={start}, "
                     f"max_frames={max_frames}, long_side={long_side}")
  if end is not None and end <= start:
    raise ValueError(f"read_video: end={end} must be greater than start={start}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such video file")
  try:
    reader = imageio.get_reader(path, format="FFMPEG")
  except Exception as e:  # imageio raises OSError, RuntimeError or ValueError by version.
    raise ValueError(f"{path}: not a readable video ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from e
  process = _ffmpeg_process(reader)  # before the frame generator can finish and drop it
  frames, indices = [], []
  try:
    meta = reader.get_meta_data()
    fps = float(meta.get("fps") or 30.0)
    source_size = tuple(int(v) for v in meta.get("size", (0, 0)))
    try:
      for i, frame in enumerate(reader):
        if end is not None and i >= end:
          break
        if i < start or (i - start) % stride:
          continue
        frame = np.asarray(frame)
        if frame.ndim == 2:
          frame = np.repeat(frame[..., None], 3, axis=-1)
        frames.append(resize_long_side(frame[..., :3].astype(np.uint8), long_side))
        indices.append(i)
        if progress is not None:
          progress(1)
        if max_frames and len(frames) >= max_frames:
          break
    except (OSError, RuntimeError, IndexError) as e:
      if not frames:
        raise ValueError(f"{path}: not a readable video ({type(e).__name__}: {e})") from e
      # A truncated file: keep what was decoded.
  finally:
    _close_reader(reader, process)
  if not frames:
    raise ValueError(f"{path}: no frame in the chosen range (start={start}, end={end}, "
                     f"stride={stride}); the file may be empty")
  return VideoFrames(frames=np.stack(frames), source_indices=np.asarray(indices, np.int64),
                     fps=fps / stride, source_size=source_size, path=path)


def _ffmpeg_process(reader):
  """The ffmpeg process of an imageio reader (a local of its running frame generator)."""
  frame = getattr(getattr(reader, "_read_gen", None), "gi_frame", None)
  return frame.f_locals.get("process") if frame is not None else None


def _close_reader(reader, process) -> None:
  """Closes an imageio ffmpeg reader, and ffmpeg's pipes with it.

  imageio-ffmpeg closes the pipes only when it has to stop a running ffmpeg; those of one that
  already exited (a file read to its end) would be left to the garbage collector, which warns
  about them at some random later point. They are closed here.
  """
  reader.close()
  for pipe in (getattr(process, "stdin", None), getattr(process, "stdout", None)):
    if pipe is not None and not pipe.closed:
      pipe.close()
