"""Sides of the avatar the training camera never faced: find them and colour them.

A monocular video of a person who never turns away shows one side of the body. The avatar's
Gaussians on the other side get no photometric gradient, or only edge-on at the silhouette:
seen from behind, the avatar keeps their initial grey or colours smeared in from the edges.
Clothing is, to first order, the same colour front and back, so :func:`fill_unseen` gives
each unseen Gaussian the colour of the seen Gaussians at its mirror image through the coronal
plane of its body part. The fit does this once, some steps before its end
(``FitConfig.fill_unseen_at``), and goes on, so that what the camera did see is fitted again.

* :func:`training_coverage` measures, per Gaussian and summed over the training frames, its
  blending weight ``Σ_p α_i T_i`` (how much its colour shaped the training images) and its
  *frontal exposure*: the same without its own opacity, ``Σ_p G_i T_i``, times the cosine
  between the body's normal at its anchor and the direction to the camera (how well the
  camera could have seen it, whatever opacity the fit gave it). Both come from one backward
  pass a frame: the rendered image is linear in per-Gaussian grey levels.
* A Gaussian is *unseen* when its frontal exposure is below ``min_exposure`` pixels.
* In the canonical T-pose every bone lies in the coronal plane (the body faces +z), so the
  mirror image of a point on the back of a part is ``z' = 2 z_j - z``, ``z_j`` the rest-pose
  depth of the joint that skins it most.
* The unseen Gaussian takes, as its view-independent colour (SH band 0; the other bands are
  zeroed: nothing was seen to fit them), the inverse-distance weighted colour of the ``k`` seen
  Gaussians nearest that mirror image, each evaluated looking straight at the skin it sits on
  (view direction minus its anchor's canonical normal). One camera never separates band 0
  from the view-dependent bands, so band 0 alone would not be the colour the camera saw.
  Opacity, shape and position stay as fitted.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import forward
from hsjax.camera import Camera
from kernels.rasterize import sh as sh_lib

# Frontal exposure (pixels of a frame of REFERENCE_AREA pixels, summed over the training
# frames) below which a Gaussian is unseen; of 1, 4 and 16 the one that gave the held-out views
# of dev/jump-s6 the most (BENCHMARKS.md, "The anchor tether and the unseen sides"). The fit
# scales it with the area of its frames.
MIN_EXPOSURE = 16.0
REFERENCE_AREA = 256 * 256
NEIGHBOURS = 4  # seen Gaussians whose colours an unseen one takes (inverse-distance weights).


@dataclasses.dataclass(frozen=True)
class Coverage:
  """Per Gaussian, summed over the training frames (numpy [N] float32; 0 for inactive slots)."""

  weight: np.ndarray  # pixels' worth of blending weight α T.
  exposure: np.ndarray  # pixels' worth of footprint G T, times the facing cosine.


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


@functools.partial(jax.jit, static_argnames=("width", "height", "settings"))
def _frame_coverage(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                    pose: body_lib.SMPLParams, k: jax.Array, world_to_cam: jax.Array, *,
                    width: int, height: int, settings: forward.RenderSettings
                    ) -> tuple[jax.Array, jax.Array]:
  """([N] weight, [N] frontal exposure) of one frame (see :func:`training_coverage`)."""
  deformed = forward.deform_frame(avatar, body_model, pose).gaussians
  camera = Camera(K=k, world_to_cam=world_to_cam, width=width, height=height)
  grey_settings = dataclasses.replace(settings, background=(0.0,))

  def image_sum(grey):
    grey_gaussians = deformed.replace(colors=grey[:, None], sh=None)
    return jnp.sum(forward.render_frame(grey_gaussians, camera, grey_settings).rgb)

  # d(sum of the image)/d(grey_i) = Σ_p α_i(p) T_i(p).
  weight = jax.grad(image_sum)(jnp.zeros((deformed.num_gaussians,), jnp.float32))
  # α_i = o_i G_i: without the opacity, a Gaussian the fit made transparent in plain view
  # still counts as seen.
  footprint = weight / jnp.maximum(deformed.opacities, 1e-6)
  vertices = forward.pose_frames(body_model, pose).vertices
  normals = _unit(avatar_lib.interpolate_vertex_values(
      body_lib.vertex_normals(vertices, body_model.faces), body_model.faces, avatar.face_ids,
      avatar.barycentrics))
  facing = jnp.maximum(jnp.sum(normals * _unit(camera.center - deformed.means), -1), 0.0)
  return weight, footprint * facing


def training_coverage(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel,
                      poses: body_lib.SMPLParams, cameras: Camera, *, frames=None,
                      settings: forward.RenderSettings = forward.RenderSettings()
                      ) -> Coverage:
  """How much each Gaussian was seen in the training frames (see the module docstring).

  Args:
    avatar: the fitted avatar.
    body_model: the body model it was fitted with.
    poses: ``betas [B]``, ``body_pose [T, 23, 3]``, ``global_orient [T, 3]``, ``transl [T, 3]``.
    cameras: the training cameras, ``K [T, 3, 3]``, ``world_to_cam [T, 4, 4]`` (or one camera).
    frames: indices of the frames to count (default all T).
    settings: the renderer's backend, tile capacity and overlap (the background is ignored).
  """
  frames = (np.arange(np.shape(poses.body_pose)[0]) if frames is None
            else np.asarray(frames, np.int64))
  weight = np.zeros((avatar.num_gaussians,), np.float64)
  exposure = np.zeros((avatar.num_gaussians,), np.float64)
  for _, pose, k, w2c in forward.frames_on_host(poses, cameras, frames):
    w, e = _frame_coverage(avatar, body_model, pose, k, w2c, width=cameras.width,
                           height=cameras.height, settings=settings)
    weight += np.asarray(w)
    exposure += np.asarray(e)
  active = np.asarray(avatar.active)
  return Coverage(weight=(weight * active).astype(np.float32),
                  exposure=(exposure * active).astype(np.float32))


def unseen_gaussians(avatar: avatar_lib.Avatar, coverage: Coverage, *,
                     min_exposure: float = MIN_EXPOSURE) -> np.ndarray:
  """[N] bool: the active Gaussians whose frontal exposure is below ``min_exposure`` pixels."""
  active = np.asarray(avatar.active)
  for name in ("weight", "exposure"):
    found = np.shape(getattr(coverage, name))
    if found != active.shape:
      raise ValueError(f"coverage.{name}: expected shape {active.shape} (one value per "
                       f"Gaussian of the avatar), found {found}")
  return active & (coverage.exposure < min_exposure)


def coronal_mirror(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel) -> np.ndarray:
  """[N, 3] each Gaussian's canonical centre mirrored through its part's coronal plane
  ``z = z_j``, ``z_j`` the rest-pose depth of the joint with the largest skinning weight."""
  joints = np.asarray(body_lib.rest_joints_from_betas(
      body_model, jnp.zeros((body_model.shapedirs.shape[-1],), jnp.float32)))
  owner = np.argmax(np.asarray(avatar_lib.skinning_weights(avatar)), axis=-1)
  mirrored = np.array(avatar.means, np.float32)
  mirrored[:, 2] = 2.0 * joints[owner, 2] - mirrored[:, 2]
  return mirrored


def head_on_colours(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel) -> np.ndarray:
  """[N, C] each Gaussian's colour seen straight on: its SH evaluated for the view direction
  minus the canonical normal of the template surface at its anchor."""
  normals = _unit(avatar_lib.interpolate_vertex_values(
      body_lib.vertex_normals(body_model.v_template, body_model.faces), body_model.faces,
      avatar.face_ids, avatar.barycentrics))
  return np.asarray(sh_lib.eval_sh(avatar.sh_degree, avatar.sh, -normals))


def _nearest(queries: np.ndarray, sources: np.ndarray, k: int, chunk: int = 1024
             ) -> tuple[np.ndarray, np.ndarray]:
  """[Q, k] indices of the k sources nearest each query and their inverse-distance weights
  (rows sum to 1); brute force in chunks of queries (memory ``chunk`` x S)."""
  index, weight = [], []
  for start in range(0, len(queries), chunk):
    d2 = np.sum((queries[start:start + chunk, None, :] - sources[None, :, :]) ** 2, axis=-1)
    nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]
    w = 1.0 / np.maximum(np.sqrt(np.take_along_axis(d2, nearest, 1)), 1e-4)
    index.append(nearest)
    weight.append(w / w.sum(1, keepdims=True))
  return np.concatenate(index), np.concatenate(weight)


def fill_unseen(avatar: avatar_lib.Avatar, body_model: body_lib.BodyModel, unseen: np.ndarray,
                *, neighbours: int = NEIGHBOURS) -> avatar_lib.Avatar:
  """The avatar with each ``unseen`` Gaussian coloured like the seen ones at its mirror image.

  Args:
    avatar: the fitted avatar.
    body_model: the body model it was fitted with.
    unseen: [N] bool (:func:`unseen_gaussians`); the other active Gaussians are the sources.
    neighbours: seen Gaussians averaged per unseen one (inverse-distance weights).

  Returns:
    The avatar with SH band 0 replaced and the higher bands zeroed for the unseen Gaussians;
    unchanged when none is unseen or none is seen.
  """
  unseen = np.asarray(unseen, bool)
  seen = np.asarray(avatar.active) & ~unseen
  if not unseen.any() or not seen.any():
    return avatar
  nearest, w = _nearest(coronal_mirror(avatar, body_model)[unseen],
                        np.asarray(avatar.means)[seen], min(neighbours, int(seen.sum())))
  colour = np.einsum("uk,ukc->uc", w, head_on_colours(avatar, body_model)[seen][nearest])
  # eval_sh gives basis_0 * sh_0 + 0.5 when the other bands are zero.
  band0 = float(np.asarray(sh_lib.sh_basis(0, jnp.zeros((1, 3), jnp.float32)))[0, 0])
  sh = np.array(avatar.sh)
  sh[unseen] = 0.0
  sh[unseen, 0, :] = (colour - 0.5) / band0
  return avatar.replace(sh=jnp.asarray(sh, avatar.sh.dtype))
