"""CAMEL terms (``hsjax.camel``): hold the Gaussians loosely to the body mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import camel
from hsjax.losses.base import Term


def camel_nearest_vertices(params, ctx) -> jax.Array:
  """[N] int32 each Gaussian's reference vertex for the CAMEL terms.

  ``ctx.camel_nearest`` when the fit provides it (the nearest template vertex of each
  canonical centre, searched every ``FitConfig.camel_refresh_every`` steps), else the anchor
  vertex the Gaussian is skinned with (``hsjax.avatar.anchor_vertex_ids``).
  """
  cached = ctx.camel_nearest
  if cached is not None:
    return cached
  return avatar_lib.anchor_vertex_ids(params.avatar, ctx.body_model)


def _camel_geometry(params, ctx, space: str):
  """The Gaussians and the mesh the CAMEL terms compare, with a leading frame axis.

  ``space="canonical"``: the canonical avatar against the template mesh (one "frame"; the
  terms do not depend on the pose and cost no per-frame work). ``space="posed"``: the
  minibatch's deformed Gaussians against the posed body meshes of the body forward pass
  (gradients reach the pose through both).

  Returns:
    ``(means [F, N, 3], quats [F, N, 4], scales [F, N, 3], vertices [F, V, 3],
    normals [F, V, 3])``.
  """
  model = ctx.body_model
  if space == "canonical":
    avatar = params.avatar
    vertices = model.v_template[None]
    return (avatar.means[None], avatar.quats[None], jnp.exp(avatar.log_scales)[None], vertices,
            body_lib.vertex_normals(vertices, model.faces))
  if space == "posed":
    gaussians, vertices = ctx.gaussians, ctx.body.vertices
    return (gaussians.means, gaussians.quats, gaussians.scales, vertices,
            body_lib.vertex_normals(vertices, model.faces))
  raise ValueError(f"CAMEL space must be 'canonical' or 'posed', found {space!r}")


def make_camel_point_to_mesh(delta: float = 0.01, space: str = "canonical") -> Term:
  """CAMEL point-to-mesh band (``hsjax.camel.point_to_mesh``), frame mean.

  ``space`` as :func:`_camel_geometry`. In the canonical space the band is measured once per
  step against the template; under LBS the signed distance of a Gaussian skinned like its
  reference vertex is nearly pose-independent, so both spaces hold the avatar to the body.
  """

  def camel_point_to_mesh(render, frame, params, ctx) -> jax.Array:
    del render, frame
    means, _, _, vertices, normals = _camel_geometry(params, ctx, space)
    nearest = camel_nearest_vertices(params, ctx)
    per_frame = jax.vmap(lambda m, v, n: camel.point_to_mesh(
        m, v, n, nearest, delta=delta, weights=params.avatar.active))(means, vertices, normals)
    return jnp.mean(per_frame)

  return camel_point_to_mesh


def make_camel_surface(space: str = "canonical") -> Term:
  """CAMEL mesh-surface alignment of each Gaussian's thinnest axis, frame mean."""

  def camel_surface(render, frame, params, ctx) -> jax.Array:
    del render, frame
    _, quats, scales, _, normals = _camel_geometry(params, ctx, space)
    nearest = camel_nearest_vertices(params, ctx)
    per_frame = jax.vmap(lambda q, s, n: camel.mesh_surface(
        q, s, n, nearest, weights=params.avatar.active))(quats, scales, normals)
    return jnp.mean(per_frame)

  return camel_surface


camel_surface = make_camel_surface()


def make_camel_flatness(target_ratio: float = 3.0) -> Term:
  """CAMEL flatness: Gaussians at least ``target_ratio`` times wider than thick.

  Scales are pose-independent (LBS rotates Gaussians, it does not stretch them), so there is
  no posed variant.
  """

  def camel_flatness(render, frame, params, ctx) -> jax.Array:
    del render, frame, ctx
    avatar = params.avatar
    return camel.flatness(jnp.exp(avatar.log_scales), target_ratio=target_ratio,
                          weights=avatar.active)

  return camel_flatness


def make_camel_coverage(delta: float = 0.01) -> Term:
  """CAMEL coverage: every template vertex has an active Gaussian within ``delta`` metres.

  Canonical space. Warning: a brute-force V x N nearest search each step (about 70 ms at
  V = 13,380, N = 2,000 on the 2-core CPU; BENCHMARKS.md): off by default (weight 0).
  """

  def camel_coverage(render, frame, params, ctx) -> jax.Array:
    del render, frame
    avatar = params.avatar
    return camel.mesh_coverage(avatar.means, ctx.body_model.v_template, delta=delta,
                               means_valid=avatar.active)

  return camel_coverage
