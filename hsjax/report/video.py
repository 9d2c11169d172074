"""MP4 videos (imageio's ffmpeg plugin) and the orbit cameras of the novel-view video."""

from __future__ import annotations

import warnings

import imageio.v2 as imageio_v2
import numpy as np

from hsjax.camera import Camera
from hsjax.camera import look_at
from hsjax.report.figures import to_uint8


def _pad16(frame: np.ndarray) -> np.ndarray:
  """Pads [H, W, 3] to multiples of 16 (H.264 macro blocks) with black."""
  h, w = frame.shape[:2]
  ph, pw = (-h) % 16, (-w) % 16
  if ph or pw:
    frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)))
  return frame


def write_video(path: str, frames, fps: float) -> None:
  """Writes uint8 or float [H, W, 3] frames as an H.264 MP4 (imageio's ffmpeg plugin).

  Frames are padded with black to multiples of 16 pixels, which H.264 needs, instead of
  letting the plugin resize them.
  """
  with warnings.catch_warnings():
    # The plugin starts ffmpeg with a fork immediately followed by exec, which cannot
    # deadlock; jax's fork hook warns about any fork all the same.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    writer = imageio_v2.get_writer(path, format="FFMPEG", mode="I", fps=float(fps),
                                   codec="libx264", quality=8, macro_block_size=1,
                                   ffmpeg_log_level="error")
    try:
      for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
          frame = to_uint8(frame)
        writer.append_data(_pad16(frame))
    finally:
      writer.close()


def orbit_cameras(targets: np.ndarray, k: np.ndarray, width: int, height: int, *,
                  distance: float, camera_height: float, start_azimuth_deg: float = 0.0,
                  turns: float = 1.0, up: str = "+y") -> Camera:
  """Cameras circling a moving target: [F, 3] look-at points -> Camera with F frames.

  Frame ``i`` sits at azimuth ``start + 360 turns i / F`` degrees about the vertical axis
  through ``targets[i]``, ``distance`` metres away horizontally, at height ``camera_height``
  along the vertical, looking at ``targets[i]``. The vertical is ``up``: ``"+y"`` (SMPL's
  and the synthetic sequences' world; azimuth 0 is in front of a body facing +z) or ``"-y"``
  (an OpenCV camera's own frame, the world of a video fit; azimuth 0 is on the camera's side
  of the target, towards -z).
  """
  if up not in ("+y", "-y"):
    raise ValueError(f"orbit_cameras: up must be '+y' or '-y', found {up!r}")
  sign = 1.0 if up == "+y" else -1.0
  targets = np.asarray(targets, np.float64)
  n = len(targets)
  w2c = []
  for i, target in enumerate(targets):
    a = np.deg2rad(start_azimuth_deg + 360.0 * turns * i / n)
    eye = np.array([target[0] + distance * np.sin(a), sign * camera_height,
                    target[2] + sign * distance * np.cos(a)])
    w2c.append(look_at(eye, target, up=(0.0, sign, 0.0)))
  k = np.broadcast_to(np.asarray(k, np.float32), (n, 3, 3))
  return Camera(K=np.array(k), world_to_cam=np.stack(w2c).astype(np.float32), width=width,
                height=height)
