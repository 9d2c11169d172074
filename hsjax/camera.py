"""Pinhole cameras.

Convention (used everywhere in hsjax; importers convert at the edge):

* OpenCV camera frame: x right, y down, z forward (into the scene); metres.
* ``world_to_cam`` [4, 4] maps homogeneous world points to camera points:
  ``p_cam = R @ p_world + t`` with ``R = world_to_cam[:3, :3]``, ``t = world_to_cam[:3, 3]``.
* ``K`` [3, 3] intrinsics in pixels; pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5)``
  in the continuous image coordinates that ``K`` produces (the 3DGS / gsplat convention), so a
  point projecting to ``K @ p / z = (0.5, 0.5)`` lies at the centre of the top-left pixel.
* ``width``, ``height`` are static Python ints (they set array shapes under ``jit``).

The body frame is SMPL's (y up, facing +z); :func:`look_at` builds OpenCV extrinsics for it.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass(kw_only=True)
class Camera:
  """A pinhole camera; a pytree whose image size is static.

  Batch axes lead: a ``Camera`` with ``K [T, 3, 3]`` and ``world_to_cam [T, 4, 4]`` describes
  ``T`` cameras of one image size (``jax.vmap`` over it renders them all).
  """

  K: jax.Array  # [..., 3, 3] intrinsics, pixels.
  world_to_cam: jax.Array  # [..., 4, 4] OpenCV extrinsics, metres.
  width: int = flax.struct.field(pytree_node=False)  # image width W, pixels.
  height: int = flax.struct.field(pytree_node=False)  # image height H, pixels.

  @property
  def cam_to_world(self) -> jax.Array:
    """[..., 4, 4] inverse of ``world_to_cam`` (rigid inverse, no matrix inversion)."""
    rot = self.world_to_cam[..., :3, :3]
    t = self.world_to_cam[..., :3, 3]
    rot_t = jnp.swapaxes(rot, -1, -2)
    out = jnp.zeros_like(self.world_to_cam)
    out = out.at[..., :3, :3].set(rot_t)
    out = out.at[..., :3, 3].set(-jnp.einsum("...ij,...j->...i", rot_t, t))
    return out.at[..., 3, 3].set(1.0)

  @property
  def center(self) -> jax.Array:
    """[..., 3] camera centre in world coordinates."""
    return self.cam_to_world[..., :3, 3]


def intrinsics(focal: float, width: int, height: int, fy: float | None = None) -> np.ndarray:
  """[3, 3] pinhole intrinsics with the principal point at the image centre."""
  fy = focal if fy is None else fy
  return np.array(
      [[focal, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]], np.float32)


def image_up_sign(world_to_cam) -> float:
  """+1.0 when a camera's image up (its -y axis) points along the world's +y, else -1.0.

  hsjax's worlds are +y up (SMPL, the synthetic sequences, imported datasets), except a video
  fit's, which is the camera's own OpenCV frame (y down): this tells the two apart.
  """
  return 1.0 if float(np.asarray(world_to_cam)[1, 1]) <= 0.0 else -1.0


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
  """[4, 4] OpenCV ``world_to_cam`` for a camera at ``eye`` [3] looking at ``target`` [3].

  ``up`` is the world's up direction (SMPL: +y); it appears as -y (up) in the image.
  """
  eye = np.asarray(eye, np.float64)
  forward = np.asarray(target, np.float64) - eye
  forward /= np.linalg.norm(forward)
  right = np.cross(forward, np.asarray(up, np.float64))
  if np.linalg.norm(right) < 1e-9:
    raise ValueError(f"look_at: up {up} is parallel to the viewing direction {forward}")
  right /= np.linalg.norm(right)
  down = np.cross(forward, right)
  rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
  out = np.eye(4)
  out[:3, :3] = rot
  out[:3, 3] = -rot @ eye
  return out.astype(np.float32)


def project_points(camera: Camera, points: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Projects world points to pixels.

  Args:
    camera: a single (unbatched) camera.
    points: [..., 3] world points.

  Returns:
    ``(uv [..., 2], z [...])``: continuous pixel coordinates (pixel centres at +0.5) and
    camera-space depth.
  """
  p_cam = points @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
  z = p_cam[..., 2]
  uvw = p_cam @ camera.K.T
  safe_z = jnp.where(jnp.abs(z) > 1e-9, z, 1e-9)
  return uvw[..., :2] / safe_z[..., None], z
