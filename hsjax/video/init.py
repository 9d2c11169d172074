"""SMPL from landmarks, without an HMR network: a SMPLify-style fit in JAX + Optax.

All frames are fitted at once (batched), in the camera frame (the video's world frame):

1. closed-form start per frame: the root orientation from the torso's axes in the world
   landmarks (slerped from the neighbouring frames where that torso jumps, see
   ``InitConfig.max_torso_turn_deg``; those frames also lose the bone term below), the depth
   from the 2D scale of the limbs against the body's own limb lengths
   (foreshortening taken from the world landmarks' directions), the root position by
   unprojecting the pelvis keypoint at that depth;
2. Adam on ``global_orient [T, 3]``, ``body_pose [T, 23, 3]``, ``transl [T, 3]`` and one
   shared ``betas [B]``, first the root alone on the torso, then everything, minimising

   * robust (Geman-McClure), visibility-weighted 2D reprojection of the SMPL joints against
     the mapped keypoints (:mod:`hsjax.video.correspondence`), residuals relative to the
     person's box height;
   * ``1 - cos`` between SMPL bone directions and the world landmarks' (BlazePose's 3D,
     camera-aligned), visibility-weighted: the depth ordering 2D cannot give;
   * a pose prior: squared axis-angle magnitude with per-joint weights (hsjax's
     ``PRIOR_JOINT_WEIGHTS``), and SMPLify's penalty on knees and elbows bending backwards;
   * ``|β|²`` (shapes are ~N(0, I));
   * temporal smoothness: squared acceleration of the joints and velocity of the pose.

The result is an :class:`hsjax.body.SMPLParams` in the layout the fit takes as "HMR" input.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hsjax import body as body_lib
from hsjax import rotations_np
from hsjax.motion.motion import resample_rotations
from hsjax.losses.keypoints import geman_mcclure
from hsjax.losses.pose import PRIOR_JOINT_WEIGHTS

# (parent, child) SMPL joint pairs whose direction the world landmarks observe.
BONES = ((1, 4), (4, 7), (2, 5), (5, 8), (7, 10), (8, 11), (16, 18), (18, 20), (17, 19),
         (19, 21), (2, 1), (17, 16), (0, 12), (12, 15))
TORSO = (1, 2, 16, 17, 0, 12)  # joints that fix the root's orientation and position.


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitConfig:
  """Settings of :func:`fit_landmarks` (hashable; static under ``jit``)."""

  root_steps: int = 100  # Adam steps on global_orient and transl only (torso joints).
  steps: int = 300  # Adam steps on everything.
  lr: float = 0.03  # Adam learning rate (radians, metres, shape units per step).
  sigma: float = 0.05  # Geman-McClure scale, fraction of the person's box height.
  w_reproj: float = 1.0
  # Bone directions from the world landmarks. Chosen on the calibration clips dance_a:1,
  # punch:2, jump:5 and two further clips, spin:6 and kick:7 (`experiments/video_synthetic.py
  # --steps=0 --bones_weight=W`), mean MPJPE / PA-MPJPE of the initialisation in mm: W = 0
  # 195 / 158, 0.2 152 / 115, 1 117 / 88, 3 110 / 86, 10 111 / 87, 30 115 / 90. The 2D
  # landmarks are good (~7 px at 256 px) but leave each limb's depth open; BlazePose's 3D
  # directions, though ~97 mm PA-MPJPE on their own, decide it.
  w_bones: float = 3.0
  w_pose: float = 0.002  # squared axis-angle magnitude, radians².
  w_bend: float = 1.0  # knees / elbows bending the wrong way, radians².
  w_betas: float = 0.005
  w_smooth_joints: float = 50.0  # joint acceleration, m² / frame⁴.
  w_smooth_pose: float = 0.05  # pose velocity, radians² / frame².
  # (parent, child) joint pairs whose direction the world landmarks set (all of BONES; on the
  # calibration clips, dropping the feet and the head changed MPJPE by only -2.5 %).
  bones: tuple[tuple[int, int], ...] = BONES
  # Largest turn (degrees) of the world landmarks' torso from a frame to either neighbour for
  # the frame's 3D landmarks to be trusted (0: trust all). BlazePose's 3D torso can flip in
  # depth while a person turns side-on (spin:6, a calibration clip: 40-179° jumps between
  # frames where the body turns 5-11°): such frames keep their 2D terms, take the root
  # orientation interpolated from the trusted frames around them, and lose the bone term.
  max_torso_turn_deg: float = 30.0


def _rotation_from_torso(world: np.ndarray) -> np.ndarray:
  """[T, 24, 3] mapped world joints (camera axes) -> [T, 3] axis-angle of the body frame.

  SMPL's body frame: x to the person's left, y up, z forward (where the person faces).
  """
  left = (world[:, 1] - world[:, 2]) + (world[:, 16] - world[:, 17])
  up = (world[:, 12] - world[:, 0])
  x = left / np.maximum(np.linalg.norm(left, axis=-1, keepdims=True), 1e-6)
  y = up - np.sum(up * x, axis=-1, keepdims=True) * x
  y /= np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-6)
  z = np.cross(x, y)
  rot = np.stack([x, y, z], axis=-1)  # columns: body axes in camera coordinates
  # Frames without a usable torso: upright, facing the camera (a rotation by pi about x).
  bad = ~(np.linalg.det(rot) > 0.5)
  rot[bad] = np.diag([1.0, -1.0, -1.0])
  return rotations_np.matrix_to_axis_angle(rot).astype(np.float32)


def untrusted_torso(rotations: np.ndarray, valid: np.ndarray, max_turn_deg: float) -> np.ndarray:
  """[T] bool: valid frames whose torso turns more than ``max_turn_deg`` to the previous or
  the next valid frame (``rotations`` [T, 3] axis-angle; invalid frames are skipped). All
  False when ``max_turn_deg`` is 0 or fewer than two frames would stay trusted."""
  idx = np.flatnonzero(valid)
  out = np.zeros(len(rotations), bool)
  if not max_turn_deg or len(idx) < 3:
    return out
  rot = rotations_np.axis_angle_to_matrix(np.asarray(rotations, np.float64)[idx])
  relative = np.einsum("tji,tjk->tik", rot[:-1], rot[1:])  # R_t^T R_{t+1}
  turn = np.degrees(np.linalg.norm(rotations_np.matrix_to_axis_angle(relative), axis=-1))
  jump = turn > max_turn_deg
  flagged = np.zeros(len(idx), bool)
  flagged[1:] |= jump
  flagged[:-1] |= jump
  if np.sum(~flagged) < 2:
    return out
  out[idx] = flagged
  return out


def initial_guess(body_model: body_lib.BodyModel, keypoints: np.ndarray, world: np.ndarray,
                  K: np.ndarray, valid: np.ndarray,
                  trusted: np.ndarray | None = None) -> body_lib.SMPLParams:
  """The closed-form start (step 1 of the module docstring).

  Args:
    body_model: the body (its mean shape gives the limb lengths).
    keypoints: [T, 24, 3] 2D keypoints (pixels, confidence).
    world: [T, 24, 3] mapped world landmarks (metres, camera axes).
    K: [T, 3, 3] intrinsics.
    valid: [T] bool, frames with a detection (others get a copy of the nearest valid one).
    trusted: [T] bool, frames whose world torso sets the root orientation (default: all); the
      others take it slerped between the nearest trusted frames around them (the nearest
      one's at the ends).
  """
  t = keypoints.shape[0]
  rest = np.asarray(body_model.J_regressor @ body_model.v_template)  # [24, 3]
  go = _rotation_from_torso(world)
  if trusted is not None and np.any(valid & ~trusted):
    known = np.flatnonzero(valid & trusted)
    go = resample_rotations(go[known], known, np.arange(t)).astype(np.float32)
  # Depth from scale: |uv_a - uv_b| ≈ f / z · L_ab · |d_xy| with d the unit 3D direction.
  segs = ((1, 4), (4, 7), (2, 5), (5, 8), (16, 18), (17, 19), (1, 16), (2, 17), (1, 2),
          (16, 17))
  num, den = np.zeros(t), np.zeros(t)
  f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
  for a, b in segs:
    length = np.linalg.norm(rest[a] - rest[b])
    d = world[:, a] - world[:, b]
    d_xy = np.linalg.norm(d[:, :2], axis=-1) / np.maximum(np.linalg.norm(d, axis=-1), 1e-6)
    l2d = np.linalg.norm(keypoints[:, a, :2] - keypoints[:, b, :2], axis=-1)
    c = np.minimum(keypoints[:, a, 2], keypoints[:, b, 2]) * (d_xy > 0.3)
    num += c * f * length * d_xy
    den += c * l2d
  z = np.where(den > 1e-6, num / np.maximum(den, 1e-6), np.nan)
  good = valid & np.isfinite(z) & (z > 0.1)
  if not np.any(good):
    z = np.full(t, 3.0)
  else:
    idx = np.flatnonzero(good)
    z = np.interp(np.arange(t), idx, z[idx])
    # Depth from scale is noisy frame to frame: a running median over 9 frames.
    z = np.array([np.median(z[max(0, i - 4):i + 5]) for i in range(t)])
  pelvis_uv = keypoints[:, 0, :2]
  ray = np.einsum("tij,tj->ti", np.linalg.inv(K),
                  np.concatenate([pelvis_uv, np.ones((t, 1))], axis=-1))
  pelvis = ray * z[:, None]
  transl = pelvis - rest[0]
  return body_lib.SMPLParams(betas=np.zeros(body_model.num_betas, np.float32),
                             body_pose=np.zeros((t, 23, 3), np.float32),
                             global_orient=go, transl=transl.astype(np.float32))


def _loss(params: body_lib.SMPLParams, body_model: body_lib.BodyModel, keypoints, world, K,
          valid, box_height, world_trusted, joint_mask, config: InitConfig):
  """(total, terms) of the landmark fit over all frames; ``joint_mask [24]`` picks joints."""
  betas = jnp.broadcast_to(params.betas, (*params.body_pose.shape[:-2], params.betas.shape[-1]))
  rotmats = body_lib.full_pose_rotmats(params.body_pose, params.global_orient)
  rest = body_lib.rest_joints_from_betas(body_model, betas)
  joints, _ = body_lib.kinematic_chain(rotmats, rest, body_model.parents)
  joints = joints + params.transl[:, None, :]  # [T, 24, 3] camera frame
  v = valid.astype(jnp.float32)
  # 2D reprojection.
  z = jnp.maximum(joints[..., 2], 1e-2)
  uvw = jnp.einsum("tij,tkj->tki", K, joints)
  uv = uvw[..., :2] / z[..., None]
  conf = keypoints[..., 2] * joint_mask * v[:, None] * (joints[..., 2] > 1e-2)
  sq = jnp.sum((uv - keypoints[..., :2]) ** 2, axis=-1) / box_height[:, None] ** 2
  reproj = jnp.sum(conf * geman_mcclure(sq, config.sigma)) / jnp.maximum(jnp.sum(conf), 1.0)
  # Bone directions.
  pa, ch = np.array([b[0] for b in config.bones]), np.array([b[1] for b in config.bones])
  d_smpl = joints[:, ch] - joints[:, pa]
  d_obs = world[:, ch] - world[:, pa]
  cos = jnp.sum(d_smpl * d_obs, -1) / (jnp.linalg.norm(d_smpl, axis=-1)
                                      * jnp.linalg.norm(d_obs, axis=-1) + 1e-6)
  bone_conf = (jnp.minimum(keypoints[:, ch, 2], keypoints[:, pa, 2])
               * (v * world_trusted)[:, None] * joint_mask[ch] * joint_mask[pa])
  bones = jnp.sum(bone_conf * (1.0 - cos)) / jnp.maximum(jnp.sum(bone_conf), 1.0)
  # Priors.
  wj = jnp.asarray(PRIOR_JOINT_WEIGHTS[1:], jnp.float32)
  pose = jnp.mean(jnp.sum(params.body_pose ** 2, -1) * wj)
  bp = params.body_pose
  # SMPLify: left elbow bends with -y, right elbow with +y, knees with +x (joint i -> i-1).
  bend = jnp.mean(jax.nn.relu(bp[:, 17, 1]) ** 2 + jax.nn.relu(-bp[:, 18, 1]) ** 2
                  + jax.nn.relu(-bp[:, 3, 0]) ** 2 + jax.nn.relu(-bp[:, 4, 0]) ** 2)
  betas_term = jnp.mean(params.betas ** 2)
  t = joints.shape[0]
  if t >= 3:
    acc = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    smooth_j = jnp.mean(jnp.sum(acc ** 2, -1))
  else:
    smooth_j = jnp.zeros(())
  if t >= 2:
    smooth_p = jnp.mean(jnp.sum((bp[1:] - bp[:-1]) ** 2, -1))
  else:
    smooth_p = jnp.zeros(())
  terms = {"reproj": reproj, "bones": bones, "pose": pose, "bend": bend, "betas": betas_term,
           "smooth_joints": smooth_j, "smooth_pose": smooth_p}
  total = (config.w_reproj * reproj + config.w_bones * bones + config.w_pose * pose
           + config.w_bend * bend + config.w_betas * betas_term
           + config.w_smooth_joints * smooth_j + config.w_smooth_pose * smooth_p)
  return total, terms


@functools.partial(jax.jit, static_argnames=("config", "steps", "root_only"))
def _optimise(params, body_model, keypoints, world, K, valid, box_height, world_trusted, *,
              config: InitConfig, steps: int, root_only: bool):
  joint_mask = np.zeros(24, np.float32)
  joint_mask[list(TORSO)] = 1.0
  if not root_only:
    joint_mask[:] = 1.0
  joint_mask = jnp.asarray(joint_mask)
  tx = optax.adam(config.lr)
  if root_only:
    labels = body_lib.SMPLParams(betas="frozen", body_pose="frozen", global_orient="train",
                                 transl="train")
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  state = tx.init(params)

  def step(carry, _):
    p, s = carry
    (total, terms), g = jax.value_and_grad(_loss, has_aux=True)(
        p, body_model, keypoints, world, K, valid, box_height, world_trusted, joint_mask,
        config)
    updates, s = tx.update(g, s, p)
    return (optax.apply_updates(p, updates), s), total

  (params, _), totals = jax.lax.scan(step, (params, state), None, length=steps)
  _, terms = _loss(params, body_model, keypoints, world, K, valid, box_height, world_trusted,
                   joint_mask, config)
  return params, totals, terms


def fit_landmarks(body_model: body_lib.BodyModel, keypoints: np.ndarray, world: np.ndarray,
                  K: np.ndarray, valid: np.ndarray | None = None,
                  config: InitConfig = InitConfig()) -> tuple[body_lib.SMPLParams, dict]:
  """SMPL parameters of every frame from mapped landmarks (see the module docstring).

  Args:
    body_model: the body model.
    keypoints: [T, 24, 3] 2D keypoints at the SMPL joints (pixels, confidence in [0, 1];
      :func:`hsjax.video.correspondence.smpl_keypoints`).
    world: [T, 24, 3] the world landmarks mapped alike (metres, camera axes).
    K: [T, 3, 3] or [3, 3] intrinsics.
    valid: [T] bool, frames to fit (others get no data terms; default all).
    config: :class:`InitConfig`.

  Returns:
    ``(params, report)``: :class:`hsjax.body.SMPLParams` (camera frame; ``betas [B]``
    shared) as numpy, and ``{"loss": [steps] totals, "terms": final unweighted terms}``.

  Raises:
    ValueError: on shapes that do not match, naming the argument.
  """
  keypoints = np.asarray(keypoints, np.float32)
  world = np.asarray(world, np.float32)
  t = keypoints.shape[0]
  if keypoints.shape != (t, 24, 3) or world.shape != (t, 24, 3):
    raise ValueError(f"fit_landmarks: keypoints and world must be [T, 24, 3], found "
                     f"{keypoints.shape} and {world.shape}")
  K = np.broadcast_to(np.asarray(K, np.float32), (t, 3, 3))
  valid = np.ones(t, bool) if valid is None else np.asarray(valid, bool)
  keypoints = np.where(np.isfinite(keypoints), keypoints, 0.0)
  world = np.where(np.isfinite(world), world, 0.0)
  vis = keypoints[..., 2] > 0.3
  heights = np.array([np.ptp(kp[m, 1]) if m.sum() >= 2 else 0.0
                      for kp, m in zip(keypoints, vis)])
  box_height = np.maximum(heights, 0.1 * float(np.median(K[:, 1, 2]) * 2)).astype(np.float32)
  untrusted = untrusted_torso(_rotation_from_torso(world), valid, config.max_torso_turn_deg)
  init = initial_guess(body_model, keypoints, world, K, valid, trusted=~untrusted)
  params = jax.tree_util.tree_map(jnp.asarray, init)
  args = (body_model, jnp.asarray(keypoints), jnp.asarray(world), jnp.asarray(K),
          jnp.asarray(valid), jnp.asarray(box_height), jnp.asarray(~untrusted))
  params, loss_root, _ = _optimise(params, *args, config=config, steps=config.root_steps,
                                   root_only=True)
  params, loss_all, terms = _optimise(params, *args, config=config, steps=config.steps,
                                      root_only=False)
  out = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
  report = {"loss": np.concatenate([np.asarray(loss_root), np.asarray(loss_all)]).tolist(),
            "terms": {k: float(v) for k, v in terms.items()},
            "untrusted_world_frames": np.flatnonzero(untrusted).tolist()}
  return out, report
