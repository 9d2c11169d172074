"""Simulated monocular metric depth: ground-truth depth degraded like a UniDepth-class network.

HumanSplatHMR takes its depth from a monocular metric-depth network (UniDepth), not a sensor.
Such depth is dense but wrong in structured ways, and a benchmark that feeds the exact
z-buffer overstates what a depth loss can recover. :func:`degrade_depth` turns exact camera
depth ``z`` (metres, 0 = invalid) into what such a network, cropped with a person mask,
would give:

* **global scale**: ``z`` is multiplied by ``exp(a + b_t)``: ``a ~ N(0, scale_sigma²)`` once
  per sequence (the metric scale a network infers from one image is its largest error:
  zero-shot AbsRel of UniDepth-class models is a few to ~10 %) and ``b_t ~ N(0,
  frame_scale_sigma²)`` per frame (the network runs frame by frame, so its scale flickers);
* **smooth distortion**: a relative error field ``1 + D(x, y, t)``, ``D`` a sum of
  ``distortion_terms`` plane cosines over the image with random directions, spatial
  frequencies in ``distortion_cycles`` (cycles per image size, i.e. low order) and random
  phases that drift by ``N(0, distortion_drift²)`` radians per frame; its expected rms is
  ``distortion`` (0.01 = 3 cm at 3 m). It bends the body's depth (a false lean, a too flat
  or too round torso), which a global scale cannot undo;
* **blur and bleeding across the silhouette**: networks predict depth at a reduced
  resolution and smooth it across object boundaries. The synthetic background has no depth,
  so the degradation gives the network a **backdrop** to see there: a plane whose depth on
  the optical axis is the person's median depth plus ``background_gap`` metres (a wall or
  floor of a room a couple of metres behind the subject), tilted by up to
  ``background_tilt`` degrees about the camera's x and y axes (drawn per sequence; it is
  fixed in the camera, as the static training camera sees one room). Log depth of person
  and backdrop together is blurred with a Gaussian of ``blur_sigma`` pixels (in log depth
  because these networks regress log / inverse depth; blending there keeps depth
  positive), so person depth near the silhouette is pulled towards the backdrop and the
  backdrop near it towards the person. The valid region is the person (``depth > 0`` or
  ``mask >= 0.5``) dilated by ``dilate`` pixels (a segmentation mask a little larger than
  the person, as SAM-style masks and safety margins are): pixels just outside the person
  become valid with intermediate, blended depth;
* **holes**: blobs of about ``hole_size`` pixels (thresholded Gaussian-smoothed noise)
  covering a ``hole_fraction`` of the image are set to 0 = invalid (low-confidence
  pixels a pipeline drops);
* **pixel noise**: independent relative noise ``N(0, pixel_noise²)`` per pixel;
* **estimated intrinsics**: the method unprojects the network's depth with the network's
  own intrinsics. :func:`depth_intrinsics` returns them: the true ``K`` with both focal
  lengths multiplied by ``exp(focal_coupling · (a + b_t) + c)``, ``c ~ N(0,
  focal_error²)`` per sequence (the principal point is kept). ``focal_coupling > 0`` ties
  the focal error to the depth-scale error, as for a network that explains the person's
  image size with a wrong field of view: an over-estimated focal length makes the person
  look farther. With coupling 1 and ``c = 0`` the unprojected x, y are right and only the
  depth is scaled. The true camera is never changed.

All random draws come from ``numpy.random.default_rng(seed)`` streams (``seed`` an int or a
sequence of ints); the result is a deterministic function of its inputs and ``seed``.
:func:`sample_depth_errors` returns the per-sequence and per-frame draws, so a caller can
report (and a test can check) the scale and focal errors that were applied.

Warning: the parameters of ``"unidepth_like"`` are an assumption chosen to match the
published magnitude of UniDepth-class errors (a few % global scale, a few px of boundary
smoothing at 256 px), not a fit to UniDepth's output on human videos.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class DepthNoise:
  """Parameters of the simulated monocular depth error (see the module docstring).

  Relative quantities are fractions of the depth; ``*_sigma`` of scales are in log units
  (0.04 is about 4 %); lengths in metres, image quantities in pixels.
  """

  scale_sigma: float = 0.0  # std of the per-sequence log depth scale.
  frame_scale_sigma: float = 0.0  # std of the per-frame log depth scale jitter.
  distortion: float = 0.0  # expected rms of the smooth relative distortion field.
  distortion_terms: int = 4  # number of plane cosines in the distortion field.
  distortion_cycles: tuple[float, float] = (0.3, 1.5)  # frequency range, cycles per image.
  distortion_drift: float = 0.0  # std of each cosine's phase change per frame, radians.
  blur_sigma: float = 0.0  # Gaussian blur of log depth (person + backdrop), pixels.
  dilate: int = 0  # pixels the valid region extends beyond the person.
  background_gap: float = 1.5  # backdrop depth behind the person's median depth, metres.
  background_tilt: float = 0.0  # largest backdrop tilt about the camera x / y axes, degrees.
  hole_fraction: float = 0.0  # fraction of the image covered by holes (0 = invalid).
  hole_size: float = 3.0  # Gaussian scale of the hole blobs, pixels.
  pixel_noise: float = 0.0  # std of the independent relative per-pixel noise.
  focal_error: float = 0.0  # std of the per-sequence log focal error independent of depth.
  focal_coupling: float = 0.0  # share of the log depth-scale error the focal estimate has.

  def __post_init__(self):
    lo, hi = self.distortion_cycles
    checks = {
        "scale_sigma": self.scale_sigma >= 0, "frame_scale_sigma": self.frame_scale_sigma >= 0,
        "distortion": self.distortion >= 0, "distortion_terms": self.distortion_terms >= 1,
        "distortion_cycles": 0 < lo <= hi, "distortion_drift": self.distortion_drift >= 0,
        "blur_sigma": self.blur_sigma >= 0, "dilate": self.dilate >= 0,
        "background_gap": self.background_gap > 0,
        "background_tilt": 0 <= self.background_tilt < 45,
        "hole_fraction": 0 <= self.hole_fraction < 1, "hole_size": self.hole_size > 0,
        "pixel_noise": 0 <= self.pixel_noise < 0.5, "focal_error": self.focal_error >= 0,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
      raise ValueError(f"DepthNoise: invalid value(s) for {bad}: "
                       f"{ {k: getattr(self, k) for k in bad} } (sigmas, sizes and fractions "
                       "must be non-negative; 0 < cycles[0] <= cycles[1]; tilt < 45 degrees; "
                       "hole_fraction < 1; gap, hole_size > 0)")


DEPTH_NOISE_PRESETS: dict[str, DepthNoise] = {
    # Only the per-sequence metric scale error: isolates what a wrong scale does (ablation).
    "scale_only": DepthNoise(scale_sigma=0.04),
    # A UniDepth-class network on a 256 px person crop: ~4 % sequence scale, ~1 % flicker,
    # ~3 cm smooth distortion at 3 m, 2 px boundary blur, mask margin 3 px, 1 % holes, and a
    # focal estimate half tied to the scale error plus 2 % of its own.
    "unidepth_like": DepthNoise(scale_sigma=0.04, frame_scale_sigma=0.01, distortion=0.01,
                                distortion_drift=0.05, blur_sigma=2.0, dilate=3,
                                background_tilt=15.0, hole_fraction=0.01, hole_size=2.0,
                                pixel_noise=0.005, focal_error=0.02, focal_coupling=0.5),
    # ``unidepth_like`` with a right metric scale (no sequence scale error, no focal error of
    # its own): the same draws otherwise, so it isolates what the scale error costs a fit.
    "unidepth_metric": DepthNoise(frame_scale_sigma=0.01, distortion=0.01,
                                  distortion_drift=0.05, blur_sigma=2.0, dilate=3,
                                  background_tilt=15.0, hole_fraction=0.01, hole_size=2.0,
                                  pixel_noise=0.005, focal_coupling=0.5),
    # Harder scenes (loose clothing, clutter, unusual viewpoints): the tail of such errors.
    "unidepth_hard": DepthNoise(scale_sigma=0.08, frame_scale_sigma=0.025, distortion=0.025,
                                distortion_drift=0.1, blur_sigma=3.5, dilate=5,
                                background_tilt=25.0, hole_fraction=0.03, hole_size=3.0,
                                pixel_noise=0.01, focal_error=0.05, focal_coupling=0.5),
}


@dataclasses.dataclass(frozen=True)
class DepthErrors:
  """The random draws of one degradation (host-side numpy, not a pytree)."""

  log_scale: float  # per-sequence log depth scale ``a``.
  frame_log_scale: np.ndarray  # [T] per-frame log scale jitter ``b_t``.
  focal_scale: np.ndarray  # [T] factor applied to fx, fy of the estimated intrinsics.
  waves: np.ndarray  # [M, 2] distortion wave vectors, cycles per image size (x, y).
  amplitudes: np.ndarray  # [M] distortion cosine amplitudes (relative depth).
  phases: np.ndarray  # [T, M] distortion phases per frame, radians.
  tilt: np.ndarray  # [2] backdrop tilt about the camera x and y axes, radians.

  @property
  def scale(self) -> np.ndarray:
    """[T] total depth scale factor of each frame, ``exp(a + b_t)``."""
    return np.exp(self.log_scale + self.frame_log_scale)


def _as_noise(preset) -> DepthNoise:
  if isinstance(preset, DepthNoise):
    return preset
  if preset not in DEPTH_NOISE_PRESETS:
    raise ValueError(f"unknown depth noise preset {preset!r}; valid: "
                     f"{sorted(DEPTH_NOISE_PRESETS)}")
  return DEPTH_NOISE_PRESETS[preset]


def _seed_words(seed) -> list[int]:
  words = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
  if any(w < 0 for w in words):
    raise ValueError(f"depth noise: seed must be a non-negative int or ints, found {seed!r}")
  return words


def sample_depth_errors(preset, num_frames: int, *, seed) -> DepthErrors:
  """The per-sequence and per-frame random errors of :func:`degrade_depth`.

  Args:
    preset: a key of :data:`DEPTH_NOISE_PRESETS` or a :class:`DepthNoise`.
    num_frames: T.
    seed: an int or a sequence of ints; the same seed gives the draws that
      :func:`degrade_depth` and :func:`depth_intrinsics` apply.

  Returns:
    The :class:`DepthErrors`.
  """
  noise = _as_noise(preset)
  rng = np.random.default_rng(_seed_words(seed) + [0])
  log_scale = noise.scale_sigma * rng.normal()
  frame_log_scale = noise.frame_scale_sigma * rng.normal(size=num_frames)
  log_focal = (noise.focal_coupling * (log_scale + frame_log_scale)
               + noise.focal_error * rng.normal())
  m = noise.distortion_terms
  angle = rng.uniform(0.0, 2.0 * np.pi, size=m)
  cycles = rng.uniform(*noise.distortion_cycles, size=m)
  waves = cycles[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
  # Each cosine has mean square a^2 / 2; with a ~ N(0, 2 d^2 / M) the expected mean square
  # of the sum over M independent phases is d^2.
  amplitudes = noise.distortion * np.sqrt(2.0 / m) * rng.normal(size=m)
  phases = rng.uniform(0.0, 2.0 * np.pi, size=m) + np.cumsum(
      noise.distortion_drift * rng.normal(size=(num_frames, m)), axis=0)
  tilt = np.deg2rad(noise.background_tilt) * rng.uniform(-1.0, 1.0, size=2)
  return DepthErrors(log_scale=float(log_scale), frame_log_scale=frame_log_scale,
                     focal_scale=np.exp(log_focal), waves=waves, amplitudes=amplitudes,
                     phases=phases, tilt=tilt)


def _per_frame_k(K, num_frames: int, height: int, width: int, what: str) -> np.ndarray:
  if K is None:
    # Without intrinsics the backdrop is placed as if seen with a focal of max(H, W)
    # (about 53 degrees of field of view) and a centred principal point.
    f = float(max(height, width))
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
  K = np.asarray(K, np.float64)
  if K.shape == (3, 3):
    K = np.broadcast_to(K, (num_frames, 3, 3))
  if K.shape != (num_frames, 3, 3):
    raise ValueError(f"{what}: K must be [3, 3] or [T={num_frames}, 3, 3], found "
                     f"{list(K.shape)}")
  if not np.all(np.isfinite(K)) or np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
    raise ValueError(f"{what}: K must be finite with positive focal lengths")
  return K


def _backdrop(k: np.ndarray, z0: float, tilt: np.ndarray, height: int, width: int
              ) -> np.ndarray:
  """[H, W] depth of a plane through (0, 0, z0) (camera frame) with its normal tilted."""
  cx, cy = np.cos(tilt)
  sx, sy = np.sin(tilt)
  # Optical axis rotated about x by tilt[0], then about y by tilt[1].
  normal = np.array([sy * cx, -sx, cy * cx])
  v, u = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
  rx = (u - k[0, 2]) / k[0, 0]
  ry = (v - k[1, 2]) / k[1, 1]
  # Ray (rx, ry, 1) meets n . X = n_z z0 at z = n_z z0 / (n . ray); tilt < 45 degrees and
  # a moderate field of view keep the denominator positive; clip for very wide views.
  denom = normal[0] * rx + normal[1] * ry + normal[2]
  z = normal[2] * z0 / np.maximum(denom, 1e-3)
  return np.clip(z, z0 / 3.0, 3.0 * z0)


def _distortion(errors: DepthErrors, t: int, height: int, width: int) -> np.ndarray:
  """[H, W] relative distortion field D of frame t."""
  size = float(max(height, width))
  v, u = np.mgrid[0:height, 0:width] + 0.5
  arg = (2.0 * np.pi / size) * (errors.waves[:, 0, None, None] * u[None]
                                + errors.waves[:, 1, None, None] * v[None])
  return np.einsum("m,mhw->hw", errors.amplitudes,
                   np.cos(arg + errors.phases[t][:, None, None]))


def degrade_depth(depth, mask, K=None, preset="unidepth_like", *, seed) -> np.ndarray:
  """Degrades exact metric depth like a monocular metric-depth network (module docstring).

  Args:
    depth: [T, H, W] exact camera z, metres, 0 where invalid (no person).
    mask: [T, H, W] person mask or coverage in [0, 1].
    K: [T, 3, 3] or [3, 3] true intrinsics, pixels (only the backdrop's tilt uses them); None
      assumes a focal length of max(H, W) and a centred principal point.
    preset: a key of :data:`DEPTH_NOISE_PRESETS` or a :class:`DepthNoise`.
    seed: an int or a sequence of ints; the result is a deterministic function of it.

  Returns:
    [T, H, W] float32 degraded depth, metres, 0 where invalid (outside the dilated person
    region and in holes). Frames without any valid input depth stay all 0.

  Raises:
    ValueError: on mismatched shapes, negative or non-finite depth, or a bad ``K``.
  """
  noise = _as_noise(preset)
  depth = np.asarray(depth, np.float64)
  mask = np.asarray(mask, np.float64)
  if depth.ndim != 3:
    raise ValueError(f"degrade_depth: depth must be [T, H, W], found {list(depth.shape)}")
  if mask.shape != depth.shape:
    raise ValueError(f"degrade_depth: mask must have the shape of depth {list(depth.shape)}, "
                     f"found {list(mask.shape)}")
  if not np.all(np.isfinite(depth)) or np.any(depth < 0):
    raise ValueError("degrade_depth: depth must be finite and >= 0 (0 = invalid)")
  num_frames, height, width = depth.shape
  K = _per_frame_k(K, num_frames, height, width, "degrade_depth")
  errors = sample_depth_errors(noise, num_frames, seed=seed)
  rng = np.random.default_rng(_seed_words(seed) + [1])
  valid = depth > 0
  out = np.zeros(depth.shape, np.float32)
  if not valid.any():
    return out
  # One room for the whole sequence: the backdrop sits behind the person's median depth.
  z0 = float(np.median(depth[valid])) + noise.background_gap
  scale = errors.scale
  for t in range(num_frames):
    # Per-frame draws happen for every frame, so frame t's noise does not depend on
    # whether earlier frames were empty.
    pixel = rng.normal(size=(height, width))
    blobs = rng.normal(size=(height, width))
    if not valid[t].any():
      continue
    log_z = np.where(valid[t], np.log(np.where(valid[t], depth[t], 1.0)),
                     np.log(_backdrop(K[t], z0, errors.tilt, height, width)))
    if noise.blur_sigma > 0:
      log_z = ndimage.gaussian_filter(log_z, noise.blur_sigma, mode="nearest")
    z = np.exp(log_z) * scale[t] * (1.0 + _distortion(errors, t, height, width))
    z *= 1.0 + noise.pixel_noise * pixel
    person = valid[t] | (mask[t] >= 0.5)
    region = person
    if noise.dilate > 0:
      region = ndimage.distance_transform_edt(~person) <= noise.dilate
    if noise.hole_fraction > 0:
      field = ndimage.gaussian_filter(blobs, noise.hole_size, mode="wrap")
      region = region & (field < np.quantile(field, 1.0 - noise.hole_fraction))
    out[t] = np.where(region, np.maximum(z, 0.0), 0.0)
  return out


def depth_intrinsics(K, preset="unidepth_like", *, seed, num_frames: int | None = None
                     ) -> np.ndarray:
  """The intrinsics a depth network estimates along with its depth (module docstring).

  Args:
    K: [T, 3, 3] or [3, 3] true intrinsics, pixels.
    preset: a key of :data:`DEPTH_NOISE_PRESETS` or a :class:`DepthNoise`.
    seed: the seed given to :func:`degrade_depth` for the same depth.
    num_frames: T when ``K`` is ``[3, 3]`` (default 1).

  Returns:
    [T, 3, 3] float32: ``K`` with fx, fy scaled by ``DepthErrors.focal_scale`` (principal
    point kept). The depth of :func:`degrade_depth` unprojects with these.
  """
  K = np.asarray(K, np.float64)
  if num_frames is None:
    num_frames = K.shape[0] if K.ndim == 3 else 1
  K = _per_frame_k(K, num_frames, 1, 1, "depth_intrinsics").copy()
  errors = sample_depth_errors(preset, num_frames, seed=seed)
  K[:, 0, 0] *= errors.focal_scale
  K[:, 1, 1] *= errors.focal_scale
  return K.astype(np.float32)
