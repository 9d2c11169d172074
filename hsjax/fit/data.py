"""The host edge of a fit: a ``hsjax.data.Sequence`` becomes :class:`FitData` on device.

Everything here runs once, before the first step, in numpy: validation (naming the field,
the expected and the found shape), compositing over the background, downsampling with the
intrinsics that match, and padding of subjects to a common length for ``fit_many``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import body as body_lib
from hsjax.body import BodyModel
from hsjax.body import SMPLParams
from hsjax.camera import Camera
from hsjax.fit import align
from hsjax.fit.config import FitConfig


@flax.struct.dataclass(kw_only=True)
class FitData:
  """The observations of one subject on device (a leading S axis in multi-subject fits)."""

  images: jax.Array  # [T, H, W, 3] in [0, 1], composited over the background outside the mask.
  masks: jax.Array  # [T, H, W] person masks in [0, 1].
  depth: jax.Array  # [T, H, W] metres (0 = invalid); zeros when the sequence has none.
  depth_weight: jax.Array  # [] 1.0 when the sequence has depth, else 0.0.
  depth_is_metric: jax.Array  # [] 1.0 for metric depth (metres), 0.0 for relative depth.
  K: jax.Array  # [T, 3, 3] intrinsics per frame, pixels.
  # [T, 3, 3] intrinsics to unproject `depth` with: the sequence's depth_K (a monocular
  # network's own estimate) when present, else K.
  depth_K: jax.Array
  world_to_cam: jax.Array  # [T, 4, 4] OpenCV extrinsics per frame.
  init: SMPLParams  # the HMR initialisation (world frame), T frames, betas [B].
  # [T, 24, 2] 2D keypoints at the SMPL joints, pixels of the fitted (downsampled) images;
  # zeros when the sequence has none.
  keypoints: jax.Array
  keypoint_conf: jax.Array  # [T, 24] confidence in [0, 1]; all 0 without keypoints.
  frame_valid: jax.Array  # [T] bool; False on padding frames (multi-subject fits).
  width: int = flax.struct.field(pytree_node=False)  # W, pixels.
  height: int = flax.struct.field(pytree_node=False)  # H, pixels.

  @property
  def num_frames(self) -> int:
    return self.frame_valid.shape[-1]

  def cameras(self, frames: jax.Array) -> Camera:
    """The cameras of ``frames`` ([F] indices): K [F, 3, 3], world_to_cam [F, 4, 4]."""
    return Camera(K=self.K[frames], world_to_cam=self.world_to_cam[frames], width=self.width,
                  height=self.height)


def _check(cond: bool, message: str):
  if not cond:
    raise ValueError(message)


def prepare_data(sequence, config: FitConfig, body_model: BodyModel | None = None) -> FitData:
  """Turns a ``hsjax.data.Sequence`` into a :class:`FitData` on device.

  Validates shapes (naming the field, expected and found) and composites the images over
  ``config.background`` outside the mask when ``config.mask_background``. With
  ``config.align_depth`` and metric depth, the initial translation is aligned to the depth
  (:func:`hsjax.fit.align.align_translation`; ``body_model`` poses the body, default
  ``load_body_model(config.body_model)``).
  """
  images = np.asarray(sequence.images, np.float32)
  _check(images.ndim == 4 and images.shape[-1] == 3,
         f"sequence.images: expected [T, H, W, 3], found {images.shape}")
  t, h, w, _ = images.shape
  if images.max(initial=0.0) > 1.0 + 1e-3:
    raise ValueError(f"sequence.images: expected floats in [0, 1], found max {images.max()}")
  masks = np.asarray(sequence.masks, np.float32)
  _check(masks.shape == (t, h, w), f"sequence.masks: expected {(t, h, w)}, found {masks.shape}")
  if getattr(sequence, "depth", None) is None:
    depth = np.zeros((t, h, w), np.float32)
    depth_weight = 0.0
  else:
    depth = np.asarray(sequence.depth, np.float32)
    _check(depth.shape == (t, h, w),
           f"sequence.depth: expected {(t, h, w)}, found {depth.shape}")
    depth = np.where(np.isfinite(depth), depth, 0.0)
    depth_weight = 1.0
  kind = getattr(sequence, "depth_kind", "metric") or "metric"
  if kind not in ("metric", "relative"):
    raise ValueError(f"sequence.depth_kind: expected 'metric' or 'relative', found {kind!r}")
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
  if config.mask_background:
    bg = np.asarray(config.background, np.float32)
    images = images * masks[..., None] + bg * (1.0 - masks[..., None])
  depth_k = k
  if getattr(sequence, "depth_K", None) is not None:
    depth_k = np.asarray(sequence.depth_K, np.float32)
    _check(depth_k.shape in ((3, 3), (t, 3, 3)),
           f"sequence.depth_K: expected [3, 3] or {[t, 3, 3]}, found "
           f"{list(depth_k.shape)}")
    depth_k = np.broadcast_to(depth_k, (t, 3, 3))
    if config.depth_focal_power and kind == "metric" and depth_weight > 0:
      depth = depth * focal_ratio(k, depth_k, config.depth_focal_power)[:, None, None]
      depth_k = k
  if config.downsample > 1:
    images, masks, depth, k = _downsample(images, masks, depth, k, config.downsample)
    depth_k = _scale_intrinsics(depth_k, config.downsample)
    h, w = masks.shape[1:]
  keypoints, keypoint_conf = _keypoints(sequence, t, config.downsample)
  init = SMPLParams(betas=jnp.asarray(betas),
                    body_pose=jnp.asarray(hmr.body_pose, jnp.float32),
                    global_orient=jnp.asarray(hmr.global_orient, jnp.float32),
                    transl=jnp.asarray(hmr.transl, jnp.float32))
  if config.align_depth and depth_weight > 0 and kind == "metric":
    if body_model is None:
      body_model = body_lib.load_body_model(config.body_model)
    transl, _ = align.align_translation(body_model, init, depth, masks, k, w2c)
    init = init.replace(transl=jnp.asarray(transl))
  return FitData(images=jnp.asarray(images), masks=jnp.asarray(masks),
                 depth=jnp.asarray(depth), depth_weight=jnp.asarray(depth_weight, jnp.float32),
                 depth_is_metric=jnp.asarray(float(kind == "metric"), jnp.float32),
                 K=jnp.asarray(k), depth_K=jnp.asarray(depth_k),
                 world_to_cam=jnp.asarray(w2c), init=init,
                 keypoints=jnp.asarray(keypoints), keypoint_conf=jnp.asarray(keypoint_conf),
                 frame_valid=jnp.ones((t,), bool), width=w, height=h)


def focal_ratio(k: np.ndarray, depth_k: np.ndarray, power: float) -> np.ndarray:
  """[T] ``(f_camera / f_depth) ** power`` with ``f = sqrt(fx fy)``: K, depth_K [T, 3, 3]."""
  f_cam = np.sqrt(k[:, 0, 0] * k[:, 1, 1])
  f_depth = np.sqrt(depth_k[:, 0, 0] * depth_k[:, 1, 1])
  return ((f_cam / f_depth) ** power).astype(np.float32)


def _keypoints(sequence, t: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
  """``sequence.keypoints_2d`` [T, 24, 3] as (pixels [T, 24, 2] at 1/factor, conf [T, 24]).

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
  xy = np.where(finite[..., None], np.nan_to_num(kp[..., :2]), 0.0) / factor
  return xy.astype(np.float32), conf.astype(np.float32)


def _downsample(images, masks, depth, k, factor: int):
  """Area-averages [T, H, W, ...] by ``factor`` and rescales ``K`` to match.

  With pixel centres at ``+0.5`` (hsjax's convention), an image downsampled by block averages
  is seen by ``diag(1/f, 1/f, 1) K``: focal lengths and principal point scale alike. Depth is
  averaged over the valid (> 0) pixels of a block and is valid where at least half are.
  """
  t, h, w = masks.shape
  if h % factor or w % factor:
    raise ValueError(f"FitConfig.downsample={factor} must divide the image size {(w, h)}")

  def blocks(x):
    return x.reshape(t, h // factor, factor, w // factor, factor, *x.shape[3:])

  images = blocks(images).mean(axis=(2, 4))
  masks = blocks(masks).mean(axis=(2, 4))
  valid = blocks((depth > 0).astype(np.float32))
  depth_sum = blocks(depth).sum(axis=(2, 4))
  count = valid.sum(axis=(2, 4))
  depth = np.where(count >= factor * factor / 2.0, depth_sum / np.maximum(count, 1.0), 0.0)
  return images, masks, depth.astype(np.float32), _scale_intrinsics(k, factor)


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

  padded = data.replace(images=take(data.images), masks=take(data.masks),
                        depth=take(data.depth), K=take(data.K), depth_K=take(data.depth_K),
                        world_to_cam=take(data.world_to_cam),
                        keypoints=take(data.keypoints), keypoint_conf=take(data.keypoint_conf),
                        init=data.init.replace(body_pose=take(data.init.body_pose),
                                               global_orient=take(data.init.global_orient),
                                               transl=take(data.init.transl)))
  return padded.replace(frame_valid=jnp.arange(num_frames) < t)
