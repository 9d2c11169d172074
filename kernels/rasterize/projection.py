"""EWA projection of 3D Gaussians to screen space (gsplat 1.5.3 semantics).

Follows gsplat's ``fully_fused_projection`` (pinhole): world -> camera with ``world_to_cam``,
the EWA Jacobian of the perspective map (Zwicker et al. 2002, eq. 29) evaluated at a
guard-banded position, a low-pass ``eps2d`` added to the 2D covariance, the conic as its
inverse, and a per-axis screen box of ``ceil(extend * sqrt(cov2d_ii))`` pixels.

Warning: where gsplat and the original 3DGS rasteriser differ we follow gsplat: pixel centres
at +0.5, near plane ``near`` (default 0.01 m, 3DGS hard-codes 0.2), a per-axis 3.33 sigma box
instead of 3DGS' square 3 sigma box. 3.33 sigma is what keeps tile culling exact: a Gaussian is
skipped where ``alpha < 1/255``, i.e. beyond ``sqrt(2 ln 255) = 3.329`` sigma, so a 3 sigma box
would drop visible contributions. With ``tight_radius`` the box shrinks to the opacity-aware
``sqrt(2 ln(255 o))`` sigma (gsplat's CUDA kernel does the same), which is also exact.

Everything here is differentiable by plain autodiff (it is elementwise over Gaussians);
culled Gaussians get finite (zero) gradients thanks to safe denominators.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from kernels.rasterize import common

# gsplat's box extent in standard deviations (>= sqrt(2 ln 255) = 3.3290).
RADIUS_SIGMAS = 3.33


@flax.struct.dataclass(kw_only=True)
class Projected:
  """Screen-space Gaussians of one camera."""

  means2d: jax.Array  # [N, 2] projected centres, pixels (pixel centres at +0.5).
  conics: jax.Array  # [N, 3] (a, b, c) of the inverse 2D covariance, 1/pixels^2.
  depths: jax.Array  # [N] camera-space z of the centres, metres.
  radii: jax.Array  # [N] int32 max of the per-axis box half-widths, pixels; 0 = culled.
  radii_xy: jax.Array  # [N, 2] int32 per-axis box half-widths (x, y), pixels; 0 = culled.
  opacities: jax.Array  # [N] opacities (times the antialiasing compensation if enabled).
  cov2d: jax.Array  # [N, 3] (xx, xy, yy) of the 2D covariance incl. eps2d, pixels^2.


def quat_to_rotmat(quats: jax.Array) -> jax.Array:
  """[N, 3, 3] rotation matrices from [N, 4] (w, x, y, z) quaternions (normalised here).

  A zero quaternion maps to the identity (finite gradients) instead of NaN.
  """
  norm2 = jnp.sum(quats * quats, axis=-1, keepdims=True)
  safe = jnp.where(norm2 > 0, norm2, 1.0)
  q = quats * jax.lax.rsqrt(safe)
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  rows = [
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ]
  return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def covariance_3d(quats: jax.Array, scales: jax.Array) -> jax.Array:
  """[N, 3, 3] world covariances ``R diag(s^2) R^T`` from quats [N, 4] and scales [N, 3]."""
  m = quat_to_rotmat(quats) * scales[..., None, :]
  return m @ jnp.swapaxes(m, -1, -2)


def project(means, quats, scales, opacities, K, world_to_cam, *, width: int, height: int,
            near: float = 0.01, far: float = 1e10, eps2d: float = 0.3,
            antialiased: bool = False, tight_radius: bool = True) -> Projected:
  """Projects N 3D Gaussians with a pinhole camera.

  Args:
    means: [N, 3] centres, metres, world frame.
    quats: [N, 4] rotations (w, x, y, z), need not be normalised.
    scales: [N, 3] standard deviations along the rotated axes, metres (linear, not log).
    opacities: [N] in [0, 1].
    K: [3, 3] intrinsics, pixels (skew K[0, 1] is honoured as in gsplat).
    world_to_cam: [4, 4] OpenCV extrinsics.
    width, height: image size, pixels (static).
    near, far: depth range kept, metres (strict inequalities, as gsplat).
    eps2d: low-pass added to the 2D covariance diagonal, pixels^2 (3DGS: 0.3).
    antialiased: multiply opacities by ``sqrt(det(cov2d) / det(cov2d + eps2d I))``
      (gsplat ``rasterize_mode="antialiased"``, Mip-Splatting).
    tight_radius: opacity-aware box ``min(3.33, sqrt(2 ln(255 o)))`` sigma and culling of
      ``o < 1/255`` (gsplat CUDA); False gives gsplat's torch reference (plain 3.33 sigma).

  Returns:
    :class:`Projected`; culled Gaussians (behind ``near``, beyond ``far``, box fully off
    screen, or too transparent with ``tight_radius``) have ``radii == 0``.
  """
  dtype = means.dtype
  rot = world_to_cam[:3, :3]
  means_c = means @ rot.T + world_to_cam[:3, 3]
  cov_c = rot @ covariance_3d(quats, scales) @ rot.T
  tx, ty, tz = means_c[:, 0], means_c[:, 1], means_c[:, 2]
  in_depth = (tz > near) & (tz < far)
  # Culled Gaussians divide by 1 instead of z (possibly 0): finite values and gradients.
  z = jnp.where(in_depth, tz, 1.0)

  fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
  tan_fovx = 0.5 * width / fx
  tan_fovy = 0.5 * height / fy
  # Guard band: the Jacobian is evaluated no further than 30% of the half field of view
  # outside the image, so Gaussians far off to the side do not blow up (gsplat _persp_proj).
  u = jnp.clip(tx / z, -(cx / fx + 0.3 * tan_fovx), (width - cx) / fx + 0.3 * tan_fovx)
  v = jnp.clip(ty / z, -(cy / fy + 0.3 * tan_fovy), (height - cy) / fy + 0.3 * tan_fovy)
  zeros = jnp.zeros_like(z)
  jac = jnp.stack([
      jnp.stack([fx / z, zeros, -fx * u / z], axis=-1),
      jnp.stack([zeros, fy / z, -fy * v / z], axis=-1),
  ], axis=-2)  # [N, 2, 3]
  cov = jac @ cov_c @ jnp.swapaxes(jac, -1, -2)  # [N, 2, 2]
  means2d = (means_c @ K[:2, :].T) / z[:, None]

  c00, c01, c11 = cov[:, 0, 0], 0.5 * (cov[:, 0, 1] + cov[:, 1, 0]), cov[:, 1, 1]
  det_orig = c00 * c11 - c01 * c01
  c00 = c00 + eps2d
  c11 = c11 + eps2d
  det = jnp.maximum(c00 * c11 - c01 * c01, 1e-10)
  conics = jnp.stack([c11 / det, -c01 / det, c00 / det], axis=-1)

  if antialiased:
    ratio = det_orig / det
    # sqrt has an infinite slope at 0 (zero-size Gaussians): return 0 with a zero gradient.
    pos = ratio > 1e-12
    compensation = jnp.where(pos, jnp.sqrt(jnp.where(pos, ratio, 1.0)), 0.0)
    opacities = opacities * compensation

  # The box and culling carry no gradient (integers); computed on stopped values.
  s00, s11, o = (jax.lax.stop_gradient(x) for x in (c00, c11, opacities))
  mx, my = (jax.lax.stop_gradient(means2d[:, i]) for i in range(2))
  keep = in_depth
  if tight_radius:
    opaque_enough = o >= common.ALPHA_MIN
    extend = jnp.sqrt(2.0 * jnp.log(jnp.where(opaque_enough, o, 1.0) / common.ALPHA_MIN))
    extend = jnp.minimum(RADIUS_SIGMAS, extend)
    keep &= opaque_enough
  else:
    extend = jnp.asarray(RADIUS_SIGMAS, dtype)
  rx = jnp.ceil(extend * jnp.sqrt(s00))
  ry = jnp.ceil(extend * jnp.sqrt(s11))
  keep &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
  keep &= jnp.isfinite(mx) & jnp.isfinite(my) & (rx < 1e7) & (ry < 1e7)
  radii_xy = jnp.where(keep[:, None], jnp.stack([rx, ry], axis=-1), 0.0).astype(jnp.int32)

  return Projected(
      means2d=means2d,
      conics=conics,
      depths=tz,
      radii=jnp.max(radii_xy, axis=-1),
      radii_xy=radii_xy,
      opacities=opacities,
      cov2d=jnp.stack([c00, c01, c11], axis=-1),
  )
