"""Pictures of a run: error maps, mask and mesh overlays, labelled panels, line plots."""

from __future__ import annotations

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw, ImageFont

from hsjax.camera import Camera
from hsjax.data.synthetic import render as mesh_render

# Colours of the overlays (RGB in [0, 1]).
HMR_COLOR = (0.95, 0.25, 0.2)
REFINED_COLOR = (0.2, 0.9, 0.35)
# Control points of the error-map colour scale (dark blue-black -> purple -> orange -> yellow,
# the look of matplotlib's "inferno", which is perceptually ordered).
_ERROR_COLORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9],
                          [252, 255, 164]], np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
  return np.round(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def colorize(values: np.ndarray, vmax: float) -> np.ndarray:
  """[H, W] values in [0, vmax] -> [H, W, 3] colours of the error scale."""
  x = np.clip(np.asarray(values, np.float32) / max(vmax, 1e-12), 0.0, 1.0)
  stops = np.linspace(0.0, 1.0, len(_ERROR_COLORS))
  return np.stack([np.interp(x, stops, _ERROR_COLORS[:, c]) for c in range(3)], axis=-1)


def error_map(render: np.ndarray, target: np.ndarray, vmax: float = 0.25) -> np.ndarray:
  """Per-pixel mean absolute colour error, coloured: [H, W, 3] x2 -> [H, W, 3]."""
  err = np.mean(np.abs(np.asarray(render, np.float32) - np.asarray(target, np.float32)), -1)
  return colorize(err, vmax)


def mask_overlay(alpha: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Agreement of the rendered alpha and the target mask: [H, W] x2 -> [H, W, 3].

  White where both cover the pixel, red where only the target mask does (the render misses
  the person), blue where only the render does (it spills over), black elsewhere.
  """
  a = np.clip(np.asarray(alpha, np.float32), 0, 1)
  m = np.clip(np.asarray(mask, np.float32), 0, 1)
  both = np.minimum(a, m)
  only_m = np.clip(m - a, 0, 1)
  only_a = np.clip(a - m, 0, 1)
  return np.stack([both + only_m, both + 0.3 * only_a, both + only_a], -1).clip(0, 1)


def _outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
  inside = np.asarray(mask) >= 0.5
  return inside & ~scipy.ndimage.binary_erosion(inside, iterations=width, border_value=0)


def mesh_overlay(image: np.ndarray, camera: Camera, faces: np.ndarray, hmr_vertices: np.ndarray,
                 refined_vertices: np.ndarray) -> np.ndarray:
  """The refined mesh (shaded, green, translucent) and the outlines of the HMR (red) and
  refined (green) meshes over the input image: [H, W, 3].

  Meshes are drawn with :func:`hsjax.data.render_mesh` (independent of the Gaussian
  rasteriser).
  """
  base = 0.6 * np.asarray(image, np.float32)
  faces = np.asarray(faces)
  colors = {}
  masks = {}
  for name, verts, color in (("hmr", hmr_vertices, HMR_COLOR),
                             ("refined", refined_vertices, REFINED_COLOR)):
    verts = np.asarray(verts, np.float32)
    rgb, mask, _ = mesh_render.render_mesh(
        verts, faces, camera, vertex_colors=np.broadcast_to(np.asarray(color, np.float32),
                                                            verts.shape),
        normals=mesh_render.smooth_normals(verts, faces), supersample=1, background=(0, 0, 0))
    colors[name], masks[name] = rgb, mask
  m = masks["refined"][..., None]
  out = base * (1 - 0.55 * m) + 0.55 * m * colors["refined"]
  out[_outline(masks["hmr"], 1)] = HMR_COLOR
  out[_outline(masks["refined"], 1)] = REFINED_COLOR
  return out.clip(0, 1)


def _font(size: int = 12):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: bitmap font without sizes
    return ImageFont.load_default()


def labelled(image: np.ndarray, label: str, bar: int = 16) -> np.ndarray:
  """[H, W, 3] float -> [H + bar, W, 3] uint8 with ``label`` written in a bar above."""
  img = to_uint8(image)
  h, w = img.shape[:2]
  canvas = Image.new("RGB", (w, h + bar), (32, 32, 32))
  canvas.paste(Image.fromarray(img), (0, bar))
  ImageDraw.Draw(canvas).text((3, 1), label, fill=(235, 235, 235), font=_font(bar - 4))
  return np.asarray(canvas)


def hstack_tiles(tiles: list[np.ndarray], gap: int = 2) -> np.ndarray:
  """Tiles of equal height side by side with a dark gap: uint8 [H, sum W + gaps, 3]."""
  h = tiles[0].shape[0]
  parts = []
  for i, tile in enumerate(tiles):
    if tile.shape[0] != h:
      raise ValueError(f"hstack_tiles: tile {i} has height {tile.shape[0]}, expected {h}")
    parts.append(tile)
    if i < len(tiles) - 1:
      parts.append(np.full((h, gap, 3), 16, np.uint8))
  return np.concatenate(parts, axis=1)


def frame_panel(image, target, render_rgb, render_alpha, mask, camera: Camera, faces,
                hmr_vertices, refined_vertices, *, title: str = "") -> np.ndarray:
  """input | render | error map | mask overlay | HMR vs refined mesh, labelled: uint8."""
  tiles = [
      labelled(image, f"input {title}".strip()),
      labelled(render_rgb, "render"),
      labelled(error_map(render_rgb, target), "|error| (0-0.25)"),
      labelled(mask_overlay(render_alpha, mask), "mask: both/miss/extra"),
      labelled(mesh_overlay(image, camera, faces, hmr_vertices, refined_vertices),
               "HMR red / refined green"),
  ]
  return hstack_tiles(tiles)


def _nice_ceiling(value: float) -> float:
  """The smallest round number (1, 1.2, 1.6, 2, ... 8 x 10^k) >= value: 4 tidy tick steps."""
  if not np.isfinite(value) or value <= 0:
    return 1.0
  base = 10.0 ** np.floor(np.log10(value))
  for m in (1.0, 1.2, 1.6, 2.0, 2.4, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
    if m * base >= value:
      return float(m * base)
  return float(10.0 * base)


def plot_series(path: str, panels: list[tuple[str, dict[str, np.ndarray]]], *,
                xlabel: str = "frame", size: tuple[int, int] = (900, 260)) -> None:
  """Line plots drawn with PIL, one row per panel: ``(title, {label: [T] values})``.

  Series colours: a label starting with "HMR" is red, "refined" green, others grey/blue.
  """
  width, row_h = size
  canvas = Image.new("RGB", (width, row_h * len(panels)), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  palette = {"hmr": (220, 50, 40), "refined": (30, 160, 60)}
  extra = [(60, 90, 200), (120, 120, 120), (200, 140, 20)]
  for row, (title, series) in enumerate(panels):
    top = row * row_h
    left, right, bottom, ptop = 60, width - 170, top + row_h - 35, top + 25
    values = [np.asarray(v, np.float64) for v in series.values()]
    vmax = _nice_ceiling(max(float(np.max(v)) for v in values) if values else 1.0)
    n = max(len(v) for v in values)
    draw.text((left, top + 5), title, fill=(0, 0, 0), font=font)
    draw.rectangle([left, ptop, right, bottom], outline=(0, 0, 0))
    for i in range(5):  # y ticks
      val = vmax * i / 4
      y = bottom - (bottom - ptop) * i / 4
      draw.line([left - 4, y, left, y], fill=(0, 0, 0))
      draw.line([left + 1, y, right - 1, y], fill=(230, 230, 230))
      draw.text((4, y - 7), f"{val:g}", fill=(0, 0, 0), font=font)
    for i in range(6):  # x ticks
      t = (n - 1) * i / 5
      x = left + (right - left) * (t / max(n - 1, 1))
      draw.line([x, bottom, x, bottom + 4], fill=(0, 0, 0))
      draw.text((x - 8, bottom + 6), f"{t:.0f}", fill=(0, 0, 0), font=font)
    draw.text(((left + right) // 2 - 15, bottom + 18), xlabel, fill=(0, 0, 0), font=font)
    for j, (label, v) in enumerate(series.items()):
      v = np.asarray(v, np.float64)
      key = label.split()[0].lower()
      color = palette.get(key, extra[j % len(extra)])
      xs = left + (right - left) * np.arange(len(v)) / max(n - 1, 1)
      ys = bottom - (bottom - ptop) * v / vmax
      draw.line(list(zip(xs.tolist(), ys.tolist())), fill=color, width=2)
      ly = ptop + 5 + 18 * j
      draw.line([right + 10, ly + 7, right + 30, ly + 7], fill=color, width=3)
      draw.text((right + 35, ly), f"{label} (mean {np.mean(v):.1f})", fill=(0, 0, 0),
                font=font)
  canvas.save(path)


def plot_pose_errors(path: str, per_frame: dict[str, dict[str, list[float]]]) -> None:
  """``pose_error.png``: per-frame MPJPE, PA-MPJPE and root error (mm), HMR vs refined."""
  panels = []
  for key, title in (("mpjpe", "MPJPE (mm)"), ("pa_mpjpe", "PA-MPJPE (mm)"),
                     ("root_error", "root translation error (mm)")):
    panels.append((title, {"HMR init": per_frame["hmr"][key],
                           "refined": per_frame["refined"][key]}))
  plot_series(path, panels)


def _nice_range(values: np.ndarray) -> tuple[float, float]:
  """A padded [low, high] around ``values`` with round ends (for axes that do not start at 0)."""
  lo, hi = float(np.min(values)), float(np.max(values))
  pad = max(0.08 * (hi - lo), 1e-3 * max(abs(hi), 1.0))
  step = 10.0 ** np.floor(np.log10(hi - lo + 2 * pad))
  return float(np.floor((lo - pad) / step) * step), float(np.ceil((hi + pad) / step) * step)


def plot_tradeoff(path: str, x_label: str, points: dict[str, float],
                  panels: list[tuple[str, dict[str, float]]], *,
                  size: tuple[int, int] = (420, 320)) -> None:
  """Scatter plots drawn with PIL, side by side: one panel per ``(title, {label: y})``, all
  against ``points`` (``{label: x}``, e.g. fit time); every point is labelled."""
  width, height = size
  canvas = Image.new("RGB", (width * len(panels), height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  labels = list(points)
  xs = np.array([points[k] for k in labels], np.float64)
  x_lo, x_hi = _nice_range(xs)
  for col, (title, values) in enumerate(panels):
    ys = np.array([values[k] for k in labels], np.float64)
    y_lo, y_hi = _nice_range(ys)
    left, right = col * width + 60, (col + 1) * width - 90  # room for point labels
    top, bottom = 28, height - 40
    draw.text((left, 6), title, fill=(0, 0, 0), font=font)
    to_x = lambda v: left + (right - left) * (v - x_lo) / (x_hi - x_lo)  # pylint: disable=cell-var-from-loop
    to_y = lambda v: bottom - (bottom - top) * (v - y_lo) / (y_hi - y_lo)  # pylint: disable=cell-var-from-loop
    for i in range(5):
      yv, xv = y_lo + (y_hi - y_lo) * i / 4, x_lo + (x_hi - x_lo) * i / 4
      draw.line([left + 1, to_y(yv), right - 1, to_y(yv)], fill=(230, 230, 230))
      draw.text((col * width + 4, to_y(yv) - 7), f"{yv:.4g}", fill=(0, 0, 0), font=font)
      draw.line([to_x(xv), bottom, to_x(xv), bottom + 4], fill=(0, 0, 0))
      draw.text((to_x(xv) - 10, bottom + 6), f"{xv:.4g}", fill=(0, 0, 0), font=font)
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text(((left + right) // 2 - 3 * len(x_label), bottom + 22), x_label, fill=(0, 0, 0),
              font=font)
    for label, x, y in zip(labels, xs, ys):
      px, py = to_x(x), to_y(y)
      draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=(60, 90, 200))
      draw.text((px + 6, py - 7), label, fill=(0, 0, 0), font=font)
  canvas.save(path)
