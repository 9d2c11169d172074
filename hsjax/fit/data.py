"""The host edge of a fit: a ``hsjax.data.Sequence`` becomes the arrays a step reads.

Two parts, because a sequence's frames may not fit in memory at once:

* :class:`FrameSource` prepares frames on the host, one at a time: validation (naming the
  field, the frame, the expected and the found value), compositing over the background
  outside the mask, the depth's focal rescaling, and downsampling with the intrinsics that
  match. It keeps prepared frames in host memory up to ``FitConfig.frame_cache_gb`` and
  reads the others again from the sequence (lazily loaded files) when a step needs them. The
  fit puts only each step's F frames on the device (:class:`FrameBatch`), so device memory
  is bounded by the frames per step, not by the length of the sequence.
* :class:`FitData`, the small per-frame arrays that stay on the device for the whole fit
  (cameras, the HMR initialisation, keypoints), made by :func:`prepare_data` in one pass over
  the frames (which also measures the avatar's initial colour and aligns the initial depth).

Multi-subject fits pad subjects to a common length (:func:`pad_frames`).
"""

from __future__ import annotations

import threading

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import tqdm

from hsjax import body as body_lib
from hsjax.body import BodyModel
from hsjax.body import SMPLParams
from hsjax.camera import Camera
from hsjax.fit import align
from hsjax.fit import crop as crop_lib
from hsjax.fit.config import FitConfig


@flax.struct.dataclass(kw_only=True)
class FitData:
  """The per-frame parameters of one subject on device (a leading S axis in multi-subject
  fits); the frames themselves come a step at a time (:class:`FrameBatch`)."""

  depth_weight: jax.Array  # [] 1.0 when the sequence has depth, else 0.0.
  depth_is_metric: jax.Array  # [] 1.0 for metric depth (metres), 0.0 for relative depth.
  K: jax.Array  # [T, 3, 3] intrinsics per frame, pixels of the fitted (downsampled) images.
  # [T, 3, 3] intrinsics to unproject the depth with: the sequence's depth_K (a monocular
  # network's own estimate) when present, else K.
  depth_K: jax.Array
  world_to_cam: jax.Array  # [T, 4, 4] OpenCV extrinsics per frame.
  init: SMPLParams  # the HMR initialisation (world frame), T frames, betas [B].
  # [T, 24, 2] 2D keypoints at the SMPL joints, pixels of the fitted (downsampled) images;
  # zeros when the sequence has none.
  keypoints: jax.Array
  keypoint_conf: jax.Array  # [T, 24] confidence in [0, 1]; all 0 without keypoints.
  frame_valid: jax.Array  # [T] bool; False on padding frames (multi-subject fits).
  mean_color: jax.Array  # [3] mean RGB over the person's pixels of every frame.
  # [] the whole frame's area in fitted pixels (larger than width x height when the fit sees
  # crops of the person): what per-frame pixel thresholds are scaled with.
  frame_area: jax.Array
  width: int = flax.struct.field(pytree_node=False)  # W, pixels.
  height: int = flax.struct.field(pytree_node=False)  # H, pixels.

  @property
  def num_frames(self) -> int:
    return self.frame_valid.shape[-1]

  def cameras(self, frames: jax.Array) -> Camera:
    """The cameras of ``frames`` ([F] indices): K [F, 3, 3], world_to_cam [F, 4, 4]."""
    return Camera(K=self.K[frames], world_to_cam=self.world_to_cam[frames], width=self.width,
                  height=self.height)


@flax.struct.dataclass(kw_only=True)
class FrameBatch:
  """The prepared frames of one step (a leading S axis in multi-subject fits)."""

  frames: jax.Array  # [F] int32 frame indices in the sequence.
  image: jax.Array  # [F, H, W, 3] in [0, 1], composited over the background outside the mask.
  mask: jax.Array  # [F, H, W] person masks in [0, 1].
  depth: jax.Array  # [F, H, W] metres (0 = invalid); zeros when the sequence has none.


def _check(cond: bool, message: str):
  if not cond:
    raise ValueError(message)


class FrameSource:
  """A sequence's frames as the fit sees them, prepared on the host on demand.

  ``frame(t)`` returns frame ``t``'s (image [H, W, 3], mask [H, W], depth [H, W]) at the
  fitted size: composited over ``config.background`` outside the mask when
  ``config.mask_background``, metric depth with its own intrinsics multiplied by
  :func:`focal_ratio`, non-finite depth set to 0 (invalid), then area-downsampled by
  ``factor`` (``config.fit_downsample`` of the frame size); depth within
  ``config.depth_edge_px`` pixels of the silhouette is set to 0 (:func:`interior`). With
  ``config.person_crop`` each frame is first cut to its window around the person (``crop``,
  default :func:`hsjax.fit.crop.person_crops` of this sequence alone; ``self.crop``), and the
  factor is the crop's (``config.crop_factor``). Prepared frames are kept while they fit in
  ``config.frame_cache_gb``; the others are prepared again from the sequence when asked for.
  Safe to call from a prefetching thread.
  """

  def __init__(self, sequence, config: FitConfig, *, crop: crop_lib.PersonCrop | None = None):
    images, masks = sequence.images, sequence.masks
    _check(len(images.shape) == 4 and images.shape[-1] == 3,
           f"sequence.images: expected [T, H, W, 3], found {tuple(images.shape)}")
    t, h, w, _ = images.shape
    _check(tuple(masks.shape) == (t, h, w),
           f"sequence.masks: expected {(t, h, w)}, found {tuple(masks.shape)}")
    self._depth = getattr(sequence, "depth", None)
    if self._depth is not None:
      _check(tuple(self._depth.shape) == (t, h, w),
             f"sequence.depth: expected {(t, h, w)}, found {tuple(self._depth.shape)}")
    kind = getattr(sequence, "depth_kind", "metric") or "metric"
    if kind not in ("metric", "relative"):
      raise ValueError(f"sequence.depth_kind: expected 'metric' or 'relative', found {kind!r}")
    self.image_size = (h, w)  # the sequence's frames, pixels
    if crop is None and config.person_crop:
      (crop,), _ = crop_lib.person_crops([masks], margin=config.person_crop_margin,
                                         factor_of=config.crop_factor,
                                         progress=config.progress and t >= 100)
    self.crop = crop
    if crop is None:
      self.factor = config.fit_downsample(h, w)  # the fitted images are this much smaller
    else:
      _check(crop.origins.shape == (t, 2),
             f"person crop: expected origins of shape {(t, 2)}, found {crop.origins.shape}")
      self.factor = config.crop_factor(crop.height, crop.width)
      h, w = crop.height, crop.width
    self._edge_px = config.depth_edge_px
    self._images, self._masks = images, masks
    self.depth_kind = kind
    self.num_frames = t
    self.height, self.width = h // self.factor, w // self.factor
    self._background = (np.asarray(config.background, np.float32)
                        if config.mask_background else None)
    self._depth_scale = np.ones(t, np.float32)
    depth_k = getattr(sequence, "depth_K", None)
    if (depth_k is not None and self._depth is not None and kind == "metric"
        and config.depth_focal_power):
      k = np.broadcast_to(np.asarray(sequence.cameras.K, np.float32), (t, 3, 3))
      depth_k = np.broadcast_to(np.asarray(depth_k, np.float32), (t, 3, 3))
      self._depth_scale = focal_ratio(k, depth_k, config.depth_focal_power)
    self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    self._cache_bytes = 0
    self._budget = int(config.frame_cache_gb * 2**30)
    self._lock = threading.Lock()

  @property
  def has_depth(self) -> bool:
    return self._depth is not None

  @property
  def cached_frames(self) -> int:
    return len(self._cache)

  def frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``t`` prepared: image [H, W, 3], mask [H, W], depth [H, W] (fitted size;
    read-only arrays)."""
    cached = self._cache.get(t)
    if cached is not None:
      return cached
    prepared = self._prepare(t)
    for x in prepared:
      x.flags.writeable = False  # cached arrays are shared with every later caller
    size = sum(x.nbytes for x in prepared)
    with self._lock:
      if t not in self._cache and self._cache_bytes + size <= self._budget:
        self._cache[t] = prepared
        self._cache_bytes += size
    return prepared

  def batch(self, frames: np.ndarray) -> FrameBatch:
    """The prepared frames ``frames`` ([F] indices) as a numpy :class:`FrameBatch`."""
    images, masks, depths = zip(*(self.frame(int(t)) for t in frames))
    return FrameBatch(frames=np.asarray(frames, np.int32), image=np.stack(images),
                      mask=np.stack(masks), depth=np.stack(depths))

  def empty_batch(self, num_frames: int) -> FrameBatch:
    """Zeros shaped like :meth:`batch` of ``num_frames`` frames (rows another process holds)."""
    h, w = self.height, self.width
    return FrameBatch(frames=np.zeros(num_frames, np.int32),
                      image=np.zeros((num_frames, h, w, 3), np.float32),
                      mask=np.zeros((num_frames, h, w), np.float32),
                      depth=np.zeros((num_frames, h, w), np.float32))

  def _prepare(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.asarray(self._images[t], np.float32)
    mask = np.asarray(self._masks[t], np.float32)
    if not (np.isfinite(image).all() and np.isfinite(mask).all()):
      field = "images" if not np.isfinite(image).all() else "masks"
      raise ValueError(f"sequence.{field}: expected finite values, found NaN or inf in "
                       f"frame {t}")
    if image.max(initial=0.0) > 1.0 + 1e-3:
      raise ValueError(f"sequence.images: expected floats in [0, 1], found max {image.max()} "
                       f"in frame {t}")
    rows, cols = (slice(None), slice(None)) if self.crop is None else self.crop.window(t)
    image, mask = image[rows, cols], mask[rows, cols]
    if self._depth is None:
      depth = np.zeros(mask.shape, np.float32)
    else:
      depth = np.asarray(self._depth[t], np.float32)[rows, cols]
      depth = np.where(np.isfinite(depth), depth, 0.0) * self._depth_scale[t]
    if self._background is not None:
      image = image * mask[..., None] + self._background * (1.0 - mask[..., None])
    if self.factor > 1:
      image, mask, depth = (x[0] for x in _downsample(image[None], mask[None], depth[None],
                                                      self.factor))
    if self._edge_px and self._depth is not None:
      depth = np.where(interior(mask, self._edge_px), depth, 0.0)
    return image.astype(np.float32), mask.astype(np.float32), depth.astype(np.float32)


def interior(mask: np.ndarray, pixels: int) -> np.ndarray:
  """[H, W] bool: the person (``mask`` > 0.5) without its outer ``pixels`` rings (8-connected
  erosion: a pixel stays when every pixel within ``pixels`` in x and y is the person)."""
  person = mask > 0.5
  if pixels <= 0:
    return person
  return scipy.ndimage.binary_erosion(person, structure=np.ones((3, 3), bool),
                                      iterations=pixels)


def prepare_data(sequence, config: FitConfig, body_model: BodyModel | None = None, *,
                 source: FrameSource | None = None) -> FitData:
  """The :class:`FitData` of a ``hsjax.data.Sequence``, after one pass over its frames.

  Validates shapes (naming the field, expected and found) and every frame (through
  ``source``, default ``FrameSource(sequence, config)``, whose cache the pass fills). The pass
  measures the mean colour of the person and, with ``config.align_depth`` and metric depth,
  aligns the initial translation to the depth frame by frame
  (:func:`hsjax.fit.align.frame_depth_offset`; ``body_model`` poses the body, default
  ``load_body_model(config.body_model)``).
  """
  source = FrameSource(sequence, config) if source is None else source
  t = source.num_frames
  h, w = source.image_size
  cams = sequence.cameras
  k = np.broadcast_to(np.asarray(cams.K, np.float32), (t, 3, 3))
  w2c = np.broadcast_to(np.asarray(cams.world_to_cam, np.float32), (t, 4, 4))
  _check((cams.width, cams.height) == (w, h),
         f"sequence.cameras: size {(cams.width, cams.height)} differs from the images' {(w, h)}")
  hmr = sequence.hmr
  _check(hmr.body_pose.shape == (t, 23, 3),
         f"sequence.hmr.body_pose: expected {(t, 23, 3)}, found {hmr.body_pose.shape}")
  _check(hmr.global_orient.shape == (t, 3),
         f"sequence.hmr.global_orient: expected {(t, 3)}, found {hmr.global_orient.shape}")
  _check(hmr.transl.shape == (t, 3),
         f"sequence.hmr.transl: expected {(t, 3)}, found {hmr.transl.shape}")
  betas = np.asarray(hmr.betas, np.float32)
  if betas.ndim == 2:  # per-frame HMR shapes: the fit shares one, their mean.
    betas = betas.mean(axis=0)
  _check(t >= config.batch_frames,
         f"sequence has {t} frames, fewer than FitConfig.batch_frames={config.batch_frames}")
  depth_k = k
  if getattr(sequence, "depth_K", None) is not None:
    depth_k = np.asarray(sequence.depth_K, np.float32)
    _check(depth_k.shape in ((3, 3), (t, 3, 3)),
           f"sequence.depth_K: expected [3, 3] or {[t, 3, 3]}, found "
           f"{list(depth_k.shape)}")
    depth_k = np.broadcast_to(depth_k, (t, 3, 3))
    if config.depth_focal_power and source.depth_kind == "metric" and source.has_depth:
      depth_k = k  # the source rescales the depth to the camera's focal length
  origins = np.zeros((t, 2), np.float32)
  if source.crop is not None:
    k, depth_k = source.crop.shift_intrinsics(k), source.crop.shift_intrinsics(depth_k)
    origins = source.crop.origins.astype(np.float32)
  k = _scale_intrinsics(k, source.factor)
  depth_k = _scale_intrinsics(depth_k, source.factor)
  keypoints, keypoint_conf = _keypoints(sequence, t, source.factor, origins)
  init = SMPLParams(betas=jnp.asarray(betas),
                    body_pose=jnp.asarray(hmr.body_pose, jnp.float32),
                    global_orient=jnp.asarray(hmr.global_orient, jnp.float32),
                    transl=jnp.asarray(hmr.transl, jnp.float32))
  align_depth = config.align_depth and source.has_depth and source.depth_kind == "metric"
  vertices = None
  if align_depth:
    if body_model is None:
      body_model = body_lib.load_body_model(config.body_model)
    vertices, joints = body_lib.pose_frames_host(body_model, init)
  mean_color, offsets = _frames_pass(source, vertices, k, w2c, progress=config.progress)
  if align_depth:
    init = init.replace(transl=jnp.asarray(align.slide_along_rays(
        init.transl, joints[:, 0], align.smooth_offsets(offsets, 1), w2c)))
  return FitData(depth_weight=jnp.asarray(float(source.has_depth), jnp.float32),
                 depth_is_metric=jnp.asarray(float(source.depth_kind == "metric"),
                                             jnp.float32),
                 K=jnp.asarray(k), depth_K=jnp.asarray(depth_k),
                 world_to_cam=jnp.asarray(w2c), init=init,
                 keypoints=jnp.asarray(keypoints), keypoint_conf=jnp.asarray(keypoint_conf),
                 frame_valid=jnp.ones((t,), bool), mean_color=jnp.asarray(mean_color),
                 frame_area=jnp.asarray(h * w / source.factor**2, jnp.float32),
                 width=source.width, height=source.height)


def _frames_pass(source: FrameSource, vertices: np.ndarray | None, k: np.ndarray,
                 w2c: np.ndarray, *, progress: bool) -> tuple[np.ndarray, np.ndarray]:
  """One pass over every prepared frame: (mean person colour [3], depth offsets [T]).

  With the initial body's ``vertices`` [T, V, 3] (world), the offsets are
  :func:`hsjax.fit.align.frame_depth_offset` (metres, NaN where a frame has no evidence);
  without, all NaN. ``k`` [T, 3, 3] are the fitted images' intrinsics, ``w2c`` [T, 4, 4].
  """
  t = source.num_frames
  color_sum, mask_sum = np.zeros(3, np.float64), 0.0
  offsets = np.full(t, np.nan)
  for i in tqdm.tqdm(range(t), desc="frames", disable=not progress or t < 100, leave=False):
    image, mask, depth = source.frame(i)
    color_sum += np.einsum("hwc,hw->c", image, mask, dtype=np.float64)
    mask_sum += float(mask.sum(dtype=np.float64))
    if vertices is not None:
      offsets[i] = align.frame_depth_offset(vertices[i], depth, mask, k[i], w2c[i])
  return (color_sum / max(mask_sum, 1.0)).astype(np.float32), offsets


def focal_ratio(k: np.ndarray, depth_k: np.ndarray, power: float) -> np.ndarray:
  """[T] ``(f_camera / f_depth) ** power`` with ``f = sqrt(fx fy)``: K, depth_K [T, 3, 3]."""
  f_cam = np.sqrt(k[:, 0, 0] * k[:, 1, 1])
  f_depth = np.sqrt(depth_k[:, 0, 0] * depth_k[:, 1, 1])
  return ((f_cam / f_depth) ** power).astype(np.float32)


def _keypoints(sequence, t: int, factor: int,
               origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``sequence.keypoints_2d`` [T, 24, 3] as (pixels [T, 24, 2] of the fitted images, conf
  [T, 24]): moved by each frame's crop origin ``origins`` [T, 2] (x0, y0), then at 1/factor.

  Non-finite keypoints get confidence 0 (and position 0), so they can never produce a NaN.
  """
  value = getattr(sequence, "keypoints_2d", None)
  if value is None:
    return np.zeros((t, 24, 2), np.float32), np.zeros((t, 24), np.float32)
  kp = np.asarray(value, np.float32)
  _check(kp.shape == (t, 24, 3), f"sequence.keypoints_2d: expected {(t, 24, 3)} (x, y pixels, "
         f"confidence at the SMPL joints), found {kp.shape}")
  finite = np.all(np.isfinite(kp), axis=-1)
  conf = np.where(finite, np.clip(np.nan_to_num(kp[..., 2]), 0.0, 1.0), 0.0)
  # Pixel centres at +0.5: continuous coordinates scale by 1/factor with block averaging.
  xy = np.where(finite[..., None], np.nan_to_num(kp[..., :2]) - origins[:, None], 0.0) / factor
  return xy.astype(np.float32), conf.astype(np.float32)


def _downsample(images, masks, depth, factor: int):
  """Area-averages images [T, H, W, 3], masks and depth [T, H, W] by ``factor``.

  With pixel centres at ``+0.5`` (hsjax's convention), an image downsampled by block averages
  is seen by ``diag(1/f, 1/f, 1) K`` (:func:`_scale_intrinsics`). Depth is averaged over the
  valid (> 0) pixels of a block and is valid where at least half are.
  """
  t, h, w = masks.shape

  def blocks(x):
    return x.reshape(t, h // factor, factor, w // factor, factor, *x.shape[3:])

  images = blocks(images).mean(axis=(2, 4))
  masks = blocks(masks).mean(axis=(2, 4))
  valid = blocks((depth > 0).astype(np.float32))
  depth_sum = blocks(depth).sum(axis=(2, 4))
  count = valid.sum(axis=(2, 4))
  depth = np.where(count >= factor * factor / 2.0, depth_sum / np.maximum(count, 1.0), 0.0)
  return images, masks, depth.astype(np.float32)


def _scale_intrinsics(k: np.ndarray, factor: int) -> np.ndarray:
  """[..., 3, 3] intrinsics of images downsampled by ``factor`` (block averages)."""
  return np.diag([1.0 / factor, 1.0 / factor, 1.0]).astype(np.float32) @ k


def pad_frames(data: FitData, num_frames: int) -> FitData:
  """Pads a subject to ``num_frames`` frames by repeating its last frame (marked invalid)."""
  t = data.num_frames
  if num_frames < t:
    raise ValueError(f"pad_frames: cannot pad {t} frames down to {num_frames}")
  idx = np.minimum(np.arange(num_frames), t - 1)

  def take(x):
    return x[idx] if (hasattr(x, "ndim") and x.ndim >= 1 and x.shape[0] == t) else x

  padded = data.replace(K=take(data.K), depth_K=take(data.depth_K),
                        world_to_cam=take(data.world_to_cam),
                        keypoints=take(data.keypoints), keypoint_conf=take(data.keypoint_conf),
                        init=data.init.replace(body_pose=take(data.init.body_pose),
                                               global_orient=take(data.init.global_orient),
                                               transl=take(data.init.transl)))
  return padded.replace(frame_valid=jnp.arange(num_frames) < t)
