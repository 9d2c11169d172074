"""Pose-dependent non-rigid offsets of the avatar's Gaussians (clothing, soft tissue).

A small MLP maps (body pose, where the Gaussian is) to residual offsets of each Gaussian's
canonical mean, rotation (axis-angle, applied before skinning) and log-scales. The pose enters
as SMPL's pose-corrective feature (``R_j − I`` of joints 1..23, 207 numbers; the global
orientation is excluded so the offsets do not depend on where the body faces); the Gaussian
enters as a sinusoidal encoding of its canonical mean (NeRF-style, with the mean's gradient
stopped so the conditioning does not drag the Gaussian) and, optionally, a learned
per-Gaussian latent code. The last layer is zero-initialised, so a fresh model adds exactly
nothing and fitting starts from pure LBS.

The first layer is split into a pose part (computed once per frame) and a per-Gaussian part,
which is the same as concatenating the inputs but costs ``O(width)`` instead of
``O(N · 207 · width)`` for the pose.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from hsjax import body as body_lib


@dataclasses.dataclass(frozen=True)
class NonRigidConfig:
  """Static configuration of the non-rigid MLP (hashable: a static field of the Avatar)."""

  width: int = 64  # hidden units per layer.
  depth: int = 2  # hidden layers (>= 1).
  num_freqs: int = 4  # sinusoidal frequencies 2^0..2^(k-1) (cycles per metre × π).
  latent_dim: int = 0  # per-Gaussian latent code size (0: none).
  # Regulariser weights on the squared offsets: means (m²), rotations (rad²), log-scales.
  weight_means: float = 1.0
  weight_rotations: float = 0.1
  weight_log_scales: float = 0.01


@flax.struct.dataclass(kw_only=True)
class NonRigidOffsets:
  """Residuals for one frame (canonical space, added before skinning)."""

  means: jax.Array  # [N, 3] metres.
  rotations: jax.Array  # [N, 3] axis-angle, radians (left-multiplies the canonical rotation).
  log_scales: jax.Array  # [N, 3] added to log-scales.


class NonRigidMLP(nn.Module):
  """(pose feature [207], Gaussian feature [N, D]) -> [N, 9] offsets (zero at init)."""

  config: NonRigidConfig

  @nn.compact
  def __call__(self, pose_feature: jax.Array, gaussian_feature: jax.Array) -> jax.Array:
    cfg = self.config
    h = (nn.Dense(cfg.width, name="gaussian_in")(gaussian_feature)
         + nn.Dense(cfg.width, use_bias=False, name="pose_in")(pose_feature))
    h = nn.relu(h)
    for i in range(cfg.depth - 1):
      h = nn.relu(nn.Dense(cfg.width, name=f"hidden_{i}")(h))
    # Zero last layer: the untrained model is the identity deformation.
    return nn.Dense(9, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros,
                    name="out")(h)


def positional_encoding(x: jax.Array, num_freqs: int) -> jax.Array:
  """[..., 3] -> [..., 3 + 6 num_freqs]: ``x, sin(2^k π x), cos(2^k π x)``."""
  freqs = jnp.pi * 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
  angles = (x[..., None, :] * freqs[:, None]).reshape(*x.shape[:-1], 3 * num_freqs)
  return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], -1)


def _feature_dim(config: NonRigidConfig) -> int:
  return 3 + 6 * config.num_freqs + config.latent_dim


def init_params(key: jax.Array, config: NonRigidConfig, num_gaussians: int) -> dict:
  """Parameters ``{"mlp": flax params, "latent": [N, latent_dim]}`` (latent only if > 0).

  The latent codes start at small random values (σ = 0.01) so Gaussians can separate, while
  the zero last layer still makes the initial offsets exactly zero.
  """
  if config.depth < 1 or config.width < 1:
    raise ValueError(f"NonRigidConfig: depth and width must be >= 1, found {config}")
  key_mlp, key_latent = jax.random.split(key)
  module = NonRigidMLP(config)
  params = {"mlp": module.init(key_mlp, jnp.zeros((body_lib.NUM_POSE_FEATURES,)),
                               jnp.zeros((1, _feature_dim(config))))["params"]}
  if config.latent_dim > 0:
    params["latent"] = 0.01 * jax.random.normal(key_latent, (num_gaussians, config.latent_dim))
  return params


def offsets(avatar, rotmats: jax.Array) -> NonRigidOffsets:
  """The non-rigid residuals of ``avatar`` for one frame.

  Args:
    avatar: an :class:`hsjax.avatar.Avatar` with ``nonrigid`` parameters and config.
    rotmats: [24, 3, 3] local joint rotations of the frame.

  Returns:
    :class:`NonRigidOffsets` of the N Gaussians.
  """
  config = avatar.nonrigid_config
  if config is None:
    raise ValueError("nonrigid.offsets: the avatar has nonrigid parameters but no "
                     "nonrigid_config")
  pose_feature = body_lib.pose_features(rotmats)  # [207]
  feature = positional_encoding(jax.lax.stop_gradient(avatar.means), config.num_freqs)
  if config.latent_dim > 0:
    feature = jnp.concatenate([feature, avatar.nonrigid["latent"]], -1)
  out = NonRigidMLP(config).apply({"params": avatar.nonrigid["mlp"]}, pose_feature, feature)
  return NonRigidOffsets(means=out[:, 0:3], rotations=out[:, 3:6], log_scales=out[:, 6:9])


def regularizer(offsets_: NonRigidOffsets, active: jax.Array, config: NonRigidConfig
                ) -> jax.Array:
  """Scalar: weighted mean (over active Gaussians) of squared offsets; 0 for a fresh model.

  Keeps the MLP a *residual*: LBS explains what it can, the MLP only what LBS cannot.
  """
  per = (config.weight_means * jnp.sum(offsets_.means ** 2, -1)
         + config.weight_rotations * jnp.sum(offsets_.rotations ** 2, -1)
         + config.weight_log_scales * jnp.sum(offsets_.log_scales ** 2, -1))
  mask = active.astype(per.dtype)
  return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)
