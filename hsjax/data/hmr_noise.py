"""Simulated HMR estimates: ground-truth SMPL parameters corrupted like monocular HMR output.

Error structure (what 4D-Humans / HMR 2.0, CLIFF, WHAM-style per-frame regressors show on
in-the-wild video; see e.g. the HMR 2.0 and WHAM papers' per-frame baselines):

* **joint rotations**: each body joint's local rotation is multiplied (in the joint's own
  frame) by an error rotation ``exp(e)``; the standard deviation grows along the kinematic
  chain, ``sigma_j = sigma * (1 + distal_gain * depth_j / max_depth)`` (wrists and ankles are
  the worst, the spine the best), and ``e`` is the sum of a *slowly varying bias* (Gaussian
  noise smoothed with a Gaussian kernel of ``bias_time`` seconds, renormalised to unit
  variance) and independent per-frame *jitter*;
* **global orientation**: the same bias + jitter structure with its own scales;
* **root translation**: the depth ambiguity. The root's camera-space position is scaled
  along the camera ray through it by ``exp(d)``, so its projection barely moves while its
  depth is wrong: ``d`` = a per-sequence constant (random sign, magnitude uniform in
  ``[0.6, 1.4] x depth_sigma``: a wrong focal or body-size assumption biases every frame
  alike) + slowly varying bias + per-frame jitter. A small image-plane error (``xy_sigma``
  metres, bias + jitter) is added;
* **outlier frames**: with probability ``outlier_prob`` per frame, a frame gets an extra
  global-orientation error of ``outlier_orient`` radians about a random axis and
  ``outlier_pose`` times the jitter on the body joints, and a depth jump;
* **shape**: ``betas`` get an additive N(0, ``betas_sigma``²) error.

The world frame stays that of the cameras, so the estimate is directly comparable to GT.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax.camera import Camera


@dataclasses.dataclass(frozen=True)
class HMRNoise:
  """Parameters of the simulated HMR error (angles in radians, lengths in metres)."""

  joint_bias: float = 0.0  # std of the slowly varying per-joint rotation error (proximal).
  joint_jitter: float = 0.0  # std of the per-frame per-joint rotation error (proximal).
  distal_gain: float = 0.0  # extra factor at the end of the chain (wrists, ankles).
  orient_bias: float = 0.0  # std of the slowly varying global-orientation error.
  orient_jitter: float = 0.0  # std of the per-frame global-orientation error.
  depth_sigma: float = 0.0  # typical per-sequence log depth scale error (see simulate_hmr).
  depth_bias: float = 0.0  # std of the slowly varying log depth error.
  depth_jitter: float = 0.0  # std of the per-frame log depth error.
  xy_sigma: float = 0.0  # std of the image-plane root error (bias and jitter each), metres.
  bias_time: float = 1.0  # correlation time of the slowly varying terms, seconds.
  outlier_prob: float = 0.0  # probability that a frame is an outlier.
  outlier_orient: float = 0.0  # extra global-orientation error of an outlier frame.
  outlier_pose: float = 0.0  # multiplier of the joint jitter on an outlier frame.
  outlier_depth: float = 0.0  # extra log depth error (random sign) of an outlier frame.
  betas_sigma: float = 0.0  # std of the additive shape error.


HMR_NOISE_PRESETS: dict[str, HMRNoise] = {
    "none": HMRNoise(),
    # Roughly a good optimisation-based fit (e.g. SMPLify on clean keypoints).
    "mild": HMRNoise(joint_bias=0.015, joint_jitter=0.015, distal_gain=1.0, orient_bias=0.025,
                     orient_jitter=0.01, depth_sigma=0.04, depth_bias=0.02, depth_jitter=0.01,
                     xy_sigma=0.01, betas_sigma=0.3),
    # Tuned so that the default sequence gives MPJPE 70-110 mm, PA-MPJPE 45-65 mm and a root
    # translation error >= 150 mm (tested), the range reported for HMR 2.0 / CLIFF-class
    # per-frame estimates on 3DPW / EMDB.
    "hmr2_like": HMRNoise(joint_bias=0.036, joint_jitter=0.042, distal_gain=1.0,
                          orient_bias=0.035, orient_jitter=0.03, depth_sigma=0.1,
                          depth_bias=0.04, depth_jitter=0.02, xy_sigma=0.015,
                          outlier_prob=0.03, outlier_orient=0.5, outlier_pose=3.0,
                          outlier_depth=0.1, betas_sigma=0.8),
    # Occlusion-heavy, fast motion: the tail of in-the-wild HMR errors.
    "hard": HMRNoise(joint_bias=0.05, joint_jitter=0.06, distal_gain=1.2, orient_bias=0.09,
                     orient_jitter=0.04, depth_sigma=0.15, depth_bias=0.06, depth_jitter=0.04,
                     xy_sigma=0.03, outlier_prob=0.08, outlier_orient=0.9, outlier_pose=3.0,
                     outlier_depth=0.2, betas_sigma=1.2),
}


def _chain_depth(parents: tuple[int, ...]) -> np.ndarray:
  depth = np.zeros(len(parents))
  for i, p in enumerate(parents):
    depth[i] = 0 if p < 0 else depth[p] + 1
  return depth


def _slow(rng: np.random.Generator, shape: tuple[int, ...], frames_sigma: float) -> np.ndarray:
  """Unit-variance Gaussian noise, smooth along axis 0 (time) over ``frames_sigma`` frames."""
  white = rng.normal(size=shape)
  if frames_sigma <= 0:
    return white
  smooth = gaussian_filter1d(white, frames_sigma, axis=0, mode="reflect")
  # Smoothing white noise with a normalised kernel k scales its std by ||k||_2; undo that.
  radius = int(4.0 * frames_sigma + 0.5)  # scipy's default truncation
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / frames_sigma) ** 2)
  return smooth / np.linalg.norm(kernel / kernel.sum())


def _compose(rotvec: np.ndarray, err: np.ndarray) -> np.ndarray:
  """``rotvec`` [..., 3] followed by ``err`` [..., 3] in its own (local) frame."""
  shape = rotvec.shape
  r = Rotation.from_rotvec(rotvec.reshape(-1, 3)) * Rotation.from_rotvec(err.reshape(-1, 3))
  return r.as_rotvec().reshape(shape)


def _rest_pelvis(model: body_lib.BodyModel | None, betas: np.ndarray) -> np.ndarray:
  """[3] rest-pose pelvis joint of the shaped body (numpy; zeros without a model)."""
  if model is None:
    return np.zeros(3)
  shaped = np.asarray(model.v_template, np.float64) + np.asarray(model.shapedirs) @ betas
  return np.asarray(model.J_regressor, np.float64)[0] @ shaped


def _as_noise(preset) -> HMRNoise:
  if isinstance(preset, HMRNoise):
    return preset
  if preset not in HMR_NOISE_PRESETS:
    raise ValueError(f"unknown HMR noise preset '{preset}'; valid: {sorted(HMR_NOISE_PRESETS)}")
  return HMR_NOISE_PRESETS[preset]


def simulate_hmr(gt: body_lib.SMPLParams, cameras: Camera, preset="hmr2_like", *, seed: int,
                 fps: float = 30.0, model: body_lib.BodyModel | None = None
                 ) -> body_lib.SMPLParams:
  """Corrupts ground-truth parameters with HMR-like errors (see the module docstring).

  Args:
    gt: ground truth, ``betas [B]``, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``,
      ``transl [T, 3]`` in the world frame of ``cameras``.
    cameras: the (training) cameras, ``world_to_cam [T, 4, 4]`` or ``[4, 4]``; the depth
      error is along each frame's camera ray.
    preset: a name in :data:`HMR_NOISE_PRESETS` or an :class:`HMRNoise`.
    seed: random seed (the result is a deterministic function of it).
    fps: frame rate, for the correlation time of the slow errors.
    model: body model; when given, the depth error scales the true pelvis joint position
      along its ray (exact), otherwise ``transl`` itself (the pelvis offset of SMPL, ~0.2 m,
      then moves by the scale error times that offset).

  Returns:
    The simulated estimate, float32 numpy arrays, same shapes as ``gt``.
  """
  noise = _as_noise(preset)
  rng = np.random.default_rng(seed)
  body_pose = np.asarray(gt.body_pose, np.float64)
  orient = np.asarray(gt.global_orient, np.float64)
  transl = np.asarray(gt.transl, np.float64)
  betas = np.asarray(gt.betas, np.float64)
  num_frames = body_pose.shape[0]
  if body_pose.shape != (num_frames, 23, 3) or orient.shape != (num_frames, 3) or (
      transl.shape != (num_frames, 3)):
    raise ValueError(f"simulate_hmr: expected body_pose [T, 23, 3], global_orient [T, 3], "
                     f"transl [T, 3]; found {body_pose.shape}, {orient.shape}, {transl.shape}")
  w2c = np.asarray(cameras.world_to_cam, np.float64)
  w2c = np.broadcast_to(w2c, (num_frames, 4, 4)) if w2c.shape == (4, 4) else w2c
  if w2c.shape != (num_frames, 4, 4):
    raise ValueError(f"simulate_hmr: cameras.world_to_cam must be [4, 4] or [T={num_frames}, "
                     f"4, 4], found {w2c.shape}")
  slow_frames = noise.bias_time * fps

  # Body joints: bias + jitter, larger towards the end of the chain.
  depth = _chain_depth(body_lib.SMPL_PARENTS)[1:]
  scale = 1.0 + noise.distal_gain * depth / depth.max()  # [23]
  outlier = rng.random(num_frames) < noise.outlier_prob
  pose_err = (noise.joint_bias * _slow(rng, (num_frames, 23, 3), slow_frames)
              + noise.joint_jitter * rng.normal(size=(num_frames, 23, 3))
              * np.where(outlier, noise.outlier_pose, 1.0)[:, None, None]) * scale[:, None]
  body_pose_hat = _compose(body_pose, pose_err)

  # Global orientation: bias + jitter (+ outliers), applied in the body frame.
  orient_err = (noise.orient_bias * _slow(rng, (num_frames, 3), slow_frames)
                + noise.orient_jitter * rng.normal(size=(num_frames, 3)))
  axis = rng.normal(size=(num_frames, 3))
  axis /= np.linalg.norm(axis, axis=1, keepdims=True)
  orient_err += np.where(outlier, noise.outlier_orient, 0.0)[:, None] * axis
  orient_hat = _compose(orient, orient_err)

  # Root: scale the camera-space root along its ray (the monocular depth ambiguity).
  rest_pelvis = _rest_pelvis(model, betas)
  # The pelvis joint is where global_orient pivots, so its world position is transl + J_0.
  root = transl + rest_pelvis
  root_cam = np.einsum("tij,tj->ti", w2c[:, :3, :3], root) + w2c[:, :3, 3]
  # Per-sequence scale error (a wrong focal-length / body-size assumption biases the depth of
  # every frame the same way): random sign, magnitude U(0.6, 1.4) x depth_sigma.
  log_depth = (noise.depth_sigma * rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.4)
               + noise.depth_bias * _slow(rng, (num_frames,), slow_frames)
               + noise.depth_jitter * rng.normal(size=num_frames)
               + np.where(outlier, noise.outlier_depth * rng.choice([-1.0, 1.0], num_frames), 0.0))
  root_cam_hat = root_cam * np.exp(log_depth)[:, None]
  xy = noise.xy_sigma * (_slow(rng, (num_frames, 2), slow_frames)
                         + rng.normal(size=(num_frames, 2))) / np.sqrt(2.0)
  root_cam_hat[:, :2] += xy
  root_hat = np.einsum("tji,tj->ti", w2c[:, :3, :3], root_cam_hat - w2c[:, :3, 3])

  betas_hat = betas + noise.betas_sigma * rng.normal(size=betas.shape)
  rest_pelvis_hat = _rest_pelvis(model, betas_hat)
  return body_lib.SMPLParams(
      betas=betas_hat.astype(np.float32), body_pose=body_pose_hat.astype(np.float32),
      global_orient=orient_hat.astype(np.float32),
      transl=(root_hat - rest_pelvis_hat).astype(np.float32))
