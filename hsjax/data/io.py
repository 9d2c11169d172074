"""The hsjax on-disk sequence layout: writing, and lazy loading with validation.

Layout (a directory; every per-frame file is named by its frame, e.g. ``000000``)::

  <root>/
    sequence.npz        parameters and cameras (keys below)
    images/<frame>.png  RGB, 8 bit (``.jpg`` also read)
    masks/<frame>.png   person mask, 8-bit grey, 255 = person (soft edges allowed)
    depth/<frame>.npy   optional: float32 [H, W] camera z in metres, 0 = invalid
                        (``.png`` 16-bit millimetres also read)
    metadata.json       optional: free-form JSON
    eval_views/<view>/  optional: held-out cameras over the same frames, same layout; their
                        ``sequence.npz`` may omit ``hmr_*`` / ``gt_*`` (the parent's are used)
    novel_pose/         optional: held-out frames with unseen poses, same layout

``sequence.npz`` keys (float32 unless stated; T frames):

=======================  ==============  =====================================================
key                      shape           meaning
=======================  ==============  =====================================================
``format``               str             ``"hsjax-sequence"``
``version``              int             ``1``
``name``                 str             sequence name
``fps``                  float           frames per second
``width``, ``height``    int             image size, pixels
``K``                    [T,3,3]/[3,3]   intrinsics, pixels (``[3, 3]``: the same every frame)
``world_to_cam``         [T,4,4]/[4,4]   OpenCV extrinsics (x right, y down, z forward)
``depth_kind``           str             ``"metric"``, ``"relative"`` or ``"none"``
``hmr_betas``            [B]             HMR shape (one for the sequence)
``hmr_body_pose``        [T,23,3]        HMR axis-angle, joints 1..23
``hmr_global_orient``    [T,3]           HMR root axis-angle, *world* frame
``hmr_transl``           [T,3]           HMR ``transl``, world frame, metres
``gt_*``                 as ``hmr_*``    optional ground truth
=======================  ==============  =====================================================

A ``[3, 3]`` ``K`` or ``[4, 4]`` ``world_to_cam`` is the documented static-camera shorthand;
any other shape is an error, never broadcast.
"""

from __future__ import annotations

import json
import os
import warnings

import imageio.v3 as iio
import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.data import sequence as seq_lib
from hsjax.io import npz as npz_lib

FORMAT_NAME = "hsjax-sequence"
FORMAT_VERSION = 1
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def to_uint8(x: np.ndarray) -> np.ndarray:
  return np.round(np.clip(np.asarray(x, np.float32), 0, 1) * 255).astype(np.uint8)


def save_sequence(path: str, sequence: seq_lib.Sequence, *, _params: bool = True) -> None:
  """Writes ``sequence`` in the hsjax layout (see the module docstring).

  Images and masks are quantised to 8 bit (``round(255 x)``), depth is stored exactly.
  """
  os.makedirs(path, exist_ok=True)
  num_frames = len(sequence)
  arrays = {
      "format": np.array(FORMAT_NAME), "version": np.array(FORMAT_VERSION),
      "name": np.array(sequence.name), "fps": np.array(float(sequence.fps)),
      "width": np.array(int(sequence.cameras.width)),
      "height": np.array(int(sequence.cameras.height)),
      "K": np.asarray(sequence.cameras.K, np.float32),
      "world_to_cam": np.asarray(sequence.cameras.world_to_cam, np.float32),
      "depth_kind": np.array(sequence.depth_kind or "none"),
  }
  if sequence.depth_K is not None:
    arrays["depth_K"] = np.asarray(sequence.depth_K, np.float32)
  for prefix, params in (("hmr", sequence.hmr), ("gt", sequence.gt)):
    if params is None or not _params:
      continue
    for field in ("betas", "body_pose", "global_orient", "transl"):
      arrays[f"{prefix}_{field}"] = np.asarray(getattr(params, field), np.float32)
  if not _params:  # eval views: keep the frame count without duplicating parameters
    arrays["num_frames"] = np.array(num_frames)
  np.savez(os.path.join(path, "sequence.npz"), **arrays)
  for sub in ("images", "masks") + (("depth",) if sequence.depth is not None else ()):
    os.makedirs(os.path.join(path, sub), exist_ok=True)
  for t in range(num_frames):
    stem = f"{t:06d}"
    iio.imwrite(os.path.join(path, "images", stem + ".png"), to_uint8(sequence.images[t]))
    iio.imwrite(os.path.join(path, "masks", stem + ".png"), to_uint8(sequence.masks[t]))
    if sequence.depth is not None:
      np.save(os.path.join(path, "depth", stem + ".npy"),
              np.asarray(sequence.depth[t], np.float32))
  with open(os.path.join(path, "metadata.json"), "w") as f:
    json.dump(sequence.metadata, f, indent=1, sort_keys=True, default=_json_default)
  for i, view in enumerate(sequence.eval_views):
    save_sequence(os.path.join(path, "eval_views", f"{i:02d}"), view, _params=False)
  if sequence.novel_pose is not None:
    save_sequence(os.path.join(path, "novel_pose"), sequence.novel_pose)


def _json_default(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


class InputWarning(UserWarning):
  """Input accepted under an assumption the message states (e.g. masks stored as 0/1)."""


# Folders already warned about (one warning per folder, not one per frame).
_WARNED: set[tuple[str, str]] = set()


def _warn_once(path: str, kind: str, message: str) -> None:
  key = (os.path.dirname(os.path.abspath(path)), kind)
  if key not in _WARNED:
    _WARNED.add(key)
    warnings.warn(InputWarning(message), stacklevel=3)


def _imread(path: str, what: str) -> np.ndarray:
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: {what} file not found") from None
  try:
    # From bytes: imageio leaks the file handle of a path it cannot decode.
    return iio.imread(data, extension=os.path.splitext(path)[1].lower() or None)
  except Exception as e:  # Pillow / imageio raise many types on damaged files
    raise ValueError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e


def load_image(path: str) -> np.ndarray:
  """An RGB image as float32 ``[H, W, 3]`` in [0, 1] (8 or 16 bit; grey and RGBA accepted).

  Raises:
    ValueError: an unreadable or truncated file, or an unsupported layout (names the file).
  """
  img = _imread(path, "image")
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=2)
  if img.ndim != 3 or img.shape[-1] not in (3, 4):
    raise ValueError(f"{path}: an image must be [H, W] or [H, W, 3|4], found {list(img.shape)}")
  if img.shape[-1] == 4:
    img = img[..., :3]
  if img.dtype not in (np.uint8, np.uint16):
    raise ValueError(f"{path}: an image must be 8 or 16 bit, found {img.dtype}")
  scale = 65535.0 if img.dtype == np.uint16 else 255.0
  return img.astype(np.float32) / scale


def mask_from_array(m: np.ndarray, path: str) -> np.ndarray:
  """A stored mask array as float32 person coverage in [0, 1].

  Integer masks are 0/255 (8 bit) or 0/65535 (16 bit); a mask whose values are only 0 and 1
  (a common mistake: saved as 0/1) is read as 1 = person, with an :class:`InputWarning` naming
  the folder. Float masks must lie in [0, 1]; float masks in 0..255 are rescaled with a
  warning. Anything else raises ``ValueError`` naming ``path``.
  """
  m = np.asarray(m)
  if m.ndim == 3:  # RGB(A) mask: any channel
    m = m[..., :3].max(axis=-1)
  if m.ndim != 2:
    raise ValueError(f"{path}: a mask must be [H, W] (or RGB), found {list(m.shape)}")
  if m.dtype == bool:
    return m.astype(np.float32)
  if np.issubdtype(m.dtype, np.integer):
    top = int(m.max(initial=0))
    if 0 < top <= 1:
      _warn_once(path, "mask01", f"{path}: mask values are 0/1, expected 0/255; read as "
                 "1 = person (every mask of this folder is read so)")
      return m.astype(np.float32)
    if int(m.min(initial=0)) < 0:
      raise ValueError(f"{path}: mask values must be >= 0, found {int(m.min())}")
    scale = 65535.0 if m.dtype == np.uint16 else 255.0
    if top > scale:
      raise ValueError(f"{path}: mask values must lie in [0, {scale:g}] for {m.dtype}, found "
                       f"max {top}")
    return m.astype(np.float32) / scale
  m = m.astype(np.float32)
  if not np.all(np.isfinite(m)):
    raise ValueError(f"{path}: mask contains NaN or inf")
  lo, hi = float(m.min(initial=0.0)), float(m.max(initial=0.0))
  if lo < 0 or hi > 255:
    raise ValueError(f"{path}: mask values must lie in [0, 1], found [{lo:g}, {hi:g}]")
  if hi > 1.0 + 1e-3:
    _warn_once(path, "mask255", f"{path}: float mask values reach {hi:g}, expected [0, 1]; "
               "read as 0..255 (divided by 255)")
    return m / 255.0
  return m


def load_label_mask(path: str) -> np.ndarray:
  """A label image (e.g. CIHP body parts, or 0/1) as float32 ``[H, W]``: 1 where > 0."""
  m = _imread(path, "mask")
  if m.ndim == 3:
    m = m[..., :3].max(axis=-1)
  return (m > 0).astype(np.float32)


def load_mask(path: str) -> np.ndarray:
  """A person mask file (PNG/JPEG, or ``.npy``) as float32 ``[H, W]`` in [0, 1]; see
  :func:`mask_from_array` for the accepted encodings."""
  if path.endswith(".npy"):
    return mask_from_array(_load_npy(path, "mask"), path)
  return mask_from_array(_imread(path, "mask"), path)


def _load_npy(path: str, what: str) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: {what} file not found") from None
  except (ValueError, OSError, EOFError) as e:
    raise ValueError(f"{path}: not a readable {what} .npy array ({type(e).__name__}: "
                     f"{e})") from e


def load_depth(path: str, *, metric: bool = True) -> np.ndarray:
  """A depth map: ``.npy`` float metres, or a 16-bit ``.png`` in millimetres.

  ``metric`` checks the unit (:func:`hsjax.data.sequence.check_depth`); relative depth
  (affine-ambiguous) is only checked for NaN / inf.
  """
  if path.endswith(".npy"):
    d = _load_npy(path, "depth")
  else:
    d = _imread(path, "depth map")
    if d.dtype != np.uint16:
      raise ValueError(f"{path}: a depth PNG must be 16-bit millimetres, found {d.dtype}")
    d = d.astype(np.float32) / 1000.0
  return seq_lib.check_depth(d, path, metric=metric)


def load_relative_depth(path: str) -> np.ndarray:
  return load_depth(path, metric=False)


def _frame_files(folder: str, exts: tuple[str, ...]) -> dict[str, str]:
  if not os.path.isdir(folder):
    return {}
  out = {}
  for f in sorted(os.listdir(folder)):
    stem, ext = os.path.splitext(f)
    if ext.lower() in exts:
      out[stem] = os.path.join(folder, f)
  return out


def _params_from(arrays, prefix: str, source: str):
  keys = [f"{prefix}_{f}" for f in ("betas", "body_pose", "global_orient", "transl")]
  present = [k in arrays for k in keys]
  if not any(present):
    return None
  if not all(present):
    missing = [k for k, p in zip(keys, present) if not p]
    raise ValueError(f"{source}: '{prefix}' parameters are incomplete; missing {missing}")
  return body_lib.SMPLParams(betas=np.asarray(arrays[keys[0]]), body_pose=np.asarray(
      arrays[keys[1]]), global_orient=np.asarray(arrays[keys[2]]),
                             transl=np.asarray(arrays[keys[3]]))


def _per_frame(value: np.ndarray, num_frames: int, tail: tuple[int, ...], field: str,
               source: str) -> np.ndarray:
  value = np.asarray(value, np.float32)
  if value.shape == tail:  # the documented static-camera shorthand
    return np.repeat(value[None], num_frames, axis=0)
  if value.shape != (num_frames, *tail):
    raise ValueError(f"{source}: field '{field}' must be {list(tail)} or "
                     f"[{num_frames}, {', '.join(map(str, tail))}], found {list(value.shape)}")
  return value


def load_hsjax(path: str, *, parent: seq_lib.Sequence | None = None) -> seq_lib.Sequence:
  """Loads a directory in the hsjax layout; frames stay on disk until indexed."""
  npz_path = os.path.join(path, "sequence.npz")
  if not os.path.exists(npz_path):
    raise FileNotFoundError(f"{path}: not an hsjax sequence (no sequence.npz)")
  arrays = npz_lib.read_npz(npz_path, "hsjax sequence file")
  fmt = str(arrays.get("format", ""))
  if fmt != FORMAT_NAME:
    raise ValueError(f"{npz_path}: field 'format' must be '{FORMAT_NAME}', found '{fmt}'")
  version = int(arrays.get("version", -1))
  if version != FORMAT_VERSION:
    raise ValueError(f"{npz_path}: field 'version' must be {FORMAT_VERSION}, found {version}")
  for key in ("width", "height", "K", "world_to_cam"):
    if key not in arrays:
      raise ValueError(f"{npz_path}: missing field '{key}'; found {sorted(arrays)}")
  width, height = int(arrays["width"]), int(arrays["height"])
  hmr = _params_from(arrays, "hmr", npz_path)
  gt = _params_from(arrays, "gt", npz_path)
  inherited = hmr is None
  if inherited:
    if parent is None:
      raise ValueError(f"{npz_path}: missing the HMR parameters 'hmr_betas', 'hmr_body_pose', "
                       "'hmr_global_orient', 'hmr_transl'")
    hmr, gt = parent.hmr, parent.gt

  images = _frame_files(os.path.join(path, "images"), _IMAGE_EXTS)
  masks = _frame_files(os.path.join(path, "masks"), _IMAGE_EXTS)
  depths = _frame_files(os.path.join(path, "depth"), (".npy", ".png"))
  num_frames = int(np.asarray(hmr.body_pose).shape[0])
  if len(images) != num_frames:
    raise ValueError(f"{path}/images: found {len(images)} frames, expected {num_frames} "
                     f"(hmr_body_pose in {npz_path})")
  if sorted(masks) != sorted(images):
    extra = sorted(set(masks) ^ set(images))[:5]
    raise ValueError(f"{path}/masks: frame names do not match images/ ({len(masks)} masks, "
                     f"{len(images)} images; first differing names {extra})")
  if depths and sorted(depths) != sorted(images):
    raise ValueError(f"{path}/depth: frame names do not match images/ ({len(depths)} depth "
                     f"maps, {len(images)} images)")
  stems = sorted(images)
  cameras = Camera(K=_per_frame(arrays["K"], num_frames, (3, 3), "K", npz_path),
                   world_to_cam=_per_frame(arrays["world_to_cam"], num_frames, (4, 4),
                                           "world_to_cam", npz_path),
                   width=width, height=height)
  depth_kind = str(arrays.get("depth_kind", "metric" if depths else "none"))
  depth_kind = None if depth_kind == "none" else depth_kind
  meta_path = os.path.join(path, "metadata.json")
  metadata = {}
  if os.path.exists(meta_path):
    try:
      with open(meta_path) as f:
        metadata = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{meta_path}: not valid JSON ({e})") from e
    if not isinstance(metadata, dict):
      raise ValueError(f"{meta_path}: expected a JSON object, found {type(metadata).__name__}")
  metadata.setdefault("source", os.path.abspath(path))
  # Files written before depth_K was a field of its own kept it in metadata.json.
  depth_k = arrays.get("depth_K", metadata.pop("depth_K", None))
  if depth_k is not None:
    depth_k = _per_frame(np.asarray(depth_k, np.float32), num_frames, (3, 3), "depth_K",
                         npz_path)
  seq = seq_lib.Sequence(
      name=str(arrays.get("name", os.path.basename(os.path.normpath(path)))),
      images=seq_lib.LazyFrames([images[s] for s in stems], load_image, (height, width, 3),
                                field="images"),
      masks=seq_lib.LazyFrames([masks[s] for s in stems], load_mask, (height, width),
                               field="masks"),
      depth=(seq_lib.LazyFrames([depths[s] for s in stems], load_relative_depth
                                if depth_kind == "relative" else load_depth, (height, width),
                                field="depth") if depths else None),
      depth_kind=depth_kind if depths else None, depth_K=depth_k, cameras=cameras, hmr=hmr, gt=gt,
      fps=float(arrays.get("fps", parent.fps if parent is not None else 30.0)),
      metadata=metadata)
  seq = seq_lib.validate_sequence(seq, npz_path)
  if inherited:  # share the parent's parameter objects (one set of poses per sequence)
    seq.hmr, seq.gt = parent.hmr, parent.gt
  _check_first_frame(seq, path)
  views_dir = os.path.join(path, "eval_views")
  if os.path.isdir(views_dir):
    seq.eval_views = [load_hsjax(os.path.join(views_dir, v), parent=seq)
                      for v in sorted(os.listdir(views_dir))]
  if os.path.isdir(os.path.join(path, "novel_pose")):
    seq.novel_pose = load_hsjax(os.path.join(path, "novel_pose"), parent=None)
  return seq


def _check_first_frame(seq: seq_lib.Sequence, path: str) -> None:
  """Loads frame 0 so a size mismatch or an empty mask shows up at load time, not mid-fit."""
  seq.images[0]  # raises with the file name on a size mismatch  pylint: disable=pointless-statement
  mask = seq.masks[0]
  if mask.max() <= 0:
    raise ValueError(f"{seq.masks.paths[0]}: field 'masks' frame 0 is empty (no person pixel)")
  if seq.depth is not None:
    seq.depth[0]  # pylint: disable=pointless-statement
  del path
