"""Tests of the pose-conditioned non-rigid offsets (hsjax.nonrigid) inside hsjax.avatar.deform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import nonrigid as nonrigid_lib
from test_avatar import random_pose  # pylint: disable=g-import-not-at-top
from test_avatar import uv_sphere_body  # pylint: disable=g-import-not-at-top

CONFIG = nonrigid_lib.NonRigidConfig(width=16, depth=2, num_freqs=2, latent_dim=3)


@pytest.fixture(scope="module")
def model():
  return uv_sphere_body()


@pytest.fixture(scope="module")
def avatar(model):
  return avatar_lib.init_avatar(jax.random.key(0), model, 200, nonrigid=True,
                                nonrigid_config=CONFIG)


def perturbed(avatar, scale=0.05):
  """The avatar with a random (non-zero) last layer."""
  mlp = dict(avatar.nonrigid["mlp"])
  out = dict(mlp["out"])
  out["kernel"] = scale * jax.random.normal(jax.random.key(1), out["kernel"].shape)
  mlp["out"] = out
  return avatar.replace(nonrigid={**avatar.nonrigid, "mlp": mlp})


def test_fresh_model_is_exactly_lbs(model, avatar):
  pose = random_pose(0)
  with_mlp = avatar_lib.deform_with_aux(avatar, model, *pose)
  without = avatar_lib.deform(avatar.replace(nonrigid=None, nonrigid_config=None), model, *pose)
  for name in ("means", "quats", "scales", "opacities", "sh"):
    np.testing.assert_array_equal(getattr(with_mlp.gaussians, name), getattr(without, name))
  assert float(nonrigid_lib.regularizer(with_mlp.nonrigid_offsets, avatar.active, CONFIG)) == 0


def test_offsets_depend_on_body_pose_not_global_orientation(model, avatar):
  av = perturbed(avatar)
  betas, pose, orient, transl = random_pose(1)
  base = avatar_lib.deform_with_aux(av, model, betas, pose, orient, transl).nonrigid_offsets
  turned = avatar_lib.deform_with_aux(av, model, betas, pose, -orient, transl).nonrigid_offsets
  other = avatar_lib.deform_with_aux(av, model, betas, 0.5 * pose, orient,
                                     transl).nonrigid_offsets
  np.testing.assert_allclose(base.means, turned.means, atol=1e-7)
  assert np.max(np.abs(base.means - other.means)) > 1e-4
  assert float(nonrigid_lib.regularizer(base, av.active, CONFIG)) > 0
  # The offsets act in canonical space before skinning.
  plain = avatar_lib.deform_with_aux(av.replace(nonrigid=None, nonrigid_config=None), model,
                                     betas, pose, orient, transl)
  deformed = avatar_lib.deform_with_aux(av, model, betas, pose, orient, transl)
  np.testing.assert_allclose(deformed.canonical_means - plain.canonical_means, base.means,
                             atol=1e-6)
  np.testing.assert_allclose(jnp.log(deformed.gaussians.scales)
                             - jnp.log(plain.gaussians.scales), base.log_scales, atol=1e-5)


def test_gradients_reach_mlp_and_pose(model, avatar):
  params, buffers = avatar_lib.split(avatar)
  betas, pose, orient, transl = random_pose(2)
  target = jax.random.normal(jax.random.key(3), (avatar.num_gaussians, 3))

  @jax.jit
  def loss(params, pose):
    out = avatar_lib.deform_with_aux(avatar_lib.combine(params, buffers), model, betas, pose,
                                     orient, transl)
    reg = nonrigid_lib.regularizer(out.nonrigid_offsets, buffers.active, CONFIG)
    return jnp.sum((out.gaussians.means - target) ** 2) + reg

  grads, pose_grad = jax.grad(loss, argnums=(0, 1))(params, pose)
  last = grads.nonrigid["mlp"]["out"]["kernel"]
  assert np.all(np.isfinite(last)) and np.any(np.abs(last) > 0)
  assert np.all(np.isfinite(pose_grad)) and np.any(pose_grad != 0)
  # Gradient of a zero-initialised last layer: nothing reaches the earlier layers yet.
  assert np.all(np.asarray(grads.nonrigid["mlp"]["hidden_0"]["kernel"]) == 0)


def test_vmap_over_frames(model, avatar):
  av = perturbed(avatar)
  poses = [random_pose(s) for s in range(2)]
  stacked = [jnp.stack(x) for x in zip(*poses)]
  batched = jax.vmap(avatar_lib.deform, in_axes=(None, None, 0, 0, 0, 0))(av, model, *stacked)
  for t, pose in enumerate(poses):
    np.testing.assert_allclose(batched.means[t], avatar_lib.deform(av, model, *pose).means,
                               atol=1e-5)


def test_config_errors(model):
  with pytest.raises(ValueError, match="nonrigid_config given"):
    avatar_lib.init_avatar(jax.random.key(0), model, 16, nonrigid_config=CONFIG)
  with pytest.raises(ValueError, match="depth and width"):
    nonrigid_lib.init_params(jax.random.key(0), nonrigid_lib.NonRigidConfig(depth=0), 4)
