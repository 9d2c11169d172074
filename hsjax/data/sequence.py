"""The host-side container of a human video sequence, lazy frame arrays, and input validation.

A :class:`Sequence` is plain Python (not a JAX pytree): it may hold lazily loaded frames
that never fit in memory at once. The fitting code takes the arrays it needs per step
(``sequence.frame(t)`` or slices of ``images`` / ``masks``) and puts them on the device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence as SequenceT

import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera

DEPTH_KINDS = ("metric", "relative", None)


class LazyFrames:
  """A read-only array-like ``[T, ...]`` whose frames are loaded on demand.

  Indexing with an int loads one frame; a slice, list or array loads those frames and
  stacks them; ``np.asarray(lazy)`` loads everything. ``shape`` and ``dtype`` are known
  without loading (given at construction, checked on every load).
  """

  def __init__(self, paths: SequenceT[str], loader: Callable[[str], np.ndarray],
               frame_shape: tuple[int, ...], dtype=np.float32, field: str = "frames"):
    self.paths = list(paths)
    self._loader = loader
    self._frame_shape = tuple(frame_shape)
    self.dtype = np.dtype(dtype)
    self.field = field

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self.paths), *self._frame_shape)

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __len__(self) -> int:
    return len(self.paths)

  def _load(self, i: int) -> np.ndarray:
    frame = np.asarray(self._loader(self.paths[i]), self.dtype)
    if frame.shape != self._frame_shape:
      raise ValueError(f"{self.paths[i]}: {self.field} frame has shape {frame.shape}, expected "
                       f"{self._frame_shape} (as the first frame / the cameras)")
    return frame

  def __getitem__(self, index):
    if isinstance(index, tuple):  # e.g. lazy[t, :, :, 0]
      return self[index[0]][(slice(None),) * (not np.isscalar(index[0])) + index[1:]]
    if isinstance(index, (int, np.integer)):
      n = len(self.paths)
      if not -n <= index < n:
        raise IndexError(f"{self.field}: frame {index} out of range for {n} frames")
      return self._load(int(index) % n)
    idx = np.arange(len(self.paths))[index]
    return np.stack([self._load(int(i)) for i in idx]) if len(idx) else np.zeros(
        (0, *self._frame_shape), self.dtype)

  def __array__(self, dtype=None, copy=None):
    out = self[:]
    return out if dtype is None else out.astype(dtype)

  def __repr__(self) -> str:
    return f"LazyFrames({self.field}, shape={self.shape}, dtype={self.dtype})"


@dataclasses.dataclass
class Sequence:
  """A monocular human video with cameras, HMR estimates and (optionally) ground truth.

  Frames, masks and depth are ``np.ndarray`` or :class:`LazyFrames`. Parameters in ``hmr``
  and ``gt`` are in the world frame of ``cameras`` (importers convert camera-frame outputs).
  """

  name: str
  images: Any  # [T, H, W, 3] float32 RGB in [0, 1].
  masks: Any  # [T, H, W] float32 person mask / coverage in [0, 1].
  depth: Any  # [T, H, W] float32 metres (camera z), 0 where invalid; or None.
  depth_kind: str | None  # "metric", "relative" (affine-ambiguous, mono network) or None.
  cameras: Camera  # K [T, 3, 3], world_to_cam [T, 4, 4] (OpenCV), width, height.
  hmr: body_lib.SMPLParams  # betas [B], body_pose [T, 23, 3], global_orient [T, 3], transl [T, 3].
  gt: body_lib.SMPLParams | None = None  # same form as hmr.
  # [T, 3, 3] intrinsics to unproject `depth` with, when the depth came with its own (a
  # monocular network's estimated focal length); None: the cameras' K.
  depth_K: Any = None
  fps: float = 30.0
  # [T, 24, 3] 2D keypoints at the SMPL joints (x, y pixels; confidence in [0, 1], 0 where
  # unobserved), e.g. hsjax.video's landmarks mapped to SMPL; None: no keypoint term.
  keypoints_2d: Any = None
  eval_views: list["Sequence"] = dataclasses.field(default_factory=list)
  novel_pose: "Sequence | None" = None
  # Free-form JSON. Keys listed in ``metadata["per_frame"]`` hold one entry per frame (e.g. an
  # importer's ``bbox_xywh [T, 4]``, ``keypoints_2d [T, J, 2]``) and are sliced with the frames.
  metadata: dict = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return int(self.hmr.body_pose.shape[0])

  @property
  def num_frames(self) -> int:
    return len(self)

  @property
  def image_size(self) -> tuple[int, int]:
    """(H, W) in pixels."""
    return self.cameras.height, self.cameras.width

  def frame(self, t: int) -> dict:
    """One frame's arrays: image [H,W,3], mask [H,W], depth [H,W] or None, K [3,3],
    world_to_cam [4,4], and the hmr / gt parameters of that frame (betas shared)."""
    out = {
        "index": int(t),
        "image": np.asarray(self.images[t]),
        "mask": np.asarray(self.masks[t]),
        "depth": None if self.depth is None else np.asarray(self.depth[t]),
        "K": np.asarray(self.cameras.K[t]),
        "world_to_cam": np.asarray(self.cameras.world_to_cam[t]),
    }
    for prefix, params in (("hmr", self.hmr), ("gt", self.gt)):
      if params is None:
        continue
      out[f"{prefix}_betas"] = np.asarray(params.betas)
      out[f"{prefix}_body_pose"] = np.asarray(params.body_pose[t])
      out[f"{prefix}_global_orient"] = np.asarray(params.global_orient[t])
      out[f"{prefix}_transl"] = np.asarray(params.transl[t])
    return out

  def slice(self, start: int = 0, stop: int | None = None, step: int = 1) -> "Sequence":
    """Frames ``start:stop:step`` (eval views sliced alike; novel-pose frames kept)."""
    sl = slice(start, stop, step)
    idx = np.arange(len(self))[sl]

    def take(a):
      return None if a is None else (a[idx] if isinstance(a, np.ndarray) else
                                     LazyFrames([a.paths[i] for i in idx], a._loader,
                                                a.shape[1:], a.dtype, a.field)
                                     if isinstance(a, LazyFrames) else np.asarray(a)[idx])

    def params(p):
      return None if p is None else body_lib.SMPLParams(
          betas=p.betas, body_pose=np.asarray(p.body_pose)[idx],
          global_orient=np.asarray(p.global_orient)[idx], transl=np.asarray(p.transl)[idx])

    cams = Camera(K=np.asarray(self.cameras.K)[idx],
                  world_to_cam=np.asarray(self.cameras.world_to_cam)[idx],
                  width=self.cameras.width, height=self.cameras.height)
    metadata = dict(self.metadata)
    for key in self.metadata.get("per_frame", ()):
      if key in metadata:
        metadata[key] = [metadata[key][i] for i in idx]
    return dataclasses.replace(
        self, metadata=metadata, images=take(self.images), masks=take(self.masks),
        depth=take(self.depth),
        depth_K=None if self.depth_K is None else np.asarray(self.depth_K)[idx],
        keypoints_2d=(None if self.keypoints_2d is None
                      else np.asarray(self.keypoints_2d)[idx]),
        cameras=cams, hmr=params(self.hmr), gt=params(self.gt), fps=self.fps / step,
        eval_views=[v.slice(start, stop, step) for v in self.eval_views])


# ------------------------------------------------------------------------------------------
# Validation


# A person filmed more than this far away is implausible: larger depths are in millimetres.
MAX_METRIC_DEPTH_M = 100.0


def check_depth(d: np.ndarray, path: str, *, metric: bool = True) -> np.ndarray:
  """Checks a depth map (metres, 0 = invalid; ``metric=False``: relative, finite only);
  returns it as float32.

  Raises:
    ValueError: NaN / inf, negative values, or values that are millimetres (median of the
      valid pixels above :data:`MAX_METRIC_DEPTH_M`), naming ``path``.
  """
  d = np.asarray(d, np.float32)
  if d.ndim != 2:
    raise ValueError(f"{path}: depth must be [H, W], found {list(d.shape)}")
  if not np.all(np.isfinite(d)):
    raise ValueError(f"{path}: depth contains {int((~np.isfinite(d)).sum())} NaN or inf "
                     "values; expected metres with 0 = invalid")
  if not metric:
    return d
  if float(d.min(initial=0.0)) < 0:
    raise ValueError(f"{path}: depth must be >= 0 (metres, 0 = invalid), found min "
                     f"{float(d.min()):g}")
  valid = d[d > 0]
  if valid.size and float(np.median(valid)) > MAX_METRIC_DEPTH_M:
    raise ValueError(f"{path}: depth must be in metres, found median {float(np.median(valid)):g} "
                     "(millimetres? divide by 1000, or store a 16-bit PNG in millimetres)")
  return d


def check_mask_frame(mask: np.ndarray, t: int, where: str) -> None:
  """Refuses an empty (no person pixel) or constant (e.g. every pixel 0.5 or 1) mask.

  Args:
    mask: [H, W] coverage in [0, 1].
    t: the frame index, for the message.
    where: the file (or sequence) the frame came from.
  """
  top, low = float(np.max(mask)), float(np.min(mask))
  if top <= 0:
    raise ValueError(f"{where}: field 'masks' frame {t} is empty (no person pixel)")
  if top - low < 1e-6:
    raise ValueError(f"{where}: field 'masks' frame {t} is constant (every pixel {top:g}); "
                     "expected a person mask (1 = person, 0 = background)")


def check_masks_content(masks: np.ndarray, source: str, paths=None) -> None:
  """:func:`check_mask_frame` on every frame of ``masks [T, H, W]``."""
  for t in range(masks.shape[0]):
    check_mask_frame(masks[t], t, paths[t] if paths is not None else source)


def read_frames(seq: Sequence, source: str | None = None) -> Sequence:
  """Reads every frame of ``seq`` (and of its eval / novel-pose views) into memory.

  Each file is read once: a damaged or missing file, a mask that is empty or constant, or a
  depth map in the wrong unit raises ``ValueError`` naming the file and the frame index. The
  returned sequence holds numpy arrays, so a fit never meets a bad file half-way.
  """
  source = source or seq.name or "<sequence>"

  def read(frames, field: str):
    if frames is None or not isinstance(frames, LazyFrames):
      return frames
    out = np.empty(frames.shape, frames.dtype)
    for t in range(len(frames)):
      try:
        out[t] = frames[t]
      except (ValueError, FileNotFoundError) as e:
        msg = str(e)
        if frames.paths[t] not in msg:
          msg = f"{frames.paths[t]}: {msg}"
        raise type(e)(f"{msg} ({field} frame {t})") from e
    return out

  masks = read(seq.masks, "masks")
  paths = seq.masks.paths if isinstance(seq.masks, LazyFrames) else None
  check_masks_content(np.asarray(masks), source, paths)
  depth = read(seq.depth, "depth")
  if depth is not None and not isinstance(seq.depth, LazyFrames):
    for t in range(depth.shape[0]):
      check_depth(depth[t], f"{source}: depth frame {t}", metric=seq.depth_kind == "metric")
  out = dataclasses.replace(seq, images=read(seq.images, "images"), masks=masks, depth=depth)
  out.eval_views = [read_frames(v, f"{source} eval view {i}")
                    for i, v in enumerate(seq.eval_views)]
  if seq.novel_pose is not None:
    out.novel_pose = read_frames(seq.novel_pose, f"{source} novel_pose")
  return out


def _check_finite(source: str, field: str, value: np.ndarray) -> None:
  bad = ~np.isfinite(value)
  if np.any(bad):
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{source}: field '{field}' contains NaN or inf (first at index {first}; "
                     f"{int(bad.sum())} bad values)")


def validate_params(params: body_lib.SMPLParams, num_frames: int, source: str,
                    prefix: str = "hmr") -> body_lib.SMPLParams:
  """Checks an SMPL parameter set; returns it with float32 numpy arrays.

  Raises:
    ValueError: naming ``source`` and ``prefix_field`` with the expected and found shapes,
      for a wrong rotation representation (e.g. rotation matrices ``[T, 23, 3, 3]`` or 6D
      where axis-angle ``[T, 23, 3]`` is expected), a frame-count mismatch, or NaN / inf.
  """
  out = {}
  expected = {"body_pose": (num_frames, 23, 3), "global_orient": (num_frames, 3),
              "transl": (num_frames, 3)}
  for field, shape in expected.items():
    value = np.asarray(getattr(params, field))
    if value.shape != shape:
      hint = ""
      if value.shape[-2:] == (3, 3):
        hint = " (rotation matrices given; convert to axis-angle at import)"
      elif value.shape and value.shape[-1] in (4, 6, 9):
        hint = f" (last axis {value.shape[-1]}: quaternion / 6D / flattened matrix given?)"
      elif value.ndim >= 1 and value.shape[0] != num_frames:
        hint = f" (frame count {value.shape[0]} != {num_frames})"
      raise ValueError(f"{source}: field '{prefix}_{field}' must be axis-angle {list(shape)}, "
                       f"found {list(value.shape)}{hint}")
    _check_finite(source, f"{prefix}_{field}", value)
    out[field] = value.astype(np.float32)
  betas = np.asarray(params.betas)
  if betas.ndim != 1:
    raise ValueError(f"{source}: field '{prefix}_betas' must be [B] (shared over frames), found "
                     f"{list(betas.shape)}")
  _check_finite(source, f"{prefix}_betas", betas)
  return body_lib.SMPLParams(betas=betas.astype(np.float32), **out)


def validate_cameras(cameras: Camera, num_frames: int, source: str) -> Camera:
  k = np.asarray(cameras.K, np.float64)
  w2c = np.asarray(cameras.world_to_cam, np.float64)
  if k.shape != (num_frames, 3, 3):
    raise ValueError(f"{source}: field 'K' must be [{num_frames}, 3, 3], found {list(k.shape)}")
  if w2c.shape != (num_frames, 4, 4):
    raise ValueError(f"{source}: field 'world_to_cam' must be [{num_frames}, 4, 4], found "
                     f"{list(w2c.shape)}")
  _check_finite(source, "K", k)
  _check_finite(source, "world_to_cam", w2c)
  rot = w2c[:, :3, :3]
  err = np.abs(rot @ np.swapaxes(rot, -1, -2) - np.eye(3)).max(axis=(1, 2))
  if np.any(err > 1e-3) or np.any(np.linalg.det(rot) < 0):
    t = int(np.argmax(err > 1e-3) if np.any(err > 1e-3) else np.argmax(np.linalg.det(rot) < 0))
    raise ValueError(f"{source}: field 'world_to_cam' frame {t} is not a rigid transform "
                     f"(|R R^T - I| = {err[t]:.2e}, det R = {np.linalg.det(rot[t]):.3f})")
  bottom = np.abs(w2c[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
  if np.any(bottom > 1e-6):
    t = int(np.argmax(bottom > 1e-6))
    raise ValueError(f"{source}: field 'world_to_cam' frame {t}: last row must be [0, 0, 0, 1], "
                     f"found {w2c[t, 3].tolist()}")
  focal = np.minimum(k[:, 0, 0], k[:, 1, 1])
  if np.any(focal <= 0):
    t = int(np.argmax(focal <= 0))
    raise ValueError(f"{source}: field 'K' frame {t}: focal lengths must be positive pixels, "
                     f"found fx={k[t, 0, 0]:g}, fy={k[t, 1, 1]:g}")
  bottom = np.abs(k[:, 2] - np.array([0.0, 0.0, 1.0])).max(axis=1)
  if np.any(bottom > 1e-6):
    t = int(np.argmax(bottom > 1e-6))
    raise ValueError(f"{source}: field 'K' frame {t}: last row must be [0, 0, 1] (an invertible "
                     f"pinhole matrix), found {k[t, 2].tolist()}")
  if cameras.width <= 0 or cameras.height <= 0:
    raise ValueError(f"{source}: image size must be positive, found {cameras.width} x "
                     f"{cameras.height}")
  return Camera(K=k.astype(np.float32), world_to_cam=w2c.astype(np.float32),
                width=int(cameras.width), height=int(cameras.height))


def validate_sequence(seq: Sequence, source: str | None = None, *, check_masks: bool = True
                      ) -> Sequence:
  """Checks that every field of ``seq`` agrees; returns it with normalised arrays.

  Checks: frame counts of images / masks / depth / cameras / hmr / gt, image and mask size
  against the cameras, NaN / inf in parameters and cameras, rotation representation,
  ``depth_kind``, and (``check_masks``) that no mask is empty. Lazy frames are checked by
  shape only; their contents are checked when loaded.

  Raises:
    ValueError: naming the source, the field, the expected and the found value.
  """
  source = source or seq.name or "<sequence>"
  num_frames = int(np.asarray(seq.hmr.body_pose).shape[0]) if np.asarray(
      seq.hmr.body_pose).ndim >= 1 else 0
  if num_frames < 1:
    raise ValueError(f"{source}: the sequence has no frames (hmr_body_pose is empty)")
  cameras = validate_cameras(seq.cameras, num_frames, source)
  h, w = cameras.height, cameras.width
  expected = {"images": (num_frames, h, w, 3), "masks": (num_frames, h, w)}
  if seq.depth is not None:
    expected["depth"] = (num_frames, h, w)
  for field, shape in expected.items():
    value = getattr(seq, field)
    found = tuple(value.shape)
    if found != shape:
      what = "frame count" if found[:1] != shape[:1] else "image size"
      raise ValueError(f"{source}: field '{field}' must be {list(shape)} (frames x H x W from "
                       f"the cameras and hmr), found {list(found)}: {what} mismatch")
  if seq.depth_kind not in DEPTH_KINDS:
    raise ValueError(f"{source}: depth_kind must be one of {DEPTH_KINDS}, found "
                     f"{seq.depth_kind!r}")
  if (seq.depth is None) != (seq.depth_kind is None):
    raise ValueError(f"{source}: depth_kind is {seq.depth_kind!r} but depth is "
                     f"{'missing' if seq.depth is None else 'given'}")
  if seq.depth_K is not None:
    depth_k = np.asarray(seq.depth_K)
    if depth_k.shape not in ((3, 3), (num_frames, 3, 3)):
      raise ValueError(f"{source}: field 'depth_K' must be [3, 3] or [{num_frames}, 3, 3], "
                       f"found {list(depth_k.shape)}")
    _check_finite(source, "depth_K", depth_k)
  hmr = validate_params(seq.hmr, num_frames, source, "hmr")
  gt = None if seq.gt is None else validate_params(seq.gt, num_frames, source, "gt")
  if isinstance(seq.masks, np.ndarray) and check_masks:
    check_masks_content(seq.masks, source)
  if not np.isfinite(seq.fps) or seq.fps <= 0:
    raise ValueError(f"{source}: field 'fps' must be positive, found {seq.fps}")
  return dataclasses.replace(seq, cameras=cameras, hmr=hmr, gt=gt)
