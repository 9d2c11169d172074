"""Tests of hsjax.avatar: initialisation, blend shapes + LBS of means, covariances, SH colour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import rotations

# Blend shapes and LBS in float32 on metre-scale bodies: ~1e-7 m round-off.
POSITION_TOL = 1e-5


def uv_sphere_body(seed: int = 0, nu: int = 24, nv: int = 16, posedirs: bool = True
                   ) -> body_lib.BodyModel:
  """An SMPL-format model on a closed ellipsoid with random blend shapes, regressor, weights."""
  rng = np.random.default_rng(seed)
  theta = np.linspace(0.0, np.pi, nv + 2)[1:-1]
  phi = np.linspace(0.0, 2.0 * np.pi, nu, endpoint=False)
  ring = np.stack([np.outer(np.sin(theta), np.cos(phi)), np.outer(np.cos(theta), np.ones(nu)),
                   np.outer(np.sin(theta), np.sin(phi))], -1).reshape(-1, 3)
  verts = np.concatenate([ring, [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]]) * [0.3, 0.9, 0.2]
  top, bottom = len(ring), len(ring) + 1
  faces = []
  for j in range(nu):  # caps, outward (counter-clockwise seen from outside)
    faces.append([top, (j + 1) % nu, j])
    faces.append([bottom, (nv - 1) * nu + j, (nv - 1) * nu + (j + 1) % nu])
  for i in range(nv - 1):
    for j in range(nu):
      a, b = i * nu + j, i * nu + (j + 1) % nu
      faces += [[a, b, a + nu], [b, b + nu, a + nu]]
  num_verts = len(verts)
  regressor = np.abs(rng.normal(size=(24, num_verts)))
  weights = np.exp(3.0 * rng.normal(size=(num_verts, 24)))
  data = dict(
      v_template=verts,
      shapedirs=0.02 * rng.normal(size=(num_verts, 3, 10)),
      posedirs=0.02 * rng.normal(size=(num_verts, 3, 207)) if posedirs else None,
      J_regressor=regressor / regressor.sum(1, keepdims=True),
      weights=weights / weights.sum(1, keepdims=True),
      kintree_table=np.stack([np.array(body_lib.SMPL_PARENTS), np.arange(24)]),
      f=np.array(faces))
  return body_lib.body_model_from_arrays(data)


def random_pose(seed: int, scale: float = 0.6):
  rng = np.random.default_rng(seed)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return (f32(rng.normal(size=10)), f32(scale * rng.normal(size=(23, 3))),
          f32(rng.normal(size=3)), f32(rng.normal(size=3)))


def covariance(quats, scales):
  rot = rotations.quat_to_matrix(quats)
  return rot @ (scales[..., :, None] ** 2 * jnp.swapaxes(rot, -1, -2))


def vertex_avatar(model, vertex_ids, base):
  """An avatar with one Gaussian exactly on each given vertex, with that vertex's weights."""
  faces = np.asarray(model.faces)
  face_ids, bary = [], []
  for v in vertex_ids:
    f = int(np.nonzero((faces == v).any(1))[0][0])
    b = np.zeros(3)
    b[list(faces[f]).index(v)] = 1.0
    face_ids.append(f)
    bary.append(b)
  n = len(vertex_ids)
  take = lambda x: x[:n]
  return base.replace(
      means=model.v_template[np.asarray(vertex_ids)],
      skin_init=model.lbs_weights[np.asarray(vertex_ids)],
      face_ids=jnp.asarray(face_ids, jnp.int32), barycentrics=jnp.asarray(bary, jnp.float32),
      log_scales=take(base.log_scales), quats=take(base.quats),
      opacity_logits=take(base.opacity_logits), sh=take(base.sh),
      skin_logits=take(base.skin_logits), active=jnp.ones((n,), bool))


@pytest.fixture(scope="module")
def model():
  return uv_sphere_body()


@pytest.fixture(scope="module")
def avatar(model):
  return avatar_lib.init_avatar(jax.random.key(1), model, 1024, sh_degree=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_on_vertex_moves_with_posed_vertex(model, avatar, seed):
  """Acceptance: shape + pose blend shapes + LBS of a vertex Gaussian == body_forward vertex."""
  vertex_ids = np.arange(0, model.num_vertices, 3)
  av = vertex_avatar(model, vertex_ids, avatar)
  betas, pose, orient, transl = random_pose(seed)
  deform = jax.jit(avatar_lib.deform)
  got = deform(av, model, betas, pose, orient, transl).means
  want = body_lib.body_forward(model, betas, pose, orient, transl).vertices[vertex_ids]
  np.testing.assert_allclose(got, want, atol=POSITION_TOL, rtol=0)
  # The blend-shape offsets matter: without them the same Gaussians land elsewhere.
  no_blend = model.replace(shapedirs=jnp.zeros_like(model.shapedirs),
                           posedirs=jnp.zeros_like(model.posedirs))
  moved = deform(av, no_blend, betas, pose, orient, transl).means
  assert np.max(np.abs(moved - want)) > 100 * POSITION_TOL


def test_rigid_part_covariance_is_exact(model, avatar):
  """All weight on joint j: Σ' = R_j Σ R_jᵀ, scales unchanged, mean = A_j x."""
  betas, pose, orient, transl = random_pose(3, scale=1.0)
  joints = jnp.arange(avatar.num_gaussians) % 24
  av = avatar.replace(skin_init=jax.nn.one_hot(joints, 24))
  out = avatar_lib.deform(av, model, betas, pose, orient, transl)
  transforms = body_lib.body_forward(model, betas, pose, orient, transl).transforms
  rot = transforms[joints, :3, :3]
  want = rot @ covariance(av.quats, jnp.exp(av.log_scales)) @ jnp.swapaxes(rot, -1, -2)
  got = covariance(out.quats, out.scales)
  np.testing.assert_allclose(got, want, atol=1e-7, rtol=1e-4)
  np.testing.assert_allclose(out.scales, jnp.exp(av.log_scales), rtol=1e-6)


def test_blended_rotation_is_polar_factor(model, avatar):
  """Blended weights: the Gaussian turns by the polar rotation of Σ w_j R_j (SVD oracle)."""
  betas, pose, orient, transl = random_pose(4, scale=0.8)
  # Two joints per Gaussian with a random split, as at SMPL's joints.
  rng = np.random.default_rng(4)
  n = avatar.num_gaussians
  w = rng.uniform(0.0, 1.0, n)
  skin = (w[:, None] * np.eye(24)[rng.integers(0, 24, n)]
          + (1 - w[:, None]) * np.eye(24)[rng.integers(0, 24, n)])
  avatar = avatar.replace(skin_init=jnp.asarray(skin, jnp.float32))
  out = avatar_lib.deform_with_aux(avatar, model, betas, pose, orient, transl)
  transforms = np.asarray(body_lib.body_forward(model, betas, pose, orient, transl).transforms,
                          np.float64)
  blended = np.einsum("nj,jab->nab", np.asarray(avatar.skin_init, np.float64),
                      transforms[:, :3, :3])
  # Two rotations far apart blend into a near-singular M (no meaningful rotation); the polar
  # factor is compared where M is well conditioned, which is most of them.
  valid = np.linalg.det(blended) > 0.05
  assert valid.mean() > 0.7
  u, _, vt = np.linalg.svd(blended[valid])
  want = u @ vt
  np.testing.assert_allclose(np.asarray(out.rotations)[valid], want, atol=5e-5)
  # The Gaussian's frame is the canonical frame turned by that rotation.
  canonical = np.asarray(rotations.quat_to_matrix(avatar.quats), np.float64)[valid]
  got = np.asarray(rotations.quat_to_matrix(out.gaussians.quats))[valid]
  np.testing.assert_allclose(got, want @ canonical, atol=5e-5)


def test_polar_rotation_two_rotations_about_one_axis():
  """w1 Rz(a) + w2 Rz(b) is a scaled rotation by atan2(Σ w sin, Σ w cos) about z."""
  angles_a = jnp.linspace(-3.0, 3.0, 7)
  angles_b = jnp.linspace(0.5, -2.0, 7)
  w = jnp.linspace(0.1, 0.9, 7)
  rz = lambda t: rotations.axis_angle_to_matrix(jnp.stack([0 * t, 0 * t, t], -1))
  blended = w[:, None, None] * rz(angles_a) + (1 - w)[:, None, None] * rz(angles_b)
  want = rz(jnp.arctan2(w * jnp.sin(angles_a) + (1 - w) * jnp.sin(angles_b),
                        w * jnp.cos(angles_a) + (1 - w) * jnp.cos(angles_b)))
  got = avatar_lib.polar_rotation(blended)
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_polar_rotation_converges_for_strong_blends():
  """Up to 170° between two rotations (even split), the result is a rotation (R Rᵀ = I)."""
  axis = jnp.asarray([0.3, -0.5, 0.8]) / jnp.linalg.norm(jnp.asarray([0.3, -0.5, 0.8]))
  other = rotations.axis_angle_to_matrix(axis * jnp.deg2rad(170.0))
  key_rot = rotations.axis_angle_to_matrix(jnp.asarray([1.0, 2.0, -0.5]))
  m = 0.5 * (key_rot + key_rot @ other)
  r = avatar_lib.polar_rotation(m)
  np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
  u, _, vt = np.linalg.svd(np.asarray(m, np.float64))
  np.testing.assert_allclose(r, u @ vt, atol=1e-5)


def test_polar_gradient_finite_at_rotation(x64):
  """At a pure rotation (all singular values equal, where SVD's gradient is undefined) the
  polar rotation's gradient is finite and matches finite differences."""
  del x64
  rot = rotations.axis_angle_to_matrix(jnp.asarray([0.2, -0.4, 0.1], jnp.float64))
  check_grads(lambda m: avatar_lib.polar_rotation(m, iterations=12), (rot,), order=1,
              modes=("rev",), atol=1e-6, rtol=1e-6)
  grad = jax.grad(lambda m: jnp.sum(avatar_lib.polar_rotation(m) * jnp.arange(9.0).reshape(3, 3)
                                    ))(rot)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_colour_rotates_with_gaussian(degree):
  """colour'(d) == colour(Rᵀ d) for the rotated coefficients (3DGS basis, renderer's eval_sh)."""
  from kernels.rasterize import sh as sh_lib  # pylint: disable=g-import-not-at-top

  key_sh, key_rot, key_dir = jax.random.split(jax.random.key(degree), 3)
  n = 32
  sh = jax.random.normal(key_sh, (n, (degree + 1) ** 2, 3))
  rot = rotations.axis_angle_to_matrix(2.0 * jax.random.normal(key_rot, (n, 3)))
  dirs = jax.random.normal(key_dir, (n, 3))
  dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
  rotated = avatar_lib.rotate_sh(sh, rot, degree)
  got = sh_lib.eval_sh(degree, rotated, dirs)
  want = sh_lib.eval_sh(degree, sh, jnp.einsum("nji,nj->ni", rot, dirs))
  np.testing.assert_allclose(got, want, atol=2e-5)
  np.testing.assert_array_equal(rotated[:, 0], sh[:, 0])  # DC is rotation invariant


def test_inactive_slots_have_zero_opacity(model, avatar):
  out = avatar_lib.deform(avatar, model, *random_pose(5))
  active = np.asarray(avatar.active)
  assert 0 < active.sum() < active.size
  assert np.all(np.asarray(out.opacities)[~active] == 0)
  np.testing.assert_allclose(np.asarray(out.opacities)[active], 0.9, rtol=1e-6)


def test_deform_vmaps_over_frames(model, avatar):
  poses = [random_pose(s) for s in range(3)]
  stacked = [jnp.stack(x) for x in zip(*poses)]
  batched = jax.jit(jax.vmap(avatar_lib.deform, in_axes=(None, None, 0, 0, 0, 0)))(
      avatar, model, *stacked)
  for t, pose in enumerate(poses):
    single = avatar_lib.deform(avatar, model, *pose)
    for name in ("means", "quats", "scales", "opacities", "sh"):
      np.testing.assert_allclose(getattr(batched, name)[t], getattr(single, name), atol=1e-5)


def test_deform_rejects_bad_shapes(model, avatar):
  betas, pose, orient, transl = random_pose(0)
  with pytest.raises(ValueError, match="betas must be"):
    avatar_lib.deform(avatar, model, betas[:5], pose, orient, transl)
  with pytest.raises(ValueError, match="body_pose must be"):
    avatar_lib.deform(avatar, model, betas, pose.reshape(-1), orient, transl)


def test_deform_gradients_match_finite_differences(x64):
  """d(loss of deformed means, quats, SH)/d(pose, orient, transl, betas) vs central differences."""
  del x64
  model = jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
                       uv_sphere_body(seed=7, nu=8, nv=5))
  av = avatar_lib.init_avatar(jax.random.key(2), model, 64, sh_degree=1, active_fraction=1.0)
  av = jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x, av)
  av = av.replace(sh=jax.random.normal(jax.random.key(3), av.sh.shape, jnp.float64))
  weights = jax.random.normal(jax.random.key(4), (64, 3), jnp.float64)
  betas, pose, orient, transl = (jnp.asarray(x, jnp.float64) for x in random_pose(8))

  def loss(betas, pose, orient, transl):
    g = avatar_lib.deform(av, model, betas, pose, orient, transl)
    # Quaternion sign is arbitrary; use the rotation matrix.
    return (jnp.sum(g.means * weights) + jnp.sum(jnp.sin(rotations.quat_to_matrix(g.quats)))
            + jnp.sum(g.sh[:, 1:] ** 2 * 0.1))

  loss = jax.jit(loss)
  check_grads(loss, (betas, pose, orient, transl), order=1, modes=("rev",), atol=1e-5,
              rtol=1e-5)
  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(betas, pose, orient, transl)
  for g in grads:
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_init_samples_lie_on_template_surface(model, avatar):
  faces = np.asarray(model.faces)
  verts = np.asarray(model.v_template)
  bary = np.asarray(avatar.barycentrics)
  assert np.all(bary >= -1e-6) and np.allclose(bary.sum(-1), 1.0, atol=1e-6)
  on_surface = np.einsum("nk,nkd->nd", bary, verts[faces[np.asarray(avatar.face_ids)]])
  np.testing.assert_allclose(avatar.means, on_surface, atol=1e-6)
  np.testing.assert_allclose(np.asarray(avatar.skin_init).sum(-1), 1.0, atol=1e-5)
  # Flat discs: the local z axis (the smallest scale) is the outward surface normal; on this
  # ellipsoid the normal is ∝ (x/a², y/b², z/c²).
  axes = np.asarray(rotations.quat_to_matrix(avatar.quats))[:, :, 2]
  means = np.asarray(avatar.means)
  normal = means / np.array([0.3, 0.9, 0.2]) ** 2
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  assert np.median(np.sum(axes * normal, -1)) > 0.97
  scales = np.exp(np.asarray(avatar.log_scales))
  np.testing.assert_allclose(scales[:, 2], 0.1 * scales[:, 0], rtol=1e-5)
  # Area-weighted systematic sampling: samples per unit area roughly uniform (top vs bottom).
  active = np.asarray(avatar.active)
  upper = np.sum(means[active, 1] > 0)
  assert abs(upper / active.sum() - 0.5) < 0.05


def test_init_skinning_options(model):
  bary_av = avatar_lib.init_avatar(jax.random.key(5), model, 256, skin_init="barycentric")
  near_av = avatar_lib.init_avatar(jax.random.key(5), model, 256, skin_init="nearest")
  faces = np.asarray(model.faces)
  weights = np.asarray(model.lbs_weights)
  ids = np.asarray(avatar_lib.anchor_vertex_ids(near_av, model))
  np.testing.assert_allclose(near_av.skin_init, weights[ids], atol=1e-6)
  corners = faces[np.asarray(bary_av.face_ids)]
  want = np.einsum("nk,nkj->nj", np.asarray(bary_av.barycentrics), weights[corners])
  np.testing.assert_allclose(bary_av.skin_init, want, atol=1e-6)
  with pytest.raises(ValueError, match="skin_init"):
    avatar_lib.init_avatar(jax.random.key(5), model, 256, skin_init="voxel")


def test_learned_skinning_starts_at_initial_weights(model):
  av = avatar_lib.init_avatar(jax.random.key(6), model, 256, learn_skinning=True)
  np.testing.assert_allclose(avatar_lib.skinning_weights(av), av.skin_init, atol=1e-4)
  assert float(avatar_lib.skinning_drift(av)) < 1e-8
  moved = av.replace(skin_logits=av.skin_logits.at[:, 0].add(3.0))
  assert float(avatar_lib.skinning_drift(moved)) > 1e-3


def test_split_combine_and_grad(model):
  """split -> grad over the float params -> combine; fixed skinning is not a parameter."""
  av = avatar_lib.init_avatar(jax.random.key(7), model, 128)
  params, buffers = avatar_lib.split(av)
  assert params.skin_logits is None and params.face_ids is None and params.active is None
  assert buffers.means is None and buffers.face_ids is not None
  rebuilt = avatar_lib.combine(params, buffers)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(av)
  pose = random_pose(9)

  def loss(p):
    g = avatar_lib.deform(avatar_lib.combine(p, buffers), model, *pose)
    return jnp.sum(g.means ** 2) + jnp.sum(g.opacities)

  grads = jax.grad(loss)(params)
  assert np.any(np.asarray(grads.means) != 0) and np.any(np.asarray(grads.opacity_logits) != 0)
  learn = av.replace(learn_skinning=True)
  assert avatar_lib.split(learn)[0].skin_logits is not None
  labels = avatar_lib.param_labels(params)
  assert labels.means == "means" and labels.face_ids is None
