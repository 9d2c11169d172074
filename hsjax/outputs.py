"""The files of a run directory: metrics, tables, parameters, the avatar, pictures and videos.

:func:`write_run` writes, next to the ``flags.txt`` / ``config.json`` of the script::

  metrics.json          evaluation (hsjax.evaluation.evaluate_run) + fit summary
  table.md              the results as Markdown tables
  history.json          the fit's loss curves
  smpl_refined.npz      refined SMPL parameters, smplx naming (below)
  smpl_hmr.npz          the HMR initialisation, same layout
  avatar.npz            the avatar, every field (exact reload with load_avatar)
  avatar.ply            the canonical avatar as a 3DGS .ply with skinning attributes
  panels/frame_XXXX.png input | render | error | mask overlay | HMR vs refined mesh
  train_view.mp4        input | render of every training frame
  orbit.mp4             the avatar in the refined poses from a camera circling the subject
  pose_error.png        per-frame MPJPE, PA-MPJPE and root error, HMR vs refined

SMPL ``.npz`` layout (what ``smplx.SMPL(...)(**{k: torch.tensor(v)})`` takes): ``betas [1, B]``,
``global_orient [T, 3]``, ``body_pose [T, 69]`` (23 joints x axis-angle, SMPL order),
``transl [T, 3]``, float32, world frame of the sequence's cameras, plus ``fps []``.
Feeding them to ``smplx.SMPL`` with the same model file gives the vertices of
:func:`hsjax.body.body_forward` (tested).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import tqdm
from PIL import Image, ImageDraw, ImageFont

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import evaluation
from hsjax.camera import Camera, look_at

AVATAR_FORMAT = "hsjax-avatar"
AVATAR_VERSION = 1

# Colours of the overlays (RGB in [0, 1]).
HMR_COLOR = (0.95, 0.25, 0.2)
REFINED_COLOR = (0.2, 0.9, 0.35)
# Control points of the error-map colour scale (dark blue-black -> purple -> orange -> yellow,
# the look of matplotlib's "inferno", which is perceptually ordered).
_ERROR_COLORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9],
                          [252, 255, 164]], np.float32) / 255.0


# ------------------------------------------------------------------------------------------
# SMPL parameters


def save_smpl_npz(path: str, params: body_lib.SMPLParams, *, fps: float | None = None) -> None:
  """Writes SMPL parameters in smplx's naming (see the module docstring)."""
  body_pose = np.asarray(params.body_pose, np.float32)
  if body_pose.ndim != 3 or body_pose.shape[1:] != (23, 3):
    raise ValueError(f"save_smpl_npz: body_pose must be [T, 23, 3], found {body_pose.shape}")
  num_frames = body_pose.shape[0]
  betas = np.asarray(params.betas, np.float32)
  if betas.ndim != 1:
    raise ValueError(f"save_smpl_npz: betas must be [B] (shared), found {betas.shape}")
  arrays = {"betas": betas[None], "global_orient": np.asarray(params.global_orient, np.float32),
            "body_pose": body_pose.reshape(num_frames, 69),
            "transl": np.asarray(params.transl, np.float32)}
  if fps is not None:
    arrays["fps"] = np.asarray(float(fps))
  np.savez(path, **arrays)


def _read_npz(path: str, what: str) -> dict:
  """All arrays of an ``.npz`` (no pickles); ``what`` names the file in the error."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def load_smpl_npz(path: str) -> body_lib.SMPLParams:
  """Reads :func:`save_smpl_npz`'s layout back (``body_pose [T, 69]`` or ``[T, 23, 3]``)."""
  data = _read_npz(path, "SMPL parameter file")
  missing = [k for k in ("betas", "global_orient", "body_pose", "transl") if k not in data]
  if missing:
    raise ValueError(f"{path}: missing field(s) {missing}; found {sorted(data)}")
  body_pose = data["body_pose"]
  if body_pose.ndim != 2 or body_pose.shape[1] != 69:
    if body_pose.shape[1:] != (23, 3):
      raise ValueError(f"{path}: field 'body_pose' must be [T, 69] or [T, 23, 3], found "
                       f"{list(body_pose.shape)}")
  num_frames = body_pose.shape[0]
  betas = data["betas"]
  if betas.ndim == 2:
    if betas.shape[0] != 1:
      raise ValueError(f"{path}: field 'betas' must be [1, B] or [B], found {list(betas.shape)}")
    betas = betas[0]
  for key in ("global_orient", "transl"):
    if data[key].shape != (num_frames, 3):
      raise ValueError(f"{path}: field '{key}' must be [{num_frames}, 3], found "
                       f"{list(data[key].shape)}")
  return body_lib.SMPLParams(betas=betas.astype(np.float32),
                             body_pose=body_pose.reshape(num_frames, 23, 3).astype(np.float32),
                             global_orient=data["global_orient"].astype(np.float32),
                             transl=data["transl"].astype(np.float32))


# ------------------------------------------------------------------------------------------
# The avatar (exact reload)


def save_avatar(path: str, avatar: avatar_lib.Avatar) -> None:
  """Writes every field of an avatar to ``.npz`` (non-rigid parameters flattened by path)."""
  import flax.traverse_util  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  arrays = {}
  for name in ("means", "log_scales", "quats", "opacity_logits", "sh", "skin_logits",
               "skin_init", "face_ids", "barycentrics", "active"):
    arrays[name] = np.asarray(getattr(avatar, name))
  nonrigid_config = None
  if avatar.nonrigid is not None:
    flat = flax.traverse_util.flatten_dict(jax.device_get(avatar.nonrigid), sep="/")
    for k, v in flat.items():
      arrays["nonrigid/" + k] = np.asarray(v)
    import dataclasses  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    nonrigid_config = dataclasses.asdict(avatar.nonrigid_config)
  meta = {"format": AVATAR_FORMAT, "version": AVATAR_VERSION, "sh_degree": avatar.sh_degree,
          "learn_skinning": avatar.learn_skinning, "nonrigid_config": nonrigid_config}
  arrays["meta"] = np.asarray(json.dumps(meta))
  np.savez(path, **arrays)


def load_avatar(path: str) -> avatar_lib.Avatar:
  """Reads :func:`save_avatar`'s file."""
  import flax.traverse_util  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  data = _read_npz(path, "avatar file")
  if "meta" not in data:
    raise ValueError(f"{path}: not an hsjax avatar file (no 'meta' field); found "
                     f"{sorted(data)[:8]}")
  meta = json.loads(str(data.pop("meta")))
  if meta.get("format") != AVATAR_FORMAT:
    raise ValueError(f"{path}: field 'format' must be '{AVATAR_FORMAT}', found "
                     f"{meta.get('format')!r}")
  nonrigid = {k[len("nonrigid/"):]: jnp.asarray(v) for k, v in data.items()
              if k.startswith("nonrigid/")}
  fields = {k: jnp.asarray(v) for k, v in data.items() if not k.startswith("nonrigid/")}
  config = None
  if meta.get("nonrigid_config") is not None:
    from hsjax import nonrigid as nonrigid_lib  # pylint: disable=g-import-not-at-top
    config = nonrigid_lib.NonRigidConfig(**meta["nonrigid_config"])
  return avatar_lib.Avatar(
      **fields, nonrigid=flax.traverse_util.unflatten_dict(nonrigid, sep="/") if nonrigid
      else None, sh_degree=int(meta["sh_degree"]), learn_skinning=bool(meta["learn_skinning"]),
      nonrigid_config=config)


def save_avatar_ply(path: str, avatar: avatar_lib.Avatar) -> None:
  """The canonical avatar as a 3DGS ``.ply`` (with skinning attributes) via :mod:`hsjax.ply`."""
  from hsjax import ply  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  ply.save_avatar_ply(path, avatar)


# ------------------------------------------------------------------------------------------
# Tables


def _fmt(value, digits: int = 1) -> str:
  if value is None:
    return "n/a"
  return f"{value:.{digits}f}"


_POSE_HEADERS = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "v2v": "V2V",
                 "root_error": "root", "w_mpjpe": "W-MPJPE", "accel_error": "accel"}


def pose_table(pose: dict[str, Any]) -> str:
  """Markdown table of :func:`hsjax.evaluation.evaluate_poses`' result."""
  keys = [k for k in evaluation.POSE_METRICS if k in pose["hmr"]]
  lines = ["| poses | " + " | ".join(_POSE_HEADERS[k] for k in keys) + " |",
           "| --- | " + " | ".join("---:" for _ in keys) + " |"]
  lines.append("| HMR initialisation | " + " | ".join(_fmt(pose["hmr"][k]) for k in keys) + " |")
  lines.append("| refined | " + " | ".join(_fmt(pose["refined"][k]) for k in keys) + " |")
  imp = pose.get("improvement_pct", {})
  lines.append("| improvement | " + " | ".join(
      (f"{imp[k]:+.1f} %" if k in imp else "n/a") for k in keys) + " |")
  return "\n".join(lines)


def image_table(result: dict[str, Any]) -> str:
  """Markdown table of the image summaries of :func:`hsjax.evaluation.evaluate_run`."""
  rows = [("training view", "train_view"), ("novel view", "novel_view"),
          ("novel pose", "novel_pose")]
  rows = [(label, result[key]) for label, key in rows if key in result]
  if not rows:
    return ""
  lines = ["| images | PSNR ↑ | SSIM ↑ | LPIPS ↓ | PSNR mask | SSIM mask | PSNR full | SSIM full "
           "| images |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for label, s in rows:
    lines.append(f"| {label} | {_fmt(s['psnr'], 2)} | {_fmt(s['ssim'], 4)} | "
                 f"{_fmt(s['lpips'], 4)} | {_fmt(s['psnr_mask'], 2)} | "
                 f"{_fmt(s['ssim_mask'], 4)} | {_fmt(s['psnr_full'], 2)} | "
                 f"{_fmt(s['ssim_full'], 4)} | {s['num_images']} |")
  return "\n".join(lines)


def results_markdown(result: dict[str, Any], title: str = "Results") -> str:
  """``table.md``: pose and image tables with a note on the protocol."""
  parts = [f"# {title}", ""]
  if "sequence" in result:
    parts += [f"Sequence `{result['sequence']}`, {result['num_frames']} frames.", ""]
  if "pose" in result:
    parts += ["## Pose error (mm, lower is better)", "", pose_table(result["pose"]), ""]
  table = image_table(result)
  if table:
    parts += ["## Image quality", "", table, "",
              "PSNR (dB) and SSIM inside the person's bounding box (grown by "
              f"{result.get('bbox_margin', 8)} px) are the headline numbers; *mask* = person "
              "mask only, *full* = whole frame. Targets are composited over the render "
              "background with the person mask."]
    lp = result.get("lpips", {})
    if not lp.get("available", False):
      parts += ["", f"LPIPS: n/a ({lp.get('reason', 'unavailable')})."]
    parts.append("")
  if "fit" in result:
    fit = result["fit"]
    parts += ["## Fit", "", f"{fit.get('steps')} steps in {_fmt(fit.get('time_s'))} s "
              f"(final loss {_fmt(fit.get('final_loss'), 4)}).", ""]
  return "\n".join(parts)


def ablation_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
  """One Markdown table comparing runs: ``rows`` of (label, evaluate_run result).

  A row's pose columns come from ``result["pose"]["refined"]`` (the poses that run ends
  with; for the HMR row they are the HMR poses); drift is ``result["drift"]["mean_mm"]``,
  the step time ``result["fit"]["step_ms"]``; missing entries print ``n/a``.
  """
  lines = ["| method | MPJPE ↓ | PA-MPJPE ↓ | V2V ↓ | root ↓ | novel-view PSNR ↑ | "
           "novel-view SSIM ↑ | novel-view LPIPS ↓ | novel-pose PSNR ↑ | train PSNR ↑ | "
           "drift (mm) ↓ | step (ms) |",
           "| --- |" + " ---: |" * 11]
  for label, r in rows:
    pose = r.get("pose", {}).get("refined", {})

    def img(key, metric, r=r):
      return r.get(key, {}).get(metric)

    lines.append(
        f"| {label} | {_fmt(pose.get('mpjpe'))} | {_fmt(pose.get('pa_mpjpe'))} | "
        f"{_fmt(pose.get('v2v'))} | {_fmt(pose.get('root_error'))} | "
        f"{_fmt(img('novel_view', 'psnr'), 2)} | {_fmt(img('novel_view', 'ssim'), 4)} | "
        f"{_fmt(img('novel_view', 'lpips'), 4)} | {_fmt(img('novel_pose', 'psnr'), 2)} | "
        f"{_fmt(img('train_view', 'psnr'), 2)} | {_fmt(img('drift', 'mean_mm'))} | "
        f"{_fmt(img('fit', 'step_ms'), 0)} |")
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Pictures


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
  from hsjax.data import render as mesh_render  # pylint: disable=g-import-not-at-top
  from hsjax.data import synthetic  # pylint: disable=g-import-not-at-top
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
        normals=synthetic.vertex_normals(verts, faces), supersample=1, background=(0, 0, 0))
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


# ------------------------------------------------------------------------------------------
# Videos and cameras


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
                  turns: float = 1.0) -> Camera:
  """Cameras circling a moving target: [F, 3] look-at points -> Camera with F frames.

  Frame ``i`` sits at azimuth ``start + 360 turns i / F`` degrees about the vertical (+y)
  axis through ``targets[i]``, ``distance`` metres away horizontally, at height
  ``camera_height`` (world y), looking at ``targets[i]``. Azimuth 0 is in front of a body
  facing +z.
  """
  targets = np.asarray(targets, np.float64)
  n = len(targets)
  w2c = []
  for i, target in enumerate(targets):
    a = np.deg2rad(start_azimuth_deg + 360.0 * turns * i / n)
    eye = np.array([target[0] + distance * np.sin(a), camera_height,
                    target[2] + distance * np.cos(a)])
    w2c.append(look_at(eye, target))
  k = np.broadcast_to(np.asarray(k, np.float32), (n, 3, 3))
  return Camera(K=np.array(k), world_to_cam=np.stack(w2c).astype(np.float32), width=width,
                height=height)


def _posed_body(body_model, poses: body_lib.SMPLParams) -> tuple[np.ndarray, np.ndarray]:
  """Pelvis [T, 3] and vertices [T, V, 3] of the posed sequence."""
  out = jax.jit(body_lib.body_forward)(body_model, jnp.asarray(poses.betas, jnp.float32),
                                       jnp.asarray(poses.body_pose, jnp.float32),
                                       jnp.asarray(poses.global_orient, jnp.float32),
                                       jnp.asarray(poses.transl, jnp.float32))
  return np.asarray(out.joints[:, 0]), np.asarray(out.vertices)


# ------------------------------------------------------------------------------------------
# The run directory


def write_json(path: str, obj: Any) -> None:
  """Writes JSON (numpy / jax values converted) with sorted keys."""

  def default(x):
    if isinstance(x, (np.generic,)):
      return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
      return np.asarray(x).tolist()
    return str(x)

  with open(path, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=default)


def write_run(run_dir: str, *, body_model: body_lib.BodyModel, sequence,
              avatar: avatar_lib.Avatar, poses: body_lib.SMPLParams,
              evaluation_result: dict[str, Any] | None = None, history: dict | None = None,
              fit_summary: dict | None = None, background=(0.0, 0.0, 0.0),
              backend: str = "auto", tile_capacity: int = 128, num_panels: int = 4,
              orbit_frames: int = 90, videos: bool = True, progress: bool = False,
              title: str = "Results") -> dict[str, str]:
  """Writes every output of a run (see the module docstring) into ``run_dir``.

  Args:
    run_dir: created if missing.
    body_model: the fit's body model.
    sequence: the fitted ``hsjax.data.Sequence``.
    avatar: the fitted avatar.
    poses: the refined poses (T frames).
    evaluation_result: :func:`hsjax.evaluation.evaluate_run`'s dict (metrics.json / table.md;
      the pose plot needs its ``"pose"`` entry).
    history: the fit's history (history.json).
    fit_summary: stored under ``"fit"`` in metrics.json (steps, time, final loss).
    background, backend, tile_capacity: rendering settings (the fit's).
    num_panels: frames shown as PNG panels (evenly spaced).
    orbit_frames: length of the orbit video.
    videos: write the MP4s.
    progress: show progress bars.
    title: heading of table.md.

  Returns:
    ``{output name: path}`` of the files written.
  """
  os.makedirs(run_dir, exist_ok=True)
  written: dict[str, str] = {}

  def path(name):
    written[name] = os.path.join(run_dir, name)
    return written[name]

  num_frames = len(sequence)
  result = dict(evaluation_result or {})
  if fit_summary is not None:
    result["fit"] = fit_summary
  write_json(path("metrics.json"), result)
  with open(path("table.md"), "w") as f:
    f.write(results_markdown(result, title))
  if history is not None:
    write_json(path("history.json"), history)
  save_smpl_npz(path("smpl_refined.npz"), poses, fps=sequence.fps)
  save_smpl_npz(path("smpl_hmr.npz"), sequence.hmr, fps=sequence.fps)
  save_avatar(path("avatar.npz"), avatar)
  if "pose" in result:
    plot_pose_errors(path("pose_error.png"), result["pose"]["per_frame"])

  renders = evaluation.render_frames(avatar, body_model, poses, sequence.cameras,
                                     background=background, backend=backend,
                                     tile_capacity=tile_capacity, progress=progress,
                                     desc="training view")
  pelvis, refined_verts = _posed_body(body_model, poses)
  _, hmr_verts = _posed_body(body_model, sequence.hmr)
  faces = np.asarray(body_model.faces)
  os.makedirs(os.path.join(run_dir, "panels"), exist_ok=True)
  panel_frames = np.unique(np.linspace(0, num_frames - 1, max(num_panels, 1)).round()
                           ).astype(int)
  for t in tqdm.tqdm(panel_frames, desc="panels", disable=not progress, leave=False):
    image = np.asarray(sequence.images[t], np.float32)
    mask = np.asarray(sequence.masks[t], np.float32)
    cam = Camera(K=np.asarray(sequence.cameras.K[t]),
                 world_to_cam=np.asarray(sequence.cameras.world_to_cam[t]),
                 width=sequence.cameras.width, height=sequence.cameras.height)
    panel = frame_panel(image, evaluation.composite_target(image, mask, background),
                        renders["rgb"][t], renders["alpha"][t], mask, cam, faces,
                        hmr_verts[t], refined_verts[t], title=f"frame {t}")
    iio.imwrite(path(f"panels/frame_{t:04d}.png"), panel)

  if videos:
    train = (hstack_tiles([to_uint8(sequence.images[t]), to_uint8(renders["rgb"][t])])
             for t in range(num_frames))
    write_video(path("train_view.mp4"), train, sequence.fps)
    cams = sequence.cameras
    k0 = np.asarray(cams.K[0])
    centre = np.asarray(cams.cam_to_world[0][:3, 3])
    distance = float(np.linalg.norm((centre - pelvis[0])[[0, 2]]))
    idx = np.arange(orbit_frames) % num_frames
    orbit = orbit_cameras(pelvis[idx], k0, cams.width, cams.height, distance=max(distance, 1.0),
                          camera_height=float(centre[1]))
    orbit_poses = body_lib.SMPLParams(betas=np.asarray(poses.betas),
                                      body_pose=np.asarray(poses.body_pose)[idx],
                                      global_orient=np.asarray(poses.global_orient)[idx],
                                      transl=np.asarray(poses.transl)[idx])
    bg = np.asarray(background, np.float32)
    orbit_renders = evaluation.render_frames(avatar, body_model, orbit_poses, orbit,
                                             background=bg, backend=backend,
                                             tile_capacity=tile_capacity, progress=progress,
                                             desc="orbit")
    write_video(path("orbit.mp4"), orbit_renders["rgb"], sequence.fps)
  save_avatar_ply(path("avatar.ply"), avatar)
  return written
