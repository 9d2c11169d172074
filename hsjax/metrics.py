"""Pose and image metrics.

Pose metrics take joints ``[..., T, J, 3]`` (or vertices) in metres and return millimetres,
averaged over every axis except none (a scalar); ``per_frame_*`` variants keep ``[..., T]``.
Definitions (as in the 3DPW / EMDB / WHAM literature):

* **MPJPE**: mean joint error after aligning the pelvis (joint 0) of prediction and truth.
* **PA-MPJPE**: mean joint error after a per-frame similarity Procrustes alignment
  (rotation, translation and scale; Umeyama 1991).
* **PVE**: mean vertex error after pelvis alignment (needs the pelvis joint of each side).
* **V2V**: mean vertex error with *no* alignment, in the world frame: it includes global
  translation and scale errors (HumanSplatHMR reports this one).
* **root error**: distance between predicted and true pelvis positions (world frame).
* **W-MPJPE (first-frame aligned)**: mean joint error after one rigid alignment of the whole
  trajectory, estimated from the first frame's joints; **global MPJPE**: no alignment.
* **acceleration error**: mean norm of the difference of second finite differences of joints,
  mm / frame².

Image metrics take images ``[H, W, C]`` in [0, 1]. ``ssim`` follows Wang et al. (2004) with an
11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, population covariances, evaluated on
the "valid" region (5-pixel border dropped) — identical to
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``. Masked variants average the per-pixel maps over
the mask; the results tables use the masked SSIM and PSNR inside the person's bounding box
(see ``hsjax.evaluation``).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from hsjax import body as body_lib

_MM = 1000.0
PELVIS = 0


def _mean_norm(diff: jax.Array) -> jax.Array:
  return jnp.mean(jnp.linalg.norm(diff, axis=-1)) * _MM


def per_frame_mpjpe(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """[..., J, 3] x2 -> [...] root-aligned mean joint error, mm."""
  pred = pred - pred[..., PELVIS:PELVIS + 1, :]
  gt = gt - gt[..., PELVIS:PELVIS + 1, :]
  return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1), axis=-1) * _MM


def mpjpe(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """Pelvis-aligned mean per-joint position error, mm (scalar)."""
  return jnp.mean(per_frame_mpjpe(pred, gt))


def _optimal_rotation(xs: jax.Array, xt: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Kabsch / Umeyama: the rotation ``R [..., 3, 3]`` (det +1) minimising ``|R xs - xt|²``
  for centred point sets ``[..., N, 3]``, and ``trace(R cov)`` (the optimal scale's
  numerator)."""
  cov = jnp.einsum("...ni,...nj->...ij", xt, xs)  # [..., 3, 3]
  u, sing, vt = jnp.linalg.svd(cov)
  sign = jnp.sign(jnp.linalg.det(u @ vt))
  d = jnp.concatenate([jnp.ones_like(sing[..., :2]), sign[..., None]], axis=-1)
  return u @ (d[..., :, None] * vt), jnp.sum(sing * d, axis=-1)


def procrustes_align(source: jax.Array, target: jax.Array) -> jax.Array:
  """Similarity transform of ``source`` [..., N, 3] that best fits ``target`` [..., N, 3].

  Umeyama's closed form: ``s R source + t`` minimising the squared error, with a reflection
  guard (det R = +1).
  """
  mu_s = jnp.mean(source, axis=-2, keepdims=True)
  mu_t = jnp.mean(target, axis=-2, keepdims=True)
  xs, xt = source - mu_s, target - mu_t
  var_s = jnp.sum(xs * xs, axis=(-2, -1))
  rot, trace = _optimal_rotation(xs, xt)
  scale = trace / jnp.maximum(var_s, 1e-12)
  aligned = scale[..., None, None] * jnp.einsum("...ij,...nj->...ni", rot, xs)
  return aligned + mu_t


def rigid_transform(source: jax.Array, target: jax.Array) -> jax.Array:
  """[..., 4, 4]: the rotation and translation (no scale) that best map ``source`` [..., N, 3]
  onto ``target`` [..., N, 3] in the least-squares sense (Kabsch, det R = +1)."""
  mu_s = jnp.mean(source, axis=-2)
  mu_t = jnp.mean(target, axis=-2)
  rot, _ = _optimal_rotation(source - mu_s[..., None, :], target - mu_t[..., None, :])
  shift = mu_t - jnp.einsum("...ij,...j->...i", rot, mu_s)
  top = jnp.concatenate([rot, shift[..., :, None]], axis=-1)  # [..., 3, 4]
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], top.dtype), (*top.shape[:-2], 1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def per_frame_pa_mpjpe(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """[..., J, 3] x2 -> [...] Procrustes-aligned mean joint error, mm."""
  aligned = procrustes_align(pred, gt)
  return jnp.mean(jnp.linalg.norm(aligned - gt, axis=-1), axis=-1) * _MM


def pa_mpjpe(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """Procrustes-aligned (similarity) mean per-joint position error, mm."""
  return jnp.mean(per_frame_pa_mpjpe(pred, gt))


def pve(pred_vertices: jax.Array, gt_vertices: jax.Array, pred_pelvis: jax.Array,
        gt_pelvis: jax.Array) -> jax.Array:
  """Pelvis-aligned per-vertex error, mm: vertices [..., V, 3], pelvis [..., 3]."""
  return _mean_norm((pred_vertices - pred_pelvis[..., None, :]) -
                    (gt_vertices - gt_pelvis[..., None, :]))


def v2v(pred_vertices: jax.Array, gt_vertices: jax.Array) -> jax.Array:
  """Unaligned mean vertex-to-vertex error in the world frame, mm."""
  return _mean_norm(pred_vertices - gt_vertices)


def per_frame_root_error(pred_joints: jax.Array, gt_joints: jax.Array) -> jax.Array:
  """[..., J, 3] x2 -> [...] pelvis position error, mm."""
  return jnp.linalg.norm(pred_joints[..., PELVIS, :] - gt_joints[..., PELVIS, :], axis=-1) * _MM


def root_error(pred_joints: jax.Array, gt_joints: jax.Array) -> jax.Array:
  """Mean pelvis (root) position error in the world frame, mm."""
  return jnp.mean(per_frame_root_error(pred_joints, gt_joints))


def global_mpjpe(pred_joints: jax.Array, gt_joints: jax.Array) -> jax.Array:
  """Mean joint error with no alignment at all (world frame), mm."""
  return _mean_norm(pred_joints - gt_joints)


def first_frame_aligned_mpjpe(pred_joints: jax.Array, gt_joints: jax.Array) -> jax.Array:
  """W-MPJPE style: one rigid transform from the first frame's joints, applied to all frames.

  Args:
    pred_joints, gt_joints: [T, J, 3].
  """
  transform = rigid_transform(pred_joints[0], gt_joints[0])
  aligned = pred_joints @ transform[:3, :3].T + transform[:3, 3]
  return _mean_norm(aligned - gt_joints)


def accel_error(pred_joints: jax.Array, gt_joints: jax.Array) -> jax.Array:
  """Mean acceleration error in the world frame, mm / frame²: joints [T, J, 3], T >= 3.

  Root jitter counts here; :func:`aligned_accel_error` is the VIBE / WHAM convention.
  """
  if pred_joints.shape[-3] < 3:
    raise ValueError(f"accel_error needs at least 3 frames, found {pred_joints.shape[-3]}")

  def accel(x):
    return x[..., 2:, :, :] - 2.0 * x[..., 1:-1, :, :] + x[..., :-2, :, :]

  return _mean_norm(accel(pred_joints) - accel(gt_joints))


def aligned_accel_error(pred_joints: jax.Array, gt_joints: jax.Array) -> jax.Array:
  """Mean acceleration error after aligning the pelvis in every frame, mm / frame².

  The convention of VIBE and WHAM ("Accel"): the root's own motion is removed first, so the
  number measures the jitter of the articulation. Joints [T, J, 3], T >= 3.
  """
  return accel_error(pred_joints - pred_joints[..., PELVIS:PELVIS + 1, :],
                     gt_joints - gt_joints[..., PELVIS:PELVIS + 1, :])


def per_joint_mpjpe(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """[T, J, 3] x2 -> [J] pelvis-aligned error of each joint averaged over frames, mm."""
  pred = pred - pred[..., PELVIS:PELVIS + 1, :]
  gt = gt - gt[..., PELVIS:PELVIS + 1, :]
  return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1), axis=0) * _MM


def root_error_in_camera(pred_joints: jax.Array, gt_joints: jax.Array,
                         world_to_cam: jax.Array) -> jax.Array:
  """[T, 3] pelvis error (prediction - truth) in each frame's camera axes (OpenCV), mm.

  Its z component is the error along the optical axis, where monocular HMR is weakest.

  Args:
    pred_joints, gt_joints: [T, J, 3] world frame.
    world_to_cam: [T, 4, 4] (or [4, 4]) extrinsics of the training camera.
  """
  diff = pred_joints[..., PELVIS, :] - gt_joints[..., PELVIS, :]
  rot = jnp.broadcast_to(world_to_cam[..., :3, :3], (*diff.shape[:-1], 3, 3))
  return jnp.einsum("...ij,...j->...i", rot, diff) * _MM


def pose_metrics(body_model: body_lib.BodyModel, pred: body_lib.SMPLParams,
                 gt: body_lib.SMPLParams) -> dict[str, float]:
  """All pose metrics of a predicted sequence against ground truth, in mm.

  Args:
    body_model: the body model both parameter sets refer to.
    pred: predicted SMPL parameters of T frames (world frame).
    gt: ground truth of the same T frames.

  Returns:
    dict with ``mpjpe``, ``pa_mpjpe``, ``pve``, ``v2v``, ``root_error``, ``global_mpjpe``,
    ``w_mpjpe`` (first-frame aligned), ``accel_error`` (world frame) and
    ``accel_error_aligned`` (pelvis-aligned, VIBE/WHAM) when T >= 3.
  """
  if pred.num_frames != gt.num_frames:
    raise ValueError(f"pose_metrics: prediction has {pred.num_frames} frames, ground truth "
                     f"{gt.num_frames}")
  out_p = _forward(body_model, pred)
  out_g = _forward(body_model, gt)
  jp, jg = out_p.joints, out_g.joints
  result = {
      "mpjpe": mpjpe(jp, jg),
      "pa_mpjpe": pa_mpjpe(jp, jg),
      "pve": pve(out_p.vertices, out_g.vertices, jp[..., PELVIS, :], jg[..., PELVIS, :]),
      "v2v": v2v(out_p.vertices, out_g.vertices),
      "root_error": root_error(jp, jg),
      "global_mpjpe": global_mpjpe(jp, jg),
      "w_mpjpe": first_frame_aligned_mpjpe(jp, jg),
  }
  if jp.shape[0] >= 3:
    result["accel_error"] = accel_error(jp, jg)
    result["accel_error_aligned"] = aligned_accel_error(jp, jg)
  return {k: float(v) for k, v in result.items()}


def per_frame_pose_errors(body_model: body_lib.BodyModel, pred: body_lib.SMPLParams,
                          gt: body_lib.SMPLParams) -> dict[str, np.ndarray]:
  """Per-frame MPJPE, PA-MPJPE and root error, mm: dict of [T] arrays (for plots)."""
  jp = _forward(body_model, pred).joints
  jg = _forward(body_model, gt).joints
  return {
      "mpjpe": np.asarray(per_frame_mpjpe(jp, jg)),
      "pa_mpjpe": np.asarray(per_frame_pa_mpjpe(jp, jg)),
      "root_error": np.asarray(per_frame_root_error(jp, jg)),
  }


@jax.jit
def _forward(body_model: body_lib.BodyModel, params: body_lib.SMPLParams) -> body_lib.BodyOutput:
  betas = jnp.broadcast_to(params.betas, (*params.body_pose.shape[:-2], params.betas.shape[-1]))
  return body_lib.body_forward(body_model, betas, params.body_pose, params.global_orient,
                               params.transl)


# ------------------------------------------------------------------------------------------
# Image metrics


def mask_iou(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> np.ndarray:
  """[..., H, W] x2 -> [...] intersection over union of ``pred > threshold`` and ``target >
  threshold`` (a rendered alpha or a soft mask against a person mask); 0 where both are
  empty."""
  a = np.asarray(pred) > threshold
  b = np.asarray(target) > threshold
  union = np.logical_or(a, b).sum(axis=(-2, -1))
  return np.logical_and(a, b).sum(axis=(-2, -1)) / np.maximum(union, 1)


def psnr(image: jax.Array, reference: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Peak signal-to-noise ratio (peak 1), dB; masked: MSE over mask pixels only.

  Args:
    image, reference: [H, W, C] in [0, 1].
    mask: optional [H, W] weights (0/1).
  """
  sq = jnp.mean((image - reference) ** 2, axis=-1)
  if mask is None:
    mse = jnp.mean(sq)
  else:
    mse = jnp.sum(sq * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-12))


def _gaussian_band(n: int, size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """[n - size + 1, n] banded matrix: row i holds the normalised Gaussian window at i."""
  coords = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-0.5 * (coords / sigma) ** 2)
  g /= g.sum()
  band = np.zeros((n - size + 1, n), np.float32)
  for i in range(n - size + 1):
    band[i, i:i + size] = g
  return band


def _gaussian_filter_valid(x: jax.Array, size: int = 11, sigma: float = 1.5) -> jax.Array:
  """Separable Gaussian filter, 'valid' region: [F, H, W, C] -> [F, H-size+1, W-size+1, C].

  Written as two products with banded matrices: on CPU, XLA runs these (and their
  transposes in the backward pass) about 10x faster than depthwise convolutions, whose
  grouped-convolution path is slow, or than chains of shifted slices.
  """
  band_h = jnp.asarray(_gaussian_band(x.shape[1], size, sigma), x.dtype)
  band_w = jnp.asarray(_gaussian_band(x.shape[2], size, sigma), x.dtype)
  y = jnp.einsum("ih,fhwc->fiwc", band_h, x)
  return jnp.einsum("jw,fiwc->fijc", band_w, y)


def ssim_map(image: jax.Array, reference: jax.Array, *, data_range: float = 1.0,
             window_size: int = 11, sigma: float = 1.5) -> jax.Array:
  """Per-pixel SSIM over the valid region: [..., H, W, C] x2 -> [..., H - 10, W - 10].

  Wang et al. (2004) with an 11x11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03 and
  population covariances, averaged over channels: the numbers of scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` (tested). Differentiable; the training loss
  (``hsjax.losses.dssim``) and the evaluation both use it.
  """
  c1 = (0.01 * data_range) ** 2
  c2 = (0.03 * data_range) ** 2
  lead, (h, w, c) = image.shape[:-3], image.shape[-3:]
  x = image.astype(jnp.float32).reshape(-1, h, w, c)
  y = reference.astype(jnp.float32).reshape(-1, h, w, c)
  stacked = jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1)
  filtered = _gaussian_filter_valid(stacked, window_size, sigma)
  mu_x, mu_y, xx, yy, xy = jnp.split(filtered, 5, axis=-1)
  var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
  num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
  den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
  smap = jnp.mean(num / den, axis=-1)
  return smap.reshape(*lead, *smap.shape[1:])


def ssim(image: jax.Array, reference: jax.Array, mask: jax.Array | None = None, *,
         data_range: float = 1.0) -> jax.Array:
  """Structural similarity of [H, W, C] images; masked: mean of the SSIM map over the mask."""
  smap = ssim_map(image, reference, data_range=data_range)
  if mask is None:
    return jnp.mean(smap)
  border = (mask.shape[0] - smap.shape[0]) // 2
  m = mask[border:border + smap.shape[0], border:border + smap.shape[1]]
  return jnp.sum(smap * m) / jnp.maximum(jnp.sum(m), 1.0)


def lpips_available() -> tuple[bool, str]:
  """Whether LPIPS can be computed here, and why not.

  LPIPS needs pretrained network weights. hsjax never downloads them: it uses the ``lpips``
  package only when it is installed *and* its weights, plus torchvision's backbone weights,
  are already present on disk.
  """
  # lpips and torch are optional: imported here so that hsjax works without them.
  try:
    import lpips  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  except ImportError:
    return False, "the `lpips` package is not installed"
  weights = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth")
  if not os.path.exists(weights):
    return False, f"LPIPS weights not found at {weights}"
  try:
    import torch  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    hub_dir = torch.hub.get_dir()
  except ImportError:
    return False, "torch is not installed"
  backbone = os.path.join(hub_dir, "checkpoints")
  if not os.path.isdir(backbone) or not any(f.startswith("alexnet") for f in os.listdir(backbone)):
    return False, f"torchvision AlexNet weights not found under {backbone}"
  return True, ""


def lpips(image: np.ndarray, reference: np.ndarray) -> float:
  """LPIPS (AlexNet) distance of [H, W, 3] images in [0, 1]; raises if unavailable."""
  ok, why = lpips_available()
  if not ok:
    raise RuntimeError(f"LPIPS unavailable: {why}")
  import lpips as lpips_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import torch  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  net = lpips_lib.LPIPS(net="alex", verbose=False)

  def to_tensor(x):
    return torch.from_numpy(np.asarray(x, np.float32)).permute(2, 0, 1)[None] * 2.0 - 1.0

  with torch.no_grad():
    return float(net(to_tensor(image), to_tensor(reference)).item())
