"""The method's forward chain as named stages: pose the body, deform the avatar, render.

Every stage is a pure function of pytrees (MJX-style: the constant model and the changing
data are separate arguments), so the fitting step, the evaluation and the benchmarks run the
*same* code. A stage comes in two forms: ``*_frame`` for one frame, and ``*_frames``, its
``jax.vmap`` over a leading frame axis F.

::

  SMPLParams ──pose_frames──► BodyOutput (vertices, joints, transforms)       [F]
  Avatar + SMPLParams ──deform_frames──► DeformOutput (world Gaussians, ...)   [F]
  Gaussians + Camera ──render_frames──► RenderOutput (rgb, alpha, depth, ...)  [F]

:func:`forward` runs the three on a minibatch and returns a :class:`ForwardOutput`, the input
of the loss terms (``hsjax.losses``).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import rendering
from hsjax.body import BodyModel
from hsjax.body import BodyOutput
from hsjax.body import SMPLParams
from hsjax.camera import Camera
from hsjax.gaussians import Gaussians
from kernels.rasterize.api import RenderOutput


@dataclasses.dataclass(frozen=True, kw_only=True)
class RenderSettings:
  """How frames are rendered (static: hashable, part of a jitted function's signature)."""

  background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB behind the avatar.
  backend: str = "auto"  # rasteriser backend: auto | xla | pallas | reference.
  tile_capacity: int = rendering.DEFAULT_TILE_CAPACITY  # Gaussians kept per 16x16 tile.
  # Tiles a Gaussian is listed in: "box" (its screen box) or "ellipse" (where it can draw).
  tile_overlap: str = "ellipse"


@flax.struct.dataclass(kw_only=True)
class ForwardOutput:
  """Everything the forward chain computed for a minibatch of F frames."""

  body: BodyOutput  # the posed body: vertices [F, V, 3], joints [F, 24, 3], ...
  deformed: avatar_lib.DeformOutput  # world Gaussians [F, N, ...], LBS rotations, offsets.
  render: RenderOutput  # rgb [F, H, W, 3], alpha / depth [F, H, W], means2d [F, N, 2], ...


# ------------------------------------------------------------------------------------------
# Pose


def pose_frames(body_model: BodyModel, poses: SMPLParams) -> BodyOutput:
  """The posed body of every frame of ``poses`` (shared ``betas [B]``, frames ``[F]``)."""
  return body_lib.forward_params(body_model, poses)


def sequence_joints(body_model: BodyModel, poses: SMPLParams) -> jax.Array:
  """[T, 24, 3] posed joints of every frame (no mesh: cheap enough for a whole sequence)."""
  rotmats = body_lib.full_pose_rotmats(poses.body_pose, poses.global_orient)
  betas = jnp.broadcast_to(poses.betas, (rotmats.shape[0], poses.betas.shape[-1]))
  joints, _ = body_lib.joint_transforms(body_model, betas, rotmats, poses.transl)
  return joints


# ------------------------------------------------------------------------------------------
# Deform


def deform_frame(avatar: avatar_lib.Avatar, body_model: BodyModel, pose: SMPLParams
                 ) -> avatar_lib.DeformOutput:
  """The canonical avatar carried into one frame (``pose``: ``body_pose [23, 3]``, ...)."""
  return avatar_lib.deform_with_aux(avatar, body_model, pose.betas, pose.body_pose,
                                    pose.global_orient, pose.transl)


def deform_frames(avatar: avatar_lib.Avatar, body_model: BodyModel, poses: SMPLParams
                  ) -> avatar_lib.DeformOutput:
  """:func:`deform_frame` over the F frames of ``poses`` (shared ``betas [B]``)."""
  return jax.vmap(avatar_lib.deform_with_aux, in_axes=(None, None, None, 0, 0, 0))(
      avatar, body_model, poses.betas, poses.body_pose, poses.global_orient, poses.transl)


# ------------------------------------------------------------------------------------------
# Render


def render_frame(gaussians: Gaussians, camera: Camera, settings: RenderSettings,
                 screen_offsets: jax.Array | None = None) -> RenderOutput:
  """One frame: ``gaussians`` (means [N, 3], ...) seen by ``camera`` (K [3, 3])."""
  return rendering.render(gaussians, camera,
                          background=jnp.asarray(settings.background, jnp.float32),
                          backend=settings.backend, tile_capacity=settings.tile_capacity,
                          screen_offsets=screen_offsets, tile_overlap=settings.tile_overlap)


def render_frames(gaussians: Gaussians, cameras: Camera, settings: RenderSettings,
                  screen_offsets: jax.Array | None = None) -> RenderOutput:
  """:func:`render_frame` over a leading frame axis of ``gaussians`` and ``cameras``.

  Args:
    gaussians: means [F, N, 3], ...
    cameras: K [F, 3, 3], world_to_cam [F, 4, 4].
    settings: background, backend and tile capacity.
    screen_offsets: optional [F, N, 2] zeros whose gradient density control accumulates.
  """
  if screen_offsets is None:
    return jax.vmap(lambda g, c: render_frame(g, c, settings))(gaussians, cameras)
  return jax.vmap(lambda g, c, o: render_frame(g, c, settings, o))(gaussians, cameras,
                                                                   screen_offsets)


def frames_on_host(poses: SMPLParams, cameras: Camera, frames: Iterable[int]
                   ) -> Iterator[tuple[int, SMPLParams, jax.Array, jax.Array]]:
  """One frame at a time, for host loops over sequences too long for one batch: yields
  ``(t, pose, K [3, 3], world_to_cam [4, 4])`` for each ``t`` of ``frames``.

  Args:
    poses: ``betas [B]``, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``, ``transl [T, 3]``
      (numpy or JAX); each ``pose`` is frame ``t``'s, float32.
    cameras: ``K [T, 3, 3]`` / ``world_to_cam [T, 4, 4]``, or unbatched (the same camera for
      every frame).
    frames: the frame indices, in order (e.g. wrapped in a progress bar).
  """
  k_all = np.asarray(cameras.K, np.float32)
  w2c_all = np.asarray(cameras.world_to_cam, np.float32)
  betas = jnp.asarray(poses.betas, jnp.float32)
  body_pose = np.asarray(poses.body_pose, np.float32)
  global_orient = np.asarray(poses.global_orient, np.float32)
  transl = np.asarray(poses.transl, np.float32)
  for t in frames:
    pose = SMPLParams(betas=betas, body_pose=jnp.asarray(body_pose[t]),
                      global_orient=jnp.asarray(global_orient[t]), transl=jnp.asarray(transl[t]))
    yield (int(t), pose, jnp.asarray(k_all if k_all.ndim == 2 else k_all[t]),
           jnp.asarray(w2c_all if w2c_all.ndim == 2 else w2c_all[t]))


# ------------------------------------------------------------------------------------------
# The chain


def forward(avatar: avatar_lib.Avatar, body_model: BodyModel, poses: SMPLParams,
            cameras: Camera, settings: RenderSettings,
            screen_offsets: jax.Array | None = None) -> ForwardOutput:
  """Deforms and renders the avatar in F frames and poses the body in them.

  Args:
    avatar: the canonical avatar.
    body_model: the body model.
    poses: the F frames' parameters (``betas [B]``, ``body_pose [F, 23, 3]``, ...; select a
      minibatch with :meth:`hsjax.body.SMPLParams.select`).
    cameras: K [F, 3, 3], world_to_cam [F, 4, 4].
    settings: rendering settings.
    screen_offsets: optional [F, N, 2] (see :func:`render_frames`).

  Returns:
    :class:`ForwardOutput` with a leading F axis everywhere.
  """
  deformed = deform_frames(avatar, body_model, poses)
  render = render_frames(deformed.gaussians, cameras, settings, screen_offsets)
  return ForwardOutput(body=pose_frames(body_model, poses), deformed=deformed, render=render)
