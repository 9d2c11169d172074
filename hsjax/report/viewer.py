"""The browser viewer of a fitted avatar: a ``viewer/`` folder that plays its motions.

:func:`write_viewer` writes a self-contained folder that any browser opens from a local HTTP
server (ES modules do not load from ``file://``)::

  viewer/
    index.html          the page (orbit / zoom, play / pause, frame slider, speed, motion)
    viewer.js           the page's code (three.js + Spark)
    lib/                the vendored JavaScript: Spark 2.2.0 and three 0.187.0, with licences
    avatar.ply          the canonical avatar, shaped with the fit's betas (3DGS layout)
    skinning.bin        uint8 [N, 8]: per Gaussian 4 joint indices, then 4 weights summing to 255
    motions/<name>.bin  float32 [T, 24, 3, 4]: the LBS joint transforms of every frame
    frames/*.jpg        optional: the input frames of the training view
    scene.json          sizes, motions, the camera, the skinning error measured at write time

The page skins on the GPU with Spark's ``SplatSkinning`` in ``LINEAR_BLEND`` mode with
covariance splats: per Gaussian ``M = Σ_k w_k A_k`` over 4 joints, ``x' = M x`` and
``Σ' = M Σ Mᵀ``, so a 300-frame clip of a 50k-Gaussian avatar stays a few MB (the transforms
are 1.2 kB a frame).

Warning: this is hsjax's deformation (:func:`hsjax.avatar.deform`) up to four reductions,
each measured by :func:`skinning_error` and written to ``scene.json``:

* Spark blends at most 4 joints per Gaussian with 8-bit weights: the top-4 of hsjax's 24
  weights, renormalised and rounded to sum exactly 255;
* the covariance is ``M Σ Mᵀ`` (Spark) instead of ``R Σ Rᵀ`` with ``R`` the polar rotation of
  ``M`` (hsjax): they differ by LBS's stretch near joints;
* pose-dependent offsets (SMPL's pose blend shapes interpolated at each Gaussian's anchor and
  the optional non-rigid MLP) are per frame and per Gaussian, too large to ship: dropped;
  the shape blend shapes (constant over the motion) are baked into the canonical means;
* colour is the SH DC term only: Spark evaluates SH before skinning, in the canonical frame,
  so higher bands would shade with unrotated directions; view-dependent colour is not shown.

Camera convention: hsjax's cameras are OpenCV (x right, y down, z forward, ``K``);
three.js's are OpenGL (x right, y up, looking down -z, a clip-space projection).
:func:`camera_to_threejs` converts one into the other explicitly.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Mapping

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.camera import image_up_sign
from hsjax.gaussians import Gaussians
from hsjax.io.ply import save_ply
from hsjax.report.figures import to_uint8

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "viewer_assets")
# Joints Spark blends per Gaussian (SplatSkinning packs 4 indices and 4 8-bit weights).
MAX_BONES = 4
_WEIGHT_LEVELS = 255
_NUM_JOINTS = 24
# Near / far planes of the browser camera, metres (clip-space depth only; no culling effect
# for a body a few metres away).
NEAR = 0.01
FAR = 100.0


# ------------------------------------------------------------------------------------------
# Cameras


def camera_to_threejs(K, world_to_cam, width: int, height: int, near: float = NEAR,
                      far: float = FAR) -> dict[str, list[float]]:
  """An OpenCV camera as three.js's ``matrixWorld`` and ``projectionMatrix``.

  three.js's camera frame is OpenCV's with y and z negated: ``cam_to_world_gl =
  cam_to_world_cv · diag(1, -1, -1, 1)``. The projection maps the GL camera frame to clip
  space so that NDC ``x = 2u/W - 1`` and ``y = 1 - 2v/H`` for the continuous pixel
  ``(u, v) = K p / z`` of hsjax (pixel centres at +0.5), skew included.

  Args:
    K: [3, 3] intrinsics, pixels.
    world_to_cam: [4, 4] OpenCV extrinsics, metres.
    width, height: image size, pixels.
    near, far: clip planes, metres.

  Returns:
    ``{"matrix_world": [16], "projection": [16]}``, each a 4x4 matrix flattened row-major
    (the argument order of three.js's ``Matrix4.set``).
  """
  k = np.asarray(K, np.float64)
  w2c = np.asarray(world_to_cam, np.float64)
  if k.shape != (3, 3) or w2c.shape != (4, 4):
    raise ValueError(f"camera_to_threejs: K must be [3, 3] and world_to_cam [4, 4], found "
                     f"{k.shape} and {w2c.shape}")
  rot, t = w2c[:3, :3], w2c[:3, 3]
  cam_to_world = np.eye(4)
  cam_to_world[:3, :3] = rot.T
  cam_to_world[:3, 3] = -rot.T @ t
  matrix_world = cam_to_world @ np.diag([1.0, -1.0, -1.0, 1.0])
  fx, s, cx, fy, cy = k[0, 0], k[0, 1], k[0, 2], k[1, 1], k[1, 2]
  projection = np.array([
      [2 * fx / width, -2 * s / width, 1 - 2 * cx / width, 0.0],
      [0.0, 2 * fy / height, 2 * cy / height - 1, 0.0],
      [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
      [0.0, 0.0, -1.0, 0.0],
  ])
  return {"matrix_world": matrix_world.reshape(-1).tolist(),
          "projection": projection.reshape(-1).tolist()}


def project_threejs(camera: Mapping[str, Any], points, width: int, height: int) -> np.ndarray:
  """Pixels ``(u, v)`` [..., 2] of world points [..., 3] through three.js's matrices.

  What WebGL does with :func:`camera_to_threejs`'s output (clip = P · V · p, NDC, viewport),
  in numpy: the tests compare it with :func:`hsjax.camera.project_points`.
  """
  view = np.linalg.inv(np.asarray(camera["matrix_world"], np.float64).reshape(4, 4))
  proj = np.asarray(camera["projection"], np.float64).reshape(4, 4)
  p = np.asarray(points, np.float64)
  clip = np.concatenate([p, np.ones_like(p[..., :1])], -1) @ (proj @ view).T
  ndc = clip[..., :3] / clip[..., 3:]
  return np.stack([(ndc[..., 0] + 1) * width / 2, (1 - ndc[..., 1]) * height / 2], -1)


# ------------------------------------------------------------------------------------------
# Skinning as the browser does it


def reduce_skinning(weights, max_bones: int = MAX_BONES) -> tuple[np.ndarray, np.ndarray]:
  """hsjax's skinning weights as Spark stores them: the top ``max_bones``, in 8-bit steps.

  The largest ``max_bones`` weights are kept, renormalised to sum 1 and rounded to integers
  summing exactly to 255 (largest remainders get the leftover steps), so the blend never
  scales the Gaussian.

  Args:
    weights: [N, 24] skinning weights (rows sum to 1).
    max_bones: joints kept per Gaussian (Spark: 4).

  Returns:
    ``(joints [N, max_bones] uint8, levels [N, max_bones] uint8)``, weights = levels / 255,
    in decreasing order of weight.
  """
  w = np.asarray(weights, np.float64)
  if w.ndim != 2 or w.shape[1] < max_bones:
    raise ValueError(f"reduce_skinning: weights must be [N, J >= {max_bones}], found {w.shape}")
  joints = np.argsort(-w, axis=1, kind="stable")[:, :max_bones]
  top = np.maximum(np.take_along_axis(w, joints, 1), 0.0)
  total = top.sum(1, keepdims=True)
  top = np.where(total > 0, top / np.where(total > 0, total, 1.0), 1.0 / max_bones)
  scaled = top * _WEIGHT_LEVELS
  levels = np.floor(scaled).astype(np.int64)
  leftover = _WEIGHT_LEVELS - levels.sum(1)
  order = np.argsort(-(scaled - levels), axis=1, kind="stable")
  rank = np.argsort(order, axis=1)
  levels += rank < leftover[:, None]
  return joints.astype(np.uint8), levels.astype(np.uint8)


def skin_like_viewer(means, joints, levels, transforms) -> tuple[np.ndarray, np.ndarray]:
  """What the page computes per Gaussian: ``M = Σ_k (levels_k / 255) A_{joints_k}``.

  Args:
    means: [N, 3] canonical means of the viewer's avatar (shape offsets baked in).
    joints, levels: [N, K] from :func:`reduce_skinning`.
    transforms: [..., 24, 4, 4] joint transforms of a frame (or frames).

  Returns:
    ``(world means [..., N, 3], blended affine rows [..., N, 3, 4])``: ``M`` is ``[..., :3]``.
  """
  a = np.asarray(transforms, np.float64)
  w = np.asarray(levels, np.float64) / _WEIGHT_LEVELS  # [N, K]
  blended = np.einsum("nk,...nkab->...nab", w, a[..., np.asarray(joints, np.int64), :3, :])
  world = np.einsum("...nij,nj->...ni", blended[..., :3], np.asarray(means, np.float64))
  return world + blended[..., 3], blended


# ------------------------------------------------------------------------------------------
# The avatar and its motions as the page reads them


def viewer_gaussians(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                     betas) -> tuple[Gaussians, np.ndarray]:
  """The active Gaussians in the canonical frame with the body shape applied.

  Args:
    avatar: the canonical avatar.
    body_model: its body model.
    betas: [B] the shape of the motions (e.g. the refined fit's).

  Returns:
    ``(gaussians, weights)``: :class:`Gaussians` with ``means [N', 3]`` (canonical means plus
    the shape blend shapes at each anchor), ``quats``, ``scales``, ``opacities`` and the SH
    DC term as ``sh [N', 1, 3]``; and the skinning weights in use ``[N', 24]``. N' counts the
    active slots.
  """
  betas = jnp.asarray(betas, jnp.float32)
  if betas.shape != (body_model.num_betas,):
    raise ValueError(f"viewer_gaussians: betas must be [{body_model.num_betas}], found "
                     f"{betas.shape}")
  active = np.asarray(avatar.active, bool)
  shape_offsets = jnp.einsum("b,vdb->vd", betas, body_model.shapedirs)
  offsets = avatar_lib.interpolate_vertex_values(shape_offsets, body_model.faces,
                                                 avatar.face_ids, avatar.barycentrics)
  means = np.asarray(avatar.means + offsets, np.float32)[active]
  quats = np.asarray(avatar.quats, np.float32)[active]
  quats = quats / np.linalg.norm(quats, axis=-1, keepdims=True)
  gaussians = Gaussians(means=means, quats=quats,
                        scales=np.exp(np.asarray(avatar.log_scales, np.float32))[active],
                        opacities=np.asarray(jax.nn.sigmoid(avatar.opacity_logits),
                                             np.float32)[active],
                        sh=np.asarray(avatar.sh, np.float32)[active][:, :1])
  weights = np.asarray(avatar_lib.skinning_weights(avatar), np.float32)[active]
  return gaussians, weights


def motion_transforms(body_model: body_lib.BodyModel, poses: body_lib.SMPLParams
                      ) -> tuple[np.ndarray, np.ndarray]:
  """``(joints [T, 24, 3], transforms [T, 24, 4, 4])`` of every frame of ``poses``.

  The transforms are hsjax's LBS joint transforms (:func:`hsjax.body.joint_transforms`,
  ``transl`` included): canonical points with the shape applied go to the world by them.
  """
  body_pose = jnp.asarray(poses.body_pose, jnp.float32)
  rotmats = body_lib.full_pose_rotmats(body_pose, jnp.asarray(poses.global_orient, jnp.float32))
  betas = jnp.broadcast_to(jnp.asarray(poses.betas, jnp.float32),
                           (rotmats.shape[0], body_model.num_betas))
  joints, transforms = jax.jit(body_lib.joint_transforms)(
      body_model, betas, rotmats, jnp.asarray(poses.transl, jnp.float32))
  return np.asarray(joints, np.float32), np.asarray(transforms, np.float32)


def skinning_error(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                   poses: body_lib.SMPLParams, max_frames: int = 16) -> dict[str, float]:
  """How far the page's skinning is from :func:`hsjax.avatar.deform`, over frames of ``poses``.

  Args:
    avatar, body_model: the avatar.
    poses: a motion (shared ``betas``); at most ``max_frames`` evenly spaced frames are used.
    max_frames: frames compared.

  Returns:
    ``mean_mm`` / ``p99_mm`` / ``max_mm``: distance of the Gaussians' centres, mm (top-4 8-bit
    weights and the dropped pose-dependent offsets together); ``mean_mm_weights`` /
    ``max_mm_weights``: the same from the weights alone (hsjax's blend shapes added back);
    ``cov_rel_mean`` / ``cov_rel_max``: relative Frobenius error of the covariance
    ``M Σ Mᵀ`` against hsjax's ``R Σ Rᵀ`` (weights reduced as the page does);
    ``frames``: frames compared.
  """
  num = int(poses.body_pose.shape[0])
  frames = np.unique(np.linspace(0, num - 1, min(max_frames, num)).round().astype(int))
  sub = poses.select(frames)
  gaussians, weights = viewer_gaussians(avatar, body_model, poses.betas)
  joints, levels = reduce_skinning(weights)
  _, transforms = motion_transforms(body_model, sub)
  viewer_means, blended = skin_like_viewer(gaussians.means, joints, levels, transforms)

  active = np.asarray(avatar.active, bool)
  deform = jax.jit(jax.vmap(avatar_lib.deform_with_aux, in_axes=(None, None, None, 0, 0, 0)))
  out = deform(avatar, body_model, jnp.asarray(sub.betas, jnp.float32),
               jnp.asarray(sub.body_pose, jnp.float32),
               jnp.asarray(sub.global_orient, jnp.float32), jnp.asarray(sub.transl, jnp.float32))
  ref_means = np.asarray(out.gaussians.means, np.float64)[:, active]
  err = np.linalg.norm(viewer_means - ref_means, axis=-1) * 1000.0
  # The weights alone: the page's blend applied to hsjax's posed-space means.
  posed_space = np.asarray(out.canonical_means, np.float64)[:, active]
  weight_means = np.einsum("tnij,tnj->tni", blended[..., :3], posed_space) + blended[..., 3]
  err_w = np.linalg.norm(weight_means - ref_means, axis=-1) * 1000.0

  rot = np.asarray(out.rotations, np.float64)[:, active]
  local = _quat_matrices(gaussians.quats)  # [N, 3, 3]
  cov = np.einsum("nij,nj,nkj->nik", local, np.asarray(gaussians.scales, np.float64) ** 2,
                  local)
  ref_cov = np.einsum("tnij,njk,tnlk->tnil", rot, cov, rot)
  view_cov = np.einsum("tnij,njk,tnlk->tnil", blended[..., :3], cov, blended[..., :3])
  rel = (np.linalg.norm(view_cov - ref_cov, axis=(-2, -1))
         / np.maximum(np.linalg.norm(ref_cov, axis=(-2, -1)), 1e-30))
  return {"mean_mm": float(err.mean()), "p99_mm": float(np.percentile(err, 99)),
          "max_mm": float(err.max()), "mean_mm_weights": float(err_w.mean()),
          "max_mm_weights": float(err_w.max()), "cov_rel_mean": float(rel.mean()),
          "cov_rel_max": float(rel.max()), "frames": int(len(frames))}


def _quat_matrices(quats) -> np.ndarray:
  """[N, 4] unit (w, x, y, z) -> [N, 3, 3] rotation matrices (float64)."""
  w, x, y, z = np.moveaxis(np.asarray(quats, np.float64), -1, 0)
  return np.stack([
      np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
      np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
      np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
  ], -2)


# ------------------------------------------------------------------------------------------
# The folder


def write_viewer(out_dir: str, *, avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                 motions: Mapping[str, tuple[body_lib.SMPLParams, float]], camera,
                 default_motion: str | None = None, frames=None,
                 background=(1.0, 1.0, 1.0), measure: bool = True) -> dict[str, Any]:
  """Writes the viewer folder (see the module docstring).

  Args:
    out_dir: the folder (created; files of a previous viewer are replaced).
    avatar: the canonical avatar.
    body_model: its body model.
    motions: ordered ``name -> (poses, fps)``: ``poses`` with shared ``betas [B]`` and
      ``body_pose [T, 23, 3]`` etc. The avatar is shaped with the first motion's betas.
      Names become file names: letters, digits, ``-`` and ``_`` only.
    camera: the initial view, an unbatched :class:`hsjax.camera.Camera` (OpenCV); the canvas
      keeps its aspect ratio.
    default_motion: the motion shown first (default: the first).
    frames: optional ``[T, H, W, 3]`` input frames in [0, 1] shown beside the avatar while the
      default motion plays (same T as that motion).
    background: page background RGB in [0, 1].
    measure: measure :func:`skinning_error` on the default motion (a few seconds) and store it.

  Returns:
    The ``scene.json`` content.
  """
  if not motions:
    raise ValueError("write_viewer: no motion given")
  for name in motions:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
      raise ValueError(f"write_viewer: motion name {name!r} must be letters, digits, - or _")
  default_motion = default_motion or next(iter(motions))
  if default_motion not in motions:
    raise ValueError(f"write_viewer: default_motion {default_motion!r} is not one of "
                     f"{list(motions)}")
  if frames is not None:
    expected = int(motions[default_motion][0].body_pose.shape[0])
    if len(frames) != expected:
      raise ValueError(f"write_viewer: {len(frames)} input frames for a {expected}-frame "
                       f"motion '{default_motion}'")
  first_poses = next(iter(motions.values()))[0]
  betas = np.asarray(first_poses.betas, np.float32)

  os.makedirs(out_dir, exist_ok=True)
  for name in ("index.html", "viewer.js"):
    shutil.copyfile(os.path.join(ASSETS_DIR, name), os.path.join(out_dir, name))
  lib_dir = os.path.join(out_dir, "lib")
  if os.path.isdir(lib_dir):
    shutil.rmtree(lib_dir)
  shutil.copytree(os.path.join(ASSETS_DIR, "vendor"), lib_dir)

  gaussians, weights = viewer_gaussians(avatar, body_model, betas)
  save_ply(os.path.join(out_dir, "avatar.ply"), gaussians)
  joints, levels = reduce_skinning(weights)
  np.concatenate([joints, levels], 1).tofile(os.path.join(out_dir, "skinning.bin"))

  motion_dir = os.path.join(out_dir, "motions")
  if os.path.isdir(motion_dir):
    shutil.rmtree(motion_dir)
  os.makedirs(motion_dir)
  entries = []
  pelvis = None
  for name, (poses, fps) in motions.items():
    joints_t, transforms = motion_transforms(body_model, poses)
    np.ascontiguousarray(transforms[:, :, :3, :], np.float32).tofile(
        os.path.join(motion_dir, f"{name}.bin"))
    entries.append({"name": name, "file": f"motions/{name}.bin",
                    "num_frames": int(transforms.shape[0]), "fps": float(fps)})
    if name == default_motion:
      pelvis = np.asarray(joints_t[0, 0], np.float64)

  frame_files = []
  frames_dir = os.path.join(out_dir, "frames")
  if os.path.isdir(frames_dir):
    shutil.rmtree(frames_dir)
  if frames is not None:
    os.makedirs(frames_dir)
    for t, image in enumerate(frames):
      frame_files.append(f"frames/{t:06d}.jpg")
      iio.imwrite(os.path.join(out_dir, frame_files[-1]), to_uint8(np.asarray(image)),
                  quality=85)

  width, height = int(camera.width), int(camera.height)
  scene = {
      "format": "hsjax-viewer/1",
      "num_gaussians": int(gaussians.means.shape[0]),
      "skinning": {"file": "skinning.bin", "max_bones": MAX_BONES, "mode": "linear_blend"},
      "avatar": "avatar.ply",
      "motions": entries,
      "default_motion": default_motion,
      "frames": {"motion": default_motion, "files": frame_files} if frame_files else None,
      "camera": {"width": width, "height": height,
                 "K": np.asarray(camera.K, np.float64).tolist(),
                 "world_to_cam": np.asarray(camera.world_to_cam, np.float64).tolist(),
                 **camera_to_threejs(camera.K, camera.world_to_cam, width, height)},
      "target": pelvis.tolist(),
      "background": [float(c) for c in background],
      "dropped": {"pose_offsets": True, "nonrigid": avatar.nonrigid is not None,
                  "sh_degree": int(avatar.sh_degree)},
  }
  if measure:
    scene["skinning_error"] = skinning_error(avatar, body_model, motions[default_motion][0])
  with open(os.path.join(out_dir, "scene.json"), "w") as f:
    json.dump(scene, f, indent=1)
  return scene


def folder_size(path: str, exclude=("lib",)) -> int:
  """Bytes of the files under ``path``, leaving out the top-level folders ``exclude``."""
  total = 0
  for root, dirs, files in os.walk(path):
    if os.path.abspath(root) == os.path.abspath(path):
      dirs[:] = [d for d in dirs if d not in exclude]
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  return total


# ------------------------------------------------------------------------------------------
# A run directory's viewer


def place_motion(body_model: body_lib.BodyModel, betas, body_pose, global_orient, transl,
                 pelvis, floor: float) -> np.ndarray:
  """[T, 3] ``transl`` putting a clip where a run's subject stands.

  The clip's first pelvis goes horizontally (x, z) to ``pelvis`` [3] and its lowest vertex
  over the clip to height ``floor`` (y up), as ``experiments/animate.py`` places clips on
  ``y = 0``.
  """
  transl = np.asarray(transl, np.float32)
  out = jax.jit(body_lib.body_forward)(body_model, jnp.asarray(betas, jnp.float32),
                                       jnp.asarray(body_pose, jnp.float32),
                                       jnp.asarray(global_orient, jnp.float32),
                                       jnp.asarray(transl))
  lowest = float(np.min(np.asarray(out.vertices)[..., 1]))
  start = np.asarray(out.joints[0, 0])
  shift = np.array([pelvis[0] - start[0], floor - lowest, pelvis[2] - start[2]], np.float32)
  return transl + shift


def write_run_viewer(run_dir: str, *, body_model: body_lib.BodyModel, sequence,
                     avatar: avatar_lib.Avatar, poses: body_lib.SMPLParams,
                     extra_motions=(), with_frames: bool = True, out_dir: str | None = None,
                     measure: bool = True) -> dict[str, Any]:
  """The viewer of a run: the refined motion (default), the HMR motion and ``extra_motions``.

  Args:
    run_dir: the run directory; the viewer goes to ``<run_dir>/viewer`` unless ``out_dir``.
    body_model: the fit's body model.
    sequence: the fitted ``hsjax.data.Sequence`` (its first training camera is the initial
      view, its frames are shown beside the avatar, its ``hmr`` is the HMR motion).
    avatar: the fitted avatar.
    poses: the refined poses (T frames).
    extra_motions: ``(name, hsjax.motion.Motion)`` pairs, e.g. shipped clips; each is
      placed where the subject stands in the first refined frame, on the lowest point of the
      refined motion, and played at its own frame rate.
    with_frames: show the input frames beside the refined motion.
    out_dir: the viewer folder (default ``<run_dir>/viewer``).
    measure: store the skinning error (:func:`skinning_error`) in ``scene.json``.

  Returns:
    The ``scene.json`` content.
  """
  betas = np.asarray(poses.betas, np.float32)
  refined = body_lib.SMPLParams(betas=betas, body_pose=np.asarray(poses.body_pose),
                                global_orient=np.asarray(poses.global_orient),
                                transl=np.asarray(poses.transl))
  # The HMR motion with the fitted shape: the same avatar, only the poses differ.
  hmr = body_lib.SMPLParams(betas=betas, body_pose=np.asarray(sequence.hmr.body_pose),
                            global_orient=np.asarray(sequence.hmr.global_orient),
                            transl=np.asarray(sequence.hmr.transl))
  cams = sequence.cameras
  world_to_cam = np.asarray(cams.world_to_cam[0], np.float64)
  if image_up_sign(world_to_cam) < 0:
    # A video fit's world is the camera's own frame (y down): the browser's orbit turns about
    # +y and the shipped clips stand on a +y-up floor, so the scene is stood upright on the
    # body's mean up axis (body.upright_transform: half a turn about x, then the camera's tilt).
    upright = body_lib.upright_transform(refined)
    refined = body_lib.transform_params(body_model, refined, upright)
    hmr = body_lib.transform_params(body_model, hmr, upright)
    world_to_cam = world_to_cam @ np.linalg.inv(upright)
  motions = {"refined": (refined, float(sequence.fps)), "hmr": (hmr, float(sequence.fps))}
  if extra_motions:
    verts, joints = body_lib.pose_frames_host(body_model, refined)
    floor = float(verts[..., 1].min())
    for name, clip in extra_motions:
      transl = place_motion(body_model, betas, clip.body_pose, clip.global_orient, clip.transl,
                            joints[0, 0], floor)
      motions[name] = (body_lib.SMPLParams(
          betas=betas, body_pose=np.asarray(clip.body_pose, np.float32),
          global_orient=np.asarray(clip.global_orient, np.float32), transl=transl),
                       float(clip.fps))
  camera = Camera(K=np.asarray(cams.K[0]), world_to_cam=world_to_cam.astype(np.float32),
                  width=cams.width, height=cams.height)
  # Frames may be lazy (loaded from disk on access): one at a time.
  frames = (np.stack([np.asarray(sequence.images[t]) for t in range(len(sequence))])
            if with_frames else None)
  return write_viewer(out_dir or os.path.join(run_dir, "viewer"), avatar=avatar,
                      body_model=body_model, motions=motions, camera=camera,
                      default_motion="refined", frames=frames, measure=measure)
