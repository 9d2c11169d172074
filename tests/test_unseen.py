"""Tests of hsjax.unseen: the per-Gaussian training coverage is exact (its weights add up to
the rendered alpha; Gaussians facing away have no exposure), and the fill copies the seen side
to the unseen one through the coronal plane without touching the seen Gaussians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import evaluation
from hsjax import unseen

from scene_common import two_frame_scene


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model()


@pytest.fixture(scope="module")
def scene(body_model):
  """Two frames of the default sequence and an initial avatar posed with the ground truth."""
  seq, avatar = two_frame_scene(body_model)
  coverage = unseen.training_coverage(avatar, body_model, seq.gt, seq.cameras)
  return seq, avatar, coverage


def test_weights_add_up_to_the_rendered_alpha(scene, body_model):
  seq, avatar, coverage = scene
  renders = evaluation.render_frames(avatar, body_model, seq.gt, seq.cameras)
  assert coverage.weight.sum() == pytest.approx(renders["alpha"].sum(), rel=1e-4)
  one = unseen.training_coverage(avatar, body_model, seq.gt, seq.cameras, frames=[1])
  assert one.weight.sum() == pytest.approx(renders["alpha"][1].sum(), rel=1e-4)


def test_exposure_is_zero_facing_away_and_ignores_opacity(scene, body_model):
  seq, avatar, coverage = scene
  # Normals at the anchors in both frames, independently of the module.
  out = body_lib.forward_params(body_model, seq.gt)
  normals = jax.vmap(lambda v: avatar_lib.interpolate_vertex_values(
      body_lib.vertex_normals(v, body_model.faces), body_model.faces, avatar.face_ids,
      avatar.barycentrics))(out.vertices)
  centre = np.asarray(seq.cameras.center).reshape(-1, 1, 3)
  gt = seq.gt
  means = np.stack([np.asarray(avatar_lib.deform(
      avatar, body_model, jnp.asarray(gt.betas), jnp.asarray(gt.body_pose[t]),
      jnp.asarray(gt.global_orient[t]), jnp.asarray(gt.transl[t])).means) for t in range(2)])
  facing = np.einsum("fnc,fnc->fn", np.asarray(normals), centre - means)
  away = np.all(facing < 0, axis=0)
  assert away.sum() > 100
  np.testing.assert_array_equal(coverage.exposure[away], 0.0)
  assert np.median(coverage.exposure[~away]) > 0.0
  assert np.all(coverage.weight >= -1e-5)

  # Halving every opacity halves the weights but leaves the (opacity-free) exposure nearly as
  # it was (only the transmittance of what lies behind changes).
  faint = avatar.replace(opacity_logits=jnp.full_like(avatar.opacity_logits, 0.0))  # 0.5
  faint_cov = unseen.training_coverage(faint, body_model, seq.gt, seq.cameras)
  front = coverage.exposure > 1.0
  ratio = faint_cov.exposure[front] / coverage.exposure[front]
  assert np.median(ratio) > 0.5


def test_fill_copies_the_front_to_the_back(body_model):
  avatar = avatar_lib.init_avatar(jax.random.key(1), body_model, 3000)
  mirrored = unseen.coronal_mirror(avatar, body_model)
  joints = np.asarray(body_lib.rest_joints_from_betas(
      body_model, jnp.zeros((body_model.shapedirs.shape[-1],), jnp.float32)))
  owner = np.argmax(np.asarray(avatar_lib.skinning_weights(avatar)), -1)
  z = np.asarray(avatar.means)[:, 2]
  np.testing.assert_allclose(mirrored[:, 2] - joints[owner, 2], joints[owner, 2] - z,
                             atol=1e-6)
  np.testing.assert_array_equal(mirrored[:, :2], np.asarray(avatar.means)[:, :2])

  # Front (in front of its joint) red; back blue with view-dependent bands, and unseen.
  front = z > joints[owner, 2]
  sh = np.zeros(avatar.sh.shape, np.float32)
  sh[front, 0] = [1.0, -1.0, -1.0]
  sh[~front, 0] = [-1.0, -1.0, 1.0]
  sh[~front, 1:] = 0.3
  logits = np.where(front, 3.0, -3.0).astype(np.float32)
  painted = avatar.replace(sh=jnp.asarray(sh), opacity_logits=jnp.asarray(logits))
  filled = unseen.fill_unseen(painted, body_model, ~front)
  out_sh = np.asarray(filled.sh)
  np.testing.assert_array_equal(out_sh[front], sh[front])  # the seen side is untouched
  np.testing.assert_allclose(out_sh[~front, 0], np.tile([1.0, -1.0, -1.0], (
      (~front).sum(), 1)), atol=1e-6)
  np.testing.assert_array_equal(out_sh[~front, 1:], 0.0)
  # Opacity, shape and position stay as fitted.
  for name in ("opacity_logits", "log_scales", "means", "quats"):
    np.testing.assert_array_equal(np.asarray(getattr(filled, name)),
                                  np.asarray(getattr(painted, name)))

  # Nothing unseen, or nothing seen: unchanged.
  assert unseen.fill_unseen(painted, body_model, np.zeros(3000, bool)) is painted
  assert unseen.fill_unseen(painted, body_model, np.ones(3000, bool)) is painted


def test_unseen_selection_and_its_errors(scene):
  _, avatar, coverage = scene
  mask = unseen.unseen_gaussians(avatar, coverage, min_exposure=1.0)
  expected = np.asarray(avatar.active) & (coverage.exposure < 1.0)
  np.testing.assert_array_equal(mask, expected)
  bad = unseen.Coverage(weight=coverage.weight[:10], exposure=coverage.exposure)
  with pytest.raises(ValueError, match=r"coverage.weight: expected shape \(1500,\)"):
    unseen.unseen_gaussians(avatar, bad)


def test_the_fit_uses_the_module_threshold():
  from hsjax import fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  assert fit.FitConfig().unseen_min_exposure == unseen.MIN_EXPOSURE
