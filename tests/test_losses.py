"""Tests of hsjax.losses: each term against a direct computation or a peer (scikit-image)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from skimage.metrics import structural_similarity

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import losses
from hsjax.body import SMPLParams

SSIM_TOL = 1e-5


def _render(rgb=None, alpha=None, depth=None):
  return types.SimpleNamespace(rgb=rgb, alpha=alpha, depth=depth)


def _frame(image=None, mask=None, depth=None, depth_weight=1.0, metric=1.0):
  return losses.Frame(image=image, mask=mask, depth=depth, depth_K=None,
                      depth_weight=jnp.float32(depth_weight),
                      depth_is_metric=jnp.float32(metric), index=None)


def _ctx(**fields):
  """The parts of a step context a term reads (the terms only read attributes)."""
  fields.setdefault("camel_nearest", None)
  return types.SimpleNamespace(**fields)


def test_dssim_matches_skimage():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(2, 32, 40, 3)).astype(np.float32)
  b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1).astype(np.float32)
  got = float(losses.dssim(_render(rgb=jnp.asarray(a)), _frame(image=jnp.asarray(b)), None, _ctx()))
  ref = [structural_similarity(a[i], b[i], channel_axis=-1, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False, data_range=1.0) for i in range(2)]
  assert abs(got - (1.0 - np.mean(ref))) < SSIM_TOL


def test_rgb_and_mask_l1():
  rng = np.random.default_rng(1)
  rgb, img = rng.uniform(size=(2, 2, 8, 8, 3)).astype(np.float32)
  alpha, mask = rng.uniform(size=(2, 2, 8, 8)).astype(np.float32)
  r = _render(rgb=jnp.asarray(rgb), alpha=jnp.asarray(alpha))
  f = _frame(image=jnp.asarray(img), mask=jnp.asarray(mask))
  np.testing.assert_allclose(losses.rgb_l1(r, f, None, _ctx()), np.abs(rgb - img).mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.mask_l1(r, f, None, _ctx()), np.abs(alpha - mask).mean(),
                             rtol=1e-6)


def _depth_case(seed=2):
  rng = np.random.default_rng(seed)
  target = rng.uniform(2.0, 3.0, size=(2, 16, 16)).astype(np.float32)
  mask = (rng.uniform(size=(2, 16, 16)) > 0.3).astype(np.float32)
  target = target * (rng.uniform(size=target.shape) > 0.1)  # some invalid (0) pixels
  alpha = np.ones_like(mask)
  return target, mask, alpha


def test_depth_l1_is_masked_mean():
  target, mask, alpha = _depth_case()
  pred = target + 0.1
  pred[:, :2] = 100.0  # outside the mask nothing counts
  mask[:, :2] = 0.0
  r = _render(alpha=jnp.asarray(alpha), depth=jnp.asarray(pred))
  got = losses.depth_l1(r, _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target)), None, _ctx())
  w = (mask > 0.5) & (target > 0)
  np.testing.assert_allclose(got, np.abs(pred - target)[w].mean(), rtol=1e-5)
  # no depth, or relative depth: the metric term vanishes
  for kw in ({"depth_weight": 0.0}, {"metric": 0.0}):
    f = _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target), **kw)
    assert float(losses.depth_l1(r, f, None, _ctx())) == 0.0


def test_align_scale_shift_recovers_affine_map():
  rng = np.random.default_rng(3)
  pred = rng.uniform(1, 4, size=(8, 8)).astype(np.float32)
  target = 0.5 * pred + 1.25
  scale, shift = losses.align_scale_shift(jnp.asarray(pred), jnp.asarray(target),
                                          jnp.ones((8, 8)))
  np.testing.assert_allclose([scale, shift], [0.5, 1.25], rtol=1e-4)
  # A singular system (constant prediction) falls back to the identity.
  scale, shift = losses.align_scale_shift(jnp.ones((8, 8)), jnp.asarray(target),
                                          jnp.ones((8, 8)))
  assert (float(scale), float(shift)) == (1.0, 0.0)


def test_depth_ssi_is_affine_invariant_but_not_shape_invariant():
  target, mask, alpha = _depth_case(4)
  f = _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target), metric=0.0)
  r_affine = _render(alpha=jnp.asarray(alpha), depth=jnp.asarray(0.3 * target + 0.7))
  assert float(losses.depth_ssi(r_affine, f, None, _ctx())) < 1e-4
  rng = np.random.default_rng(5)
  r_bad = _render(alpha=jnp.asarray(alpha),
                  depth=jnp.asarray(target + rng.normal(0, 0.2, size=target.shape)))
  assert float(losses.depth_ssi(r_bad, f, None, _ctx())) > 0.05
  grad = jax.grad(lambda d: losses.depth_ssi(_render(alpha=jnp.asarray(alpha), depth=d), f,
                                             None, _ctx()))(jnp.asarray(target))
  assert np.all(np.isfinite(grad))


def test_depth_offset_is_the_median_residual_over_the_person():
  target, mask, alpha = _depth_case(6)
  pred = target + 0.25
  pred[:, :3] += 5.0  # a few outliers move a mean, not the median
  r = _render(alpha=jnp.asarray(alpha), depth=jnp.asarray(pred))
  f = _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target))
  w = (mask > 0.5) & (target > 0)
  expected = [np.sort((pred - target)[i][w[i]])[(w[i].sum() - 1) // 2] for i in range(2)]
  np.testing.assert_allclose(losses.depth_offset(r, f), expected, rtol=1e-6)


def test_depth_relative_l1_ignores_the_distance_but_not_the_shape():
  target, mask, alpha = _depth_case(7)
  f = _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target))

  def term(depth):
    return losses.depth_relative_l1(_render(alpha=jnp.asarray(alpha), depth=depth), f, None,
                                    _ctx())

  assert float(term(jnp.asarray(target + 0.4))) < 1e-6
  bent = target.copy()
  bent[:, 8:] += 0.1  # half of the body 10 cm further than the other half
  assert float(term(jnp.asarray(bent))) > 0.04
  # Moving the whole body along the camera axis changes nothing, to first order too.
  shift_grad = jax.grad(lambda c: term(jnp.asarray(bent) + c))(0.0)
  assert abs(float(shift_grad)) < 1e-6
  assert float(losses.depth_relative_l1(
      _render(alpha=jnp.asarray(alpha), depth=jnp.asarray(bent)),
      _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target), metric=0.0), None,
      _ctx())) == 0.0


def test_depth_root_moves_only_the_root_along_the_camera_axis():
  target, mask, alpha = _depth_case(8)
  f = _frame(mask=jnp.asarray(mask), depth=jnp.asarray(target))
  f = f.replace(index=jnp.array([0, 2]))
  offsets = np.array([0.3, -0.2], np.float32)
  rotation = Rotation.from_rotvec([[0.0, 0.4, 0.0], [0.1, 0.0, 0.0]]).as_matrix()
  world_to_cam = np.tile(np.eye(4, dtype=np.float32), (2, 1, 1))
  world_to_cam[:, :3, :3] = rotation
  ctx = _ctx(camera=types.SimpleNamespace(world_to_cam=jnp.asarray(world_to_cam)))
  pose = _poses(t=3)

  def term(poses):
    depth = jnp.asarray(target) + jnp.asarray(offsets)[:, None, None]
    render = _render(alpha=jnp.asarray(alpha), depth=depth)
    return losses.depth_root(render, f, types.SimpleNamespace(poses=poses), ctx)

  np.testing.assert_allclose(term(pose), np.abs(offsets).mean(), rtol=1e-5)
  grad = jax.grad(term)(pose)
  for field in ("body_pose", "global_orient", "betas"):
    assert not np.any(np.asarray(getattr(grad, field)))
  # frame 1 of the sequence is not in the minibatch; frames 0 and 2 move along their
  # camera's z axis, away from the observation (offset > 0: the render lies behind it).
  g = np.asarray(grad.transl)
  assert not np.any(g[1])
  np.testing.assert_allclose(g[[0, 2]], 0.5 * np.sign(offsets)[:, None] * rotation[:, 2],
                             atol=1e-6)


def _poses(t=6, seed=0, scale=0.1):
  rng = np.random.default_rng(seed)
  return SMPLParams(betas=jnp.zeros(10),
                    body_pose=jnp.asarray(scale * rng.normal(size=(t, 23, 3)), jnp.float32),
                    global_orient=jnp.asarray(scale * rng.normal(size=(t, 3)), jnp.float32),
                    transl=jnp.asarray(rng.normal(size=(t, 3)), jnp.float32))


def test_pose_prior_weighted_distance():
  init, poses = _poses(seed=0), _poses(seed=1)
  weights = np.arange(24, dtype=np.float32) / 10.0
  term = losses.make_pose_prior(weights)
  params = types.SimpleNamespace(poses=poses)
  valid = jnp.asarray([True] * 5 + [False])
  got = term(None, None, params, _ctx(init=init, frame_valid=valid))
  full = np.concatenate([np.asarray(poses.global_orient)[:, None], poses.body_pose], 1)
  full0 = np.concatenate([np.asarray(init.global_orient)[:, None], init.body_pose], 1)
  expect = (np.sum((full - full0) ** 2, -1) * weights)[:5].mean()
  np.testing.assert_allclose(got, expect, rtol=1e-5)
  with pytest.raises(ValueError, match="24 entries"):
    losses.make_pose_prior((1.0,) * 23)


def test_betas_priors_pull_towards_hmr_and_towards_the_mean_body():
  betas = jnp.asarray(np.linspace(-1.0, 1.0, 10), jnp.float32)
  init = _poses().replace(betas=jnp.full(10, 0.5, jnp.float32))
  params = types.SimpleNamespace(poses=init.replace(betas=betas))
  ctx = _ctx(init=init)
  np.testing.assert_allclose(losses.betas_prior(None, None, params, ctx),
                             np.mean((np.linspace(-1.0, 1.0, 10) - 0.5) ** 2), rtol=1e-6)
  np.testing.assert_allclose(losses.betas_population_prior(None, None, params, ctx),
                             np.mean(np.linspace(-1.0, 1.0, 10) ** 2), rtol=1e-6)


def test_smoothness_zero_for_constant_velocity_and_masks_padding():
  t = 8
  transl = np.zeros((t, 3), np.float32)
  transl[:, 0] = 0.1 * np.arange(t)  # constant velocity
  poses = _poses(t).replace(transl=jnp.asarray(transl))
  params = types.SimpleNamespace(poses=poses)
  valid = jnp.ones(t, bool)
  ctx = _ctx(frame_valid=valid)
  acc = losses.make_smoothness(2, "transl")
  vel = losses.make_smoothness(1, "transl")
  assert float(acc(None, None, params, ctx)) < 1e-10
  np.testing.assert_allclose(vel(None, None, params, ctx), 0.01, rtol=1e-5)
  # A jump in padding frames is ignored; the same jump in valid frames is not.
  transl[-1, 0] = 50.0
  params = types.SimpleNamespace(poses=poses.replace(transl=jnp.asarray(transl)))
  assert float(acc(None, None, params, _ctx(frame_valid=valid.at[-1].set(False)))) < 1e-10
  assert float(acc(None, None, params, ctx)) > 1.0
  joints = jnp.asarray(np.random.default_rng(0).normal(size=(t, 24, 3)), jnp.float32)
  term = losses.make_smoothness(2, "joints")
  diff = np.asarray(joints[2:] - 2 * joints[1:-1] + joints[:-2])
  np.testing.assert_allclose(term(None, None, params, _ctx(sequence_joints=joints,
                                                           frame_valid=valid)),
                             np.mean(np.sum(diff**2, -1)), rtol=1e-5)


def test_total_loss_weights_schedules_and_skips():
  calls = []

  def const(value, name):
    def term(render, frame, params, ctx):
      calls.append(name)
      return jnp.float32(value)
    return term

  mapping = {"a": (2.0, const(1.0, "a")), "b": (lambda step: 0.5 * step, const(3.0, "b")),
             "off": (0.0, const(jnp.nan, "off"))}
  total, values = losses.total_loss(mapping, None, None, None, _ctx(step=jnp.int32(4)))
  assert float(total) == 2.0 * 1.0 + 2.0 * 3.0
  assert set(values) == {"a", "b"} and float(values["b"]) == 3.0  # unweighted
  assert "off" not in calls


def test_total_loss_rejects_non_scalar_term():
  mapping = {"bad": (1.0, lambda *a: jnp.ones(3))}
  with pytest.raises(ValueError, match="'bad' must return a scalar"):
    losses.total_loss(mapping, None, None, None, _ctx(step=0))


def test_with_weights_unknown_name_lists_valid_ones():
  out = losses.with_weights(losses.DEFAULT_LOSSES, {"mask": 0.25})
  assert out["mask"][0] == 0.25 and out["mask"][1] is losses.mask_l1
  assert losses.DEFAULT_LOSSES["mask"][0] != 0.25  # the default mapping is not modified
  with pytest.raises(ValueError, match="unknown loss term 'nope'.*'rgb'"):
    losses.with_weights(losses.DEFAULT_LOSSES, {"nope": 1.0})


def test_avatar_regularisers_on_a_fresh_avatar():
  """On an avatar just sampled on the template: no band violation, no scale excess, no
  skinning drift; each regulariser reacts when its quantity is perturbed."""
  model = body_lib.load_body_model("default")
  avatar = avatar_lib.init_avatar(jax.random.key(0), model, 256, learn_skinning=True)
  params = types.SimpleNamespace(avatar=avatar)
  ctx = _ctx(body_model=model)
  p2m = losses.make_camel_point_to_mesh(delta=0.02)
  assert float(p2m(None, None, params, ctx)) < 1e-6
  assert float(losses.make_scale_regularizer(0.2)(None, None, params, ctx)) == 0.0
  assert float(losses.skinning_drift(None, None, params, ctx)) < 1e-8
  pushed = avatar.replace(means=avatar.means + 0.1 * avatar_lib.body_lib.vertex_normals(
      model.v_template, model.faces)[avatar_lib.anchor_vertex_ids(avatar, model)])
  np.testing.assert_allclose(p2m(None, None, types.SimpleNamespace(avatar=pushed), ctx),
                             0.08, rtol=0.05)
  big = avatar.replace(log_scales=avatar.log_scales + 3.0)
  assert float(losses.make_scale_regularizer(0.2)(None, None, types.SimpleNamespace(avatar=big),
                                                  ctx)) > 0.1
  half = avatar.replace(opacity_logits=jnp.zeros_like(avatar.opacity_logits))
  np.testing.assert_allclose(losses.opacity_reg(None, None, types.SimpleNamespace(avatar=half),
                                                ctx), 0.25, rtol=1e-6)
  drift = avatar.replace(skin_logits=avatar.skin_logits.at[:, 0].add(5.0))
  assert float(losses.skinning_drift(None, None, types.SimpleNamespace(avatar=drift), ctx)) > 0.1
