"""Tests of the CAMEL and 3D depth loss terms of hsjax.losses on a real avatar and body: the
posed and canonical CAMEL spaces agree, the visibility selection agrees with the ground-truth
depth of the synthetic renderer, and the 3D depth term only pulls the Gaussians the camera
sees."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import camel
from hsjax import forward
from hsjax import losses
from hsjax.body import SMPLParams
from hsjax.camera import Camera
from kernels import rasterize

from scene_common import SIZE, two_frame_scene


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model()


@pytest.fixture(scope="module")
def scene(body_model):
  """Two frames of the default sequence (exact depth), an avatar posed with the ground truth,
  its render and the loss arguments."""
  seq, avatar = two_frame_scene(body_model)
  k = jnp.broadcast_to(jnp.asarray(seq.cameras.K, jnp.float32), (2, 3, 3))
  frame = losses.Frame(image=jnp.zeros((2, SIZE, SIZE, 3)), mask=jnp.asarray(seq.masks),
                       depth=jnp.asarray(seq.depth, jnp.float32), depth_K=k,
                       depth_weight=jnp.float32(1.0), depth_is_metric=jnp.float32(1.0),
                       index=jnp.arange(2))
  return types.SimpleNamespace(seq=seq, avatar=avatar, frame=frame,
                               **_posed(avatar, seq, body_model))


def _posed(avatar, seq, body_model, tile_capacity: int = 256) -> dict:
  """``avatar`` posed with the truth of ``seq``'s two frames: the loss terms' ``params``,
  ``render`` and ``ctx``."""
  gt = seq.gt
  poses = SMPLParams(betas=jnp.asarray(gt.betas), body_pose=jnp.asarray(gt.body_pose),
                     global_orient=jnp.asarray(gt.global_orient), transl=jnp.asarray(gt.transl))
  k = jnp.broadcast_to(jnp.asarray(seq.cameras.K, jnp.float32), (2, 3, 3))
  w2c = jnp.broadcast_to(jnp.asarray(seq.cameras.world_to_cam, jnp.float32), (2, 4, 4))
  camera = Camera(K=k, world_to_cam=w2c, width=SIZE, height=SIZE)
  settings = forward.RenderSettings(tile_capacity=tile_capacity)
  out = forward.forward(avatar, body_model, poses, camera, settings)
  ctx = losses.StepContext(step=jnp.int32(0), body=out.body, deformed=out.deformed,
                           sequence_joints=out.body.joints, frame_valid=jnp.ones(2, bool),
                           init=poses, body_model=body_model, camera=camera,
                           render_settings=settings)
  return {"params": types.SimpleNamespace(avatar=avatar, poses=poses), "render": out.render,
          "ctx": ctx}


def _camera_z(points, world_to_cam):
  return np.einsum("ij,nj->ni", world_to_cam[:3, :3], points)[:, 2] + world_to_cam[2, 3]


def test_visible_gaussians_agree_with_ground_truth_depth(scene):
  """Seen Gaussians lie on the surface the depth map shows; of the unseen ones that project
  onto the person, most lie well behind it (the back of the body)."""
  seen = np.asarray(losses.visible_gaussians(scene.render, scene.params, scene.ctx)) > 0
  active = np.asarray(scene.avatar.active)
  for f in range(2):
    means = np.asarray(scene.ctx.gaussians.means[f])
    w2c = np.asarray(scene.ctx.camera.world_to_cam[f])
    z = _camera_z(means, w2c)
    px = np.floor(np.asarray(scene.render.means2d[f])).astype(int)
    inside = (px[:, 0] >= 0) & (px[:, 0] < SIZE) & (px[:, 1] >= 0) & (px[:, 1] < SIZE)
    px = np.clip(px, 0, SIZE - 1)
    gt_depth = np.asarray(scene.seq.depth[f])[px[:, 1], px[:, 0]]
    on_person = inside & (gt_depth > 0)
    # Fewer than half: only the front faces the camera, and the arms hide some of it.
    assert 0.2 < seen[f][active].mean() < 0.5
    s, u = seen[f] & on_person, ~seen[f] & on_person & active
    # Clothing and the 32 px pixel footprint put seen centres a few cm off the z-buffer.
    assert np.mean(np.abs(z[s] - gt_depth[s]) < 0.06) > 0.9
    assert np.mean(z[u] - gt_depth[u] > 0.03) > 0.7


def test_visible_gaussians_min_facing_leaves_out_the_grazing_centres(scene):
  seen = np.asarray(losses.visible_gaussians(scene.render, scene.params, scene.ctx)) > 0
  facing = np.asarray(losses.visible_gaussians(scene.render, scene.params, scene.ctx,
                                               min_facing=0.5)) > 0
  body = scene.ctx.body
  normals = np.asarray(body_lib.vertex_normals(body.vertices, scene.ctx.body_model.faces))
  n = normals[:, np.asarray(losses.camel_nearest_vertices(scene.params, scene.ctx))]
  w2c = np.asarray(scene.ctx.camera.world_to_cam)
  centre = -np.einsum("fji,fj->fi", w2c[:, :3, :3], w2c[:, :3, 3])
  to_camera = centre[:, None] - np.asarray(scene.ctx.gaussians.means)
  cosine = np.sum(n * to_camera, -1) / (np.linalg.norm(n, axis=-1)
                                        * np.linalg.norm(to_camera, axis=-1))
  assert not np.any(facing & ~seen)
  assert np.all(cosine[facing] > 0.5 - 1e-5)
  assert np.all(cosine[seen & ~facing] < 0.5 + 1e-5)
  # On a body, a good share of what the camera sees is seen at a grazing angle.
  assert 0.3 * seen.sum() < facing.sum() < 0.9 * seen.sum()


def test_depth_3d_pulls_only_visible_gaussians(scene):
  term = losses.make_depth_chamfer()
  seen = np.asarray(losses.visible_gaussians(scene.render, scene.params, scene.ctx)) > 0

  def value(means, frame=scene.frame):
    deformed = scene.ctx.deformed.replace(gaussians=scene.ctx.gaussians.replace(means=means))
    return term(scene.render, frame, scene.params, scene.ctx.replace(deformed=deformed))

  means = scene.ctx.gaussians.means
  v, grad = jax.value_and_grad(value)(means)
  g = np.linalg.norm(np.asarray(grad), axis=-1)
  assert np.all(g[~seen] == 0.0)
  assert np.mean(g[seen] > 0) > 0.5
  # The true surface explains the seen centres far better than a depth 20 cm too far.
  far = scene.frame.replace(depth=jnp.where(scene.frame.depth > 0,
                                          scene.frame.depth + 0.2, 0.0))
  assert float(value(means, far)) > 5.0 * float(v)
  # Relative depth, no depth, or an empty mask: the term vanishes, gradients stay finite.
  for changed in ({"depth_is_metric": jnp.float32(0.0)}, {"depth_weight": jnp.float32(0.0)},
                  {"mask": jnp.zeros_like(scene.frame.mask)}):
    v, grad = jax.value_and_grad(value)(means, scene.frame.replace(**changed))
    assert float(v) == 0.0 and np.all(np.isfinite(np.asarray(grad)))


def _moved_along_normals(scene, body_model, distance, tile_capacity: int = 256):
  """The scene's avatar with every canonical centre moved ``distance`` metres along its
  reference vertex's normal (negative: under the skin), posed again."""
  avatar = scene.avatar
  nearest = losses.camel_nearest_vertices(scene.params, scene.ctx)
  normals = body_lib.vertex_normals(body_model.v_template, body_model.faces)[nearest]
  moved = avatar.replace(means=avatar.means + distance * normals)
  return types.SimpleNamespace(**{**vars(scene), **_posed(moved, scene.seq, body_model,
                                                          tile_capacity)})


def _depth_below_skin(s, body_model):
  """In numpy, of the posed centres of scene ``s``: ``(means, normals, below)``, the centres
  [F, N, 3], their reference vertex's normal [F, N, 3] and how far [F, N] each lies under that
  vertex's tangent plane (0 on or outside it)."""
  nearest = np.asarray(losses.camel_nearest_vertices(s.params, s.ctx))
  normals = np.asarray(body_lib.vertex_normals(s.ctx.body.vertices, body_model.faces))[:, nearest]
  points = np.asarray(s.ctx.body.vertices)[:, nearest]
  means = np.asarray(s.ctx.gaussians.means)
  return means, normals, np.maximum(-np.sum((means - points) * normals, -1), 0.0)


def test_depth_root_skin_places_the_body_for_the_skin_under_sunk_centres(scene, body_model):
  """Centres sunk 6 mm under the skin render a surface millimetres further away; the skin's
  offset (depth_offset + sunk_centres_depth) stays where it was. On or outside the skin
  nothing is lifted and depth_root_skin is depth_root; its gradient reaches the root
  translation alone."""
  def skin_offset(s):
    return np.asarray(losses.depth_offset(s.render, s.frame)
                      + losses.sunk_centres_depth(s.render, s.params, s.ctx))

  sunk = _moved_along_normals(scene, body_model, -0.006)
  rendered_shift = np.asarray(losses.depth_offset(sunk.render, sunk.frame)
                              - losses.depth_offset(scene.render, scene.frame))
  assert np.all(rendered_shift > 0.002)  # the rendered surface moved back with the centres
  lift = np.asarray(losses.sunk_centres_depth(sunk.render, sunk.params, sunk.ctx))
  assert np.all((lift < -0.003) & (lift > -0.006))  # facing the camera, up to 6 mm
  np.testing.assert_array_less(np.abs(skin_offset(sunk) - skin_offset(scene)),
                               0.4 * rendered_shift)

  outside = _moved_along_normals(scene, body_model, 0.006)
  assert np.all(np.asarray(losses.sunk_centres_depth(outside.render, outside.params,
                                                     outside.ctx)) == 0.0)
  args = (outside.render, outside.frame, outside.params, outside.ctx)
  assert float(losses.depth_root_skin(*args)) == float(losses.depth_root(*args))

  def value(poses):
    params = types.SimpleNamespace(avatar=sunk.params.avatar, poses=poses)
    return losses.depth_root_skin(sunk.render, sunk.frame, params, sunk.ctx)

  grad = jax.grad(value)(sunk.params.poses)
  assert np.any(np.asarray(grad.transl) != 0.0)
  for name in ("betas", "body_pose", "global_orient"):
    assert np.all(np.asarray(getattr(grad, name)) == 0.0), name


def test_depth_3d_onto_skin_pulls_the_skin_under_sunk_centres(scene, body_model):
  """With ``onto_skin`` the 3D term is the plain one at the seen centres lifted onto their
  reference vertex's tangent plane (lifted here in numpy), its gradient reaching the centres
  as if the lift were not there; with the offset removed, the offset is the skin's. Centres
  on or outside the skin are not moved."""
  sunk = _moved_along_normals(scene, body_model, -0.006)
  means, normals, below = _depth_below_skin(sunk, body_model)
  assert np.median(below[:, np.asarray(sunk.avatar.active)]) > 0.004
  lifted = jnp.asarray(means + below[..., None] * normals)

  def value(term, s, centres, frame=None):
    deformed = s.ctx.deformed.replace(gaussians=s.ctx.gaussians.replace(means=centres))
    return term(s.render, s.frame if frame is None else frame, s.params,
                s.ctx.replace(deformed=deformed))

  # Every centre inside the image pulled (no facing or occlusion test), so that the lifted
  # centres are selected as the sunk ones.
  everything = {"margin": 1.0, "min_facing": -1.0}
  plain = losses.make_depth_chamfer(**everything)
  skin = losses.make_depth_chamfer(**everything, onto_skin=True)
  v_skin, g_skin = jax.value_and_grad(lambda m: value(skin, sunk, m))(jnp.asarray(means))
  v_plain, g_plain = jax.value_and_grad(lambda m: value(plain, sunk, m))(lifted)
  np.testing.assert_allclose(float(v_skin), float(v_plain), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(g_skin), np.asarray(g_plain), rtol=1e-4, atol=1e-9)
  assert float(v_skin) != float(value(plain, sunk, jnp.asarray(means)))

  # Relative: the plain term on the observed depth moved by the skin's offset.
  relative_skin = losses.make_depth_chamfer(**everything, remove_offset=True, onto_skin=True)
  skin_offset = (losses.depth_offset(sunk.render, sunk.frame)
                 + losses.sunk_centres_depth(sunk.render, sunk.params, sunk.ctx))
  moved = sunk.frame.replace(depth=jnp.where(sunk.frame.depth > 0,
                                             sunk.frame.depth + skin_offset[:, None, None], 0.0))
  np.testing.assert_allclose(float(value(relative_skin, sunk, jnp.asarray(means))),
                             float(value(plain, sunk, lifted, moved)), rtol=1e-5)

  outside = _moved_along_normals(scene, body_model, 0.006)
  relative = losses.make_depth_chamfer(**everything, remove_offset=True)
  # (The posed normals are not quite those the centres were moved along: at bent joints a few
  # stay under the skin.)
  for term_skin, term in ((skin, plain), (relative_skin, relative)):
    np.testing.assert_allclose(float(value(term_skin, outside, outside.ctx.gaussians.means)),
                               float(value(term, outside, outside.ctx.gaussians.means)),
                               rtol=1e-4)


def test_depth_relative_skin_renders_the_depth_of_the_lifted_centres(scene, body_model):
  """skin_depth_change is each Gaussian's camera-axis lift onto the skin (lifted here in
  numpy) composited by brute force with the render's weights; depth_relative_skin is the plain
  relative L1 on the render's depth plus that change. Centres sunk 6 mm under the skin and
  facing the camera are lifted up to 6 mm towards it."""
  # No tile overflows at this capacity: the brute force composites the same Gaussians.
  sunk = _moved_along_normals(scene, body_model, -0.006, tile_capacity=1024)
  assert not np.any(np.asarray(sunk.render.overflow))
  _, normals, below = _depth_below_skin(sunk, body_model)
  change = np.asarray(losses.skin_depth_change(sunk.render, sunk.params, sunk.ctx))
  for f in range(2):
    g = jax.tree.map(lambda x: x[f], sunk.ctx.gaussians)  # pylint: disable=cell-var-from-loop
    w2c = np.asarray(sunk.ctx.camera.world_to_cam[f])
    lift_z = (below[f][:, None] * normals[f]) @ w2c[2, :3]
    brute = rasterize.rasterize(g.means, g.quats, g.scales, g.opacities,
                                jnp.asarray(lift_z[:, None], jnp.float32),
                                sunk.ctx.camera.K[f], sunk.ctx.camera.world_to_cam[f],
                                width=SIZE, height=SIZE, backend="reference")
    hit = np.asarray(sunk.render.depth[f]) > 0
    expected = np.where(hit, np.asarray(brute.rgb[..., 0]) / np.where(
        hit, np.asarray(brute.alpha), 1.0), 0.0)
    np.testing.assert_allclose(change[f], expected, atol=2e-5)
    person = hit & (np.asarray(sunk.render.alpha[f]) > 0.5)
    assert -0.006 < np.median(change[f][person]) < -0.002  # facing the camera: nearer

  moved = sunk.render.replace(depth=sunk.render.depth + change)
  skin = float(losses.depth_relative_skin_l1(sunk.render, sunk.frame, sunk.params, sunk.ctx))
  np.testing.assert_allclose(
      skin, float(losses.depth_relative_l1(moved, sunk.frame, sunk.params, sunk.ctx)),
      rtol=1e-6)


def test_depth_3d_unprojects_with_the_depth_intrinsics(scene):
  """Depth that came with its own (wrong) focal length is unprojected with it."""
  term = losses.make_depth_chamfer()
  k = scene.frame.depth_K
  wrong_k = k.at[:, 0, 0].multiply(1.3).at[:, 1, 1].multiply(1.3)
  right = float(term(scene.render, scene.frame, scene.params, scene.ctx))
  wrong = float(term(scene.render, scene.frame.replace(depth_K=wrong_k), scene.params, scene.ctx))
  assert wrong > 2.0 * right


def test_camel_posed_space_matches_canonical_at_rest(body_model):
  avatar = avatar_lib.init_avatar(jax.random.key(1), body_model, 400)
  normals = body_lib.vertex_normals(body_model.v_template, body_model.faces)
  pushed = avatar.replace(means=avatar.means + 0.1 * normals[
      avatar_lib.anchor_vertex_ids(avatar, body_model)])
  zeros = jnp.zeros((1, 23, 3)), jnp.zeros((1, 3)), jnp.zeros((1, 3))
  betas = jnp.zeros((1, body_model.num_betas))
  for av, expected in ((avatar, 0.0), (pushed, 0.08)):
    rest = SMPLParams(betas=betas[0], body_pose=zeros[0], global_orient=zeros[1],
                      transl=zeros[2])
    ctx = types.SimpleNamespace(body_model=body_model, camel_nearest=None,
                                deformed=forward.deform_frames(av, body_model, rest),
                                body=forward.pose_frames(body_model, rest))
    ctx.gaussians = ctx.deformed.gaussians
    params = types.SimpleNamespace(avatar=av)
    for space in ("canonical", "posed"):
      p2m = float(losses.make_camel_point_to_mesh(0.02, space)(None, None, params, ctx))
      assert p2m == pytest.approx(expected, abs=0.004), space
    surf = [float(losses.make_camel_surface(s)(None, None, params, ctx))
            for s in ("canonical", "posed")]
    assert surf[0] == pytest.approx(surf[1], abs=1e-4)
  with pytest.raises(ValueError, match="canonical' or 'posed"):
    losses.make_camel_point_to_mesh(space="world")(None, None, params, ctx)


def test_camel_nearest_vertices_prefers_the_cached_search(body_model):
  avatar = avatar_lib.init_avatar(jax.random.key(2), body_model, 50)
  params = types.SimpleNamespace(avatar=avatar)
  anchors = losses.camel_nearest_vertices(
      params, types.SimpleNamespace(body_model=body_model, camel_nearest=None))
  np.testing.assert_array_equal(anchors, avatar_lib.anchor_vertex_ids(avatar, body_model))
  searched, _ = camel.nearest_points(avatar.means, body_model.v_template)
  got = losses.camel_nearest_vertices(
      params, types.SimpleNamespace(body_model=body_model, camel_nearest=searched))
  np.testing.assert_array_equal(got, searched)


def test_anchor_tether_is_a_band_around_each_anchor(scene, body_model):
  """0 within the band (the initial avatar sits on its anchors), then the mean excess distance
  of the active Gaussians; a slide along the skin costs as much as a move off it, and the
  gradient is finite at the anchors."""
  tether = losses.make_anchor_tether(delta=0.02)
  avatar = scene.avatar
  args = (scene.render, scene.frame)
  ctx = scene.ctx
  assert float(tether(*args, types.SimpleNamespace(avatar=avatar), ctx)) == 0.0
  grad = jax.grad(lambda m: tether(*args, types.SimpleNamespace(
      avatar=avatar.replace(means=m)), ctx))(avatar.means)
  assert np.all(np.isfinite(np.asarray(grad)))

  rng = np.random.default_rng(0)
  direction = rng.normal(size=avatar.means.shape)
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
  moved = avatar.replace(means=avatar.means + 0.05 * jnp.asarray(direction, jnp.float32))
  value = float(tether(*args, types.SimpleNamespace(avatar=moved), ctx))
  assert value == pytest.approx(0.03, rel=1e-4)  # every Gaussian 5 cm away, band 2 cm

  # Only the active Gaussians count.
  half = moved.replace(active=jnp.arange(avatar.num_gaussians) % 2 == 0)
  assert float(tether(*args, types.SimpleNamespace(avatar=half), ctx)) == pytest.approx(
      0.03, rel=1e-4)
