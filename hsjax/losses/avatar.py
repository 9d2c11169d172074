"""Avatar regularisers (on ``params.avatar``, the full ``hsjax.avatar.Avatar``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hsjax import avatar as avatar_lib
from hsjax import nonrigid as nonrigid_lib
from hsjax.losses.base import Term
from hsjax.losses.base import active_mean


def make_scale_regularizer(max_scale: float = 0.02) -> Term:
  """Penalises Gaussians whose largest standard deviation exceeds ``max_scale`` metres.

  ``mean_active(max(s_max / max_scale − 1, 0)²)``: large Gaussians blur the silhouette and,
  skinned by one set of weights, smear across joints.
  """

  def scale_reg(render, frame, params, ctx) -> jax.Array:
    del render, frame, ctx
    avatar = params.avatar
    s_max = jnp.exp(jnp.max(avatar.log_scales, axis=-1))
    return active_mean(jax.nn.relu(s_max / max_scale - 1.0) ** 2, avatar.active)

  return scale_reg


scale_reg = make_scale_regularizer()


def make_anchor_tether(delta: float = 0.02) -> Term:
  """Band penalty ``mean_active(max(|μ − a| − δ, 0))`` on each Gaussian's canonical distance
  from its anchor ``a`` on the template surface (face and barycentric coordinates).

  The CAMEL point-to-mesh band measures the distance along the surface normal only, so a
  Gaussian may slide along the skin at no cost; sliding far from its anchor lets the avatar
  bake a constant pose error into its canonical shape (a torso that leans in every frame is
  drawn upright by Gaussians that slid sideways), which the poses then never correct.
  """

  def anchor_tether(render, frame, params, ctx) -> jax.Array:
    del render, frame
    avatar = params.avatar
    model = ctx.body_model
    anchors = avatar_lib.interpolate_vertex_values(model.v_template, model.faces,
                                                   avatar.face_ids, avatar.barycentrics)
    # The epsilon keeps the gradient finite at the anchor itself (where every Gaussian starts).
    distance = jnp.sqrt(jnp.sum(jnp.square(avatar.means - anchors), axis=-1) + 1e-12)
    return active_mean(jax.nn.relu(distance - delta), avatar.active)

  return anchor_tether


anchor_tether = make_anchor_tether()


def opacity_reg(render, frame, params, ctx) -> jax.Array:
  """``mean_active(o (1 − o))``: pushes opacities to 0 or 1.

  Half-transparent Gaussians at the border can fake a soft silhouette that no pose explains;
  binary opacities make the mask term a statement about geometry.
  """
  del render, frame, ctx
  o = jax.nn.sigmoid(params.avatar.opacity_logits)
  return active_mean(o * (1.0 - o), params.avatar.active)


def skinning_drift(render, frame, params, ctx) -> jax.Array:
  """Mean squared drift of learned skinning weights from SMPL's (0 when skinning is fixed)."""
  del render, frame, ctx
  return avatar_lib.skinning_drift(params.avatar)


def nonrigid_reg(render, frame, params, ctx) -> jax.Array:
  """Squared non-rigid offsets of the minibatch's frames (0 without a non-rigid model)."""
  del render, frame
  avatar = params.avatar
  offsets = ctx.deformed.nonrigid_offsets
  if avatar.nonrigid is None or offsets is None:
    return jnp.zeros((), jnp.float32)
  per_frame = jax.vmap(nonrigid_lib.regularizer, in_axes=(0, None, None))(
      offsets, avatar.active, avatar.nonrigid_config)
  return jnp.mean(per_frame)
