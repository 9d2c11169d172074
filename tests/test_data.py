"""Tests of the synthetic benchmark: mesh renderer, generator, HMR noise presets, motions."""

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax import motion as motion_pkg
from hsjax.camera import Camera, intrinsics, look_at
from hsjax.data import HMR_NOISE_PRESETS, render_mesh, simulate_hmr, synthetic_sequence
from hsjax import metrics
from hsjax.data import motions as motions_lib
from hsjax.data.synthetic import render as render_lib
from hsjax.data import synthetic as synthetic_lib

from test_data_common import capsule_body, small_body  # pylint: disable=unused-import

# A small configuration for fast generator tests (the capsule body, 8 frames at 64 px).
SMALL = dict(num_frames=8, image_size=64, num_eval_views=2, num_novel_pose=2)


def _brute_force_depth(vertices, faces, camera, pixels):
  """Nearest ray-triangle hit (Moller-Trumbore) through each pixel centre: camera z or 0."""
  k = np.asarray(camera.K, np.float64)
  w2c = np.asarray(camera.world_to_cam, np.float64)
  p = vertices @ w2c[:3, :3].T + w2c[:3, 3]  # camera frame: the rays start at the origin
  a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
  e1, e2 = b - a, c - a
  out = []
  for u, v in pixels:
    d = np.linalg.inv(k) @ np.array([u + 0.5, v + 0.5, 1.0])
    h = np.cross(d, e2)
    det = np.einsum("fd,fd->f", e1, h)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = -a
    bu = inv * np.einsum("fd,fd->f", s, h)
    q = np.cross(s, e1)
    bv = inv * (q @ d)
    t = inv * np.einsum("fd,fd->f", e2, q)
    hit = ok & (bu >= 0) & (bv >= 0) & (bu + bv <= 1) & (t > 0)
    out.append((t[hit] * d[2]).min() if hit.any() else 0.0)
  return np.array(out)


def _camera(size=64, distance=3.0, azimuth=0.0):
  a = np.deg2rad(azimuth)
  eye = [distance * np.sin(a), 0.2, distance * np.cos(a)]
  return Camera(K=intrinsics(size * 1.5, size, size), world_to_cam=look_at(eye, [0, -0.3, 0]),
                width=size, height=size)


def test_rasterizer_depth_matches_ray_casting(small_body):
  """At supersample 1 the z-buffer equals the nearest ray-triangle hit of each pixel centre."""
  verts = np.asarray(small_body.v_template, np.float64)
  faces = np.asarray(small_body.faces)
  cam = _camera(size=48, azimuth=30.0)
  face_id, _, depth = render_lib.rasterize(verts, faces, cam, supersample=1,
                                           cull_backfaces=False)
  rng = np.random.default_rng(0)
  covered = np.argwhere(depth > 0)[:, ::-1]
  pixels = np.concatenate([covered[rng.choice(len(covered), 150, replace=False)],
                           rng.integers(0, 48, size=(150, 2))])
  expected = _brute_force_depth(verts, faces, cam, pixels)
  found = depth[pixels[:, 1], pixels[:, 0]]
  assert (expected > 0).sum() > 150  # the sample hits the body
  np.testing.assert_array_equal(found > 0, expected > 0)
  np.testing.assert_allclose(found, expected, atol=1e-6)
  # Back-face culling changes nothing on a closed mesh.
  _, _, depth_culled = render_lib.rasterize(verts, faces, cam, supersample=1)
  np.testing.assert_allclose(depth_culled, depth, atol=1e-9)
  assert np.all((face_id >= 0) == (depth > 0))


def test_render_mesh_outputs_agree(small_body):
  """mask = covered fraction; depth > 0 exactly where mask >= 0.5; background elsewhere."""
  verts = np.asarray(small_body.v_template)
  faces = np.asarray(small_body.faces)
  cam = _camera()
  bg = (0.2, 0.4, 0.6)
  rgb, mask, depth = render_mesh(verts, faces, cam, vertex_colors=np.ones_like(verts),
                                 supersample=2, background=bg)
  assert rgb.shape == (64, 64, 3) and mask.shape == (64, 64) and depth.shape == (64, 64)
  assert rgb.dtype == mask.dtype == depth.dtype == np.float32
  np.testing.assert_array_equal(depth > 0, mask >= 0.5)
  np.testing.assert_allclose(rgb[mask == 0], np.broadcast_to(bg, rgb[mask == 0].shape),
                             atol=1e-6)
  # Anti-aliased edges: fractional coverage exists, values are multiples of 1/4.
  edge = (mask > 0) & (mask < 1)
  assert edge.sum() > 20
  np.testing.assert_allclose(mask * 4, np.round(mask * 4), atol=1e-6)
  # White albedo, unshaded: the colour is the coverage blend of white and the background.
  np.testing.assert_allclose(rgb, mask[..., None] + (1 - mask[..., None]) * np.array(bg),
                             atol=1e-5)


def test_render_mesh_coverage_converges_with_supersampling(small_body):
  """The anti-aliased silhouette area is stable across supersampling factors."""
  verts = np.asarray(small_body.v_template)
  faces = np.asarray(small_body.faces)
  cam = _camera()
  areas = [render_mesh(verts, faces, cam, vertex_colors=np.ones_like(verts), supersample=s)[1]
           .sum() for s in (2, 4, 8)]
  assert abs(areas[0] - areas[2]) / areas[2] < 0.03
  assert abs(areas[1] - areas[2]) / areas[2] < 0.015


def test_render_mesh_rejects_bad_input(small_body):
  cam = _camera()
  verts = np.asarray(small_body.v_template)
  with pytest.raises(ValueError, match="exactly one of vertex_colors or texture"):
    render_mesh(verts, small_body.faces, cam)
  with pytest.raises(ValueError, match="vertices must be"):
    render_mesh(verts[:, :2], small_body.faces, cam, vertex_colors=verts)
  batched = Camera(K=np.stack([cam.K] * 2), world_to_cam=np.stack([cam.world_to_cam] * 2),
                   width=64, height=64)
  with pytest.raises(ValueError, match="expects one camera"):
    render_mesh(verts, small_body.faces, batched, vertex_colors=verts)


@pytest.fixture(scope="module")
def small_sequence(small_body):
  return synthetic_sequence(seed=3, body_model=small_body, cache_dir=False, **SMALL)


def test_generator_is_deterministic(small_body, small_sequence):
  again = synthetic_sequence(seed=3, body_model=small_body, cache_dir=False, **SMALL)
  for a, b in ((small_sequence, again), (small_sequence.eval_views[1], again.eval_views[1]),
               (small_sequence.novel_pose, again.novel_pose)):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.hmr.body_pose, b.hmr.body_pose)
    np.testing.assert_array_equal(a.hmr.transl, b.hmr.transl)
  other = synthetic_sequence(seed=4, body_model=small_body, cache_dir=False, **SMALL)
  assert not np.array_equal(other.hmr.body_pose, small_sequence.hmr.body_pose)
  assert not np.array_equal(other.gt.betas, small_sequence.gt.betas)


def test_cache_round_trip_is_exact(small_body, small_sequence, tmp_path):
  cached = synthetic_sequence(seed=3, body_model=small_body, cache_dir=str(tmp_path), **SMALL)
  (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
  assert entry.name.startswith("default-3-")
  for a, b in ((small_sequence, cached), (small_sequence.eval_views[0], cached.eval_views[0]),
               (small_sequence.novel_pose, cached.novel_pose)):
    np.testing.assert_array_equal(np.asarray(b.images), a.images)
    np.testing.assert_array_equal(np.asarray(b.masks), a.masks)
    np.testing.assert_array_equal(np.asarray(b.depth), a.depth)
    np.testing.assert_array_equal(b.cameras.world_to_cam, a.cameras.world_to_cam)
    np.testing.assert_array_equal(b.gt.body_pose, a.gt.body_pose)
    np.testing.assert_array_equal(b.hmr.transl, a.hmr.transl)
  assert cached.eval_views[0].hmr.body_pose is cached.hmr.body_pose
  # A second call reads the cache (the files are not rewritten).
  stamp = (entry / "sequence.npz").stat().st_mtime_ns
  synthetic_sequence(seed=3, body_model=small_body, cache_dir=str(tmp_path), **SMALL)
  assert (entry / "sequence.npz").stat().st_mtime_ns == stamp
  assert len(list(tmp_path.iterdir())) == 1


def test_cache_dir_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("HSJAX_CACHE", str(tmp_path))
  assert synthetic_lib.default_cache_dir() == str(tmp_path / "sequences")


def test_sequence_images_masks_depth_agree(small_sequence):
  """mask >= 0.5 exactly where depth is valid, in the training and the held-out views."""
  for seq in [small_sequence, *small_sequence.eval_views, small_sequence.novel_pose]:
    masks, depth = np.asarray(seq.masks), np.asarray(seq.depth)
    np.testing.assert_array_equal(depth > 0, masks >= 0.5)
    assert np.all(masks.reshape(len(seq), -1).max(1) == 1.0)  # the person is in every frame
    images = np.asarray(seq.images)
    grey = np.asarray(synthetic_lib.PLAIN_BACKGROUND, np.float32)
    np.testing.assert_allclose(images[masks == 0], np.broadcast_to(grey, images[masks == 0]
                                                                   .shape), atol=1 / 255)
  assert small_sequence.depth_kind == "metric"
  assert len(small_sequence.eval_views) == 2
  assert small_sequence.eval_views[0].hmr is small_sequence.hmr


def test_sequence_frame_accessor(small_sequence):
  f = small_sequence.frame(2)
  np.testing.assert_array_equal(f["image"], small_sequence.images[2])
  np.testing.assert_array_equal(f["gt_body_pose"], small_sequence.gt.body_pose[2])
  assert f["K"].shape == (3, 3) and f["world_to_cam"].shape == (4, 4)
  assert len(small_sequence) == 8
  part = small_sequence.slice(2, 6, 2)
  assert len(part) == 2 and part.fps == small_sequence.fps / 2
  np.testing.assert_array_equal(part.images[1], small_sequence.images[4])
  np.testing.assert_array_equal(part.eval_views[0].images[1],
                                small_sequence.eval_views[0].images[4])


def test_relative_depth_is_affine_and_flagged(small_body, small_sequence):
  rel = synthetic_sequence(seed=3, body_model=small_body, cache_dir=False, depth="relative",
                           **SMALL)
  assert rel.depth_kind == "relative"
  valid = small_sequence.depth > 0
  np.testing.assert_array_equal(rel.depth != 0, valid)
  # Per frame, relative depth is an affine function of metric depth.
  for t in range(len(rel)):
    x, y = small_sequence.depth[t][valid[t]], rel.depth[t][valid[t]]
    coef = np.polyfit(x, y, 1)
    np.testing.assert_allclose(np.polyval(coef, x), y, atol=1e-3)
  none = synthetic_sequence(seed=3, body_model=small_body, cache_dir=False, depth="none",
                            **SMALL)
  assert none.depth is None and none.depth_kind is None


def test_textured_background_and_moving_camera(small_body):
  seq = synthetic_sequence(seed=1, body_model=small_body, cache_dir=False, background="textured",
                           camera_orbit=20.0, **SMALL)
  bg = seq.images[0][seq.masks[0] == 0]
  assert bg.std() > 0.03  # not a flat colour
  centres = np.asarray([Camera(K=seq.cameras.K[t], world_to_cam=seq.cameras.world_to_cam[t],
                               width=64, height=64).center for t in (0, 7)])
  assert np.linalg.norm(centres[0] - centres[1]) > 0.1


def test_generator_rejects_unknown_settings(small_body):
  with pytest.raises(ValueError, match="unknown synthetic sequence"):
    synthetic_sequence("nope", body_model=small_body, cache_dir=False)
  with pytest.raises(ValueError, match="unknown setting"):
    synthetic_sequence(body_model=small_body, cache_dir=False, fov=3)
  with pytest.raises(ValueError, match="depth must be one of"):
    synthetic_sequence(body_model=small_body, cache_dir=False, depth="fake")
  with pytest.raises(ValueError, match="unknown HMR noise preset"):
    synthetic_sequence(body_model=small_body, cache_dir=False, hmr_noise="awful")
  with pytest.raises(ValueError, match="unknown motion"):
    synthetic_sequence(body_model=small_body, cache_dir=False, motion="moonwalk", **SMALL)


# ------------------------------------------------------------------------------------------
# The default sequence (embedded default body, cached on disk after the first run).


@pytest.fixture(scope="module")
def default_sequence():
  return synthetic_sequence("default")


def _joints(params, num_frames):
  model = body_lib.load_body_model()
  _, joints = body_lib.pose_frames_host(model, params)
  assert joints.shape == (num_frames, 24, 3)
  return joints


def test_default_sequence_layout(default_sequence):
  seq = default_sequence
  assert len(seq) == 60 and seq.images.shape == (60, 256, 256, 3) and seq.fps == 30.0
  assert len(seq.eval_views) == 4 and seq.novel_pose is not None
  assert seq.depth_kind == "metric"
  np.testing.assert_array_equal(seq.cameras.world_to_cam[0], seq.cameras.world_to_cam[-1])
  masks = np.asarray(seq.masks)
  rows = np.nonzero(masks.max(axis=(0, 2)) >= 0.5)[0]
  # The person fills a good part of the frame over the clip.
  assert 0.6 * 256 < rows.max() - rows.min() < 256
  np.testing.assert_array_equal(np.asarray(seq.depth) > 0, masks >= 0.5)


def test_default_depth_at_joints_matches_joint_depth(default_sequence):
  """The mesh depth at a torso joint's pixel lies just in front of the joint (body surface)."""
  seq = default_sequence
  joints = _joints(seq.gt, len(seq))
  torso = [0, 3, 6, 9, 12]  # pelvis, spine1-3, neck: inside the trunk
  gaps = []
  for t in range(0, len(seq), 5):
    cam = Camera(K=seq.cameras.K[t], world_to_cam=seq.cameras.world_to_cam[t], width=256,
                 height=256)
    w2c = np.asarray(cam.world_to_cam)
    p = joints[t, torso] @ w2c[:3, :3].T + w2c[:3, 3]
    uv = p @ np.asarray(cam.K).T
    uv = uv[:, :2] / uv[:, 2:]
    depth = seq.depth[t]
    for (u, v), z in zip(uv, p[:, 2]):
      d = depth[int(v), int(u)]
      if d > 0:
        gaps.append(z - d)
  gaps = np.array(gaps)
  assert len(gaps) > 40
  # Never behind the joint; usually the front of the trunk (the spine joints sit nearer the
  # back of a ~0.25 m deep trunk), further in front only where an arm crosses the trunk.
  assert np.all(gaps > 0.0)
  assert 0.04 < np.median(gaps) < 0.2
  assert np.mean(gaps < 0.22) > 0.85


def test_hmr2_like_errors_in_published_range(default_sequence):
  """hmr2_like on the default sequence: MPJPE 70-110 mm, PA-MPJPE 45-65, root >= 150 mm."""
  seq = default_sequence
  gt = _joints(seq.gt, len(seq))
  hmr = _joints(seq.hmr, len(seq))
  mpjpe, pa_mpjpe, root = metrics.mpjpe(hmr, gt), metrics.pa_mpjpe(hmr, gt), metrics.root_error(
      hmr, gt)
  assert 70 <= mpjpe <= 110, mpjpe
  assert 45 <= pa_mpjpe <= 65, pa_mpjpe
  assert root >= 150, root
  assert seq.metadata["hmr_noise"] == dataclasses.asdict(HMR_NOISE_PRESETS["hmr2_like"])


# ------------------------------------------------------------------------------------------
# Simulated HMR


def _gt_params(num_frames=40):
  motion = motions_lib.parametric_motion("dance", num_frames)
  rng = np.random.default_rng(0)
  return body_lib.SMPLParams(betas=rng.normal(size=10).astype(np.float32),
                             body_pose=motion.body_pose, global_orient=motion.global_orient,
                             transl=np.asarray(motion.transl) + [0.0, 0.9, 0.0])


def _cams(num_frames):
  w2c = np.repeat(look_at([0, 1.2, 3.0], [0, 0.9, 0])[None], num_frames, 0)
  k = np.repeat(intrinsics(500.0, 256, 256)[None], num_frames, 0)
  return Camera(K=k, world_to_cam=w2c, width=256, height=256)


def test_simulate_hmr_none_is_identity_and_seeded():
  gt = _gt_params()
  cams = _cams(40)
  same = simulate_hmr(gt, cams, "none", seed=0)
  np.testing.assert_allclose(same.body_pose, gt.body_pose, atol=1e-5)
  np.testing.assert_allclose(same.transl, gt.transl, atol=1e-5)
  np.testing.assert_allclose(same.betas, gt.betas, atol=1e-6)
  a = simulate_hmr(gt, cams, "hmr2_like", seed=1)
  b = simulate_hmr(gt, cams, "hmr2_like", seed=1)
  np.testing.assert_array_equal(a.body_pose, b.body_pose)
  assert not np.allclose(simulate_hmr(gt, cams, "hmr2_like", seed=2).body_pose, a.body_pose)


def test_simulate_hmr_error_structure():
  """Distal joints are noisier; the root moves along the camera ray (depth ambiguity)."""
  gt = _gt_params(120)
  cams = _cams(120)
  est = simulate_hmr(gt, cams, "hmr2_like", seed=0)
  rel = (Rotation.from_rotvec(np.asarray(gt.body_pose).reshape(-1, 3)).inv()
         * Rotation.from_rotvec(np.asarray(est.body_pose).reshape(-1, 3)))
  angle = rel.magnitude().reshape(120, 23).mean(0)
  names = body_lib.SMPL_JOINT_NAMES[1:]
  wrists = np.mean([angle[names.index(n)] for n in ("left_wrist", "right_wrist")])
  spine = np.mean([angle[names.index(n)] for n in ("spine1", "spine2")])
  assert wrists > 1.4 * spine
  # The root's camera-space position scales along its ray: depth error >> lateral error.
  w2c = np.asarray(cams.world_to_cam[0], np.float64)
  p_gt = np.asarray(gt.transl) @ w2c[:3, :3].T + w2c[:3, 3]
  p_est = np.asarray(est.transl) @ w2c[:3, :3].T + w2c[:3, 3]
  depth_err = np.abs(p_est[:, 2] - p_gt[:, 2]).mean()
  uv_gt, uv_est = p_gt[:, :2] / p_gt[:, 2:], p_est[:, :2] / p_est[:, 2:]
  lateral = np.linalg.norm(uv_est - uv_gt, axis=1).mean() * p_gt[:, 2].mean()
  assert depth_err > 0.15 and depth_err > 5 * lateral
  assert np.abs(est.betas - gt.betas).mean() > 0.3


def test_presets_are_ordered(small_body):
  """Errors grow none < mild < hmr2_like < hard (capsule body, one motion, fixed seed)."""
  gt = _gt_params(40)
  cams = _cams(40)
  _, j_gt = body_lib.pose_frames_host(small_body, gt)
  errs = []
  for name in ("none", "mild", "hmr2_like", "hard"):
    est = simulate_hmr(gt, cams, name, seed=0, model=small_body)
    _, j = body_lib.pose_frames_host(small_body, est)
    errs.append((metrics.mpjpe(j, j_gt), metrics.pa_mpjpe(j, j_gt), metrics.root_error(j, j_gt)))
  errs = np.array(errs)
  assert np.all(errs[0] < 1.0)
  assert np.all(np.diff(errs, axis=0) > 0)


def test_pa_mpjpe_helper_against_brute_force():
  """Procrustes alignment is the least-squares similarity (no random similarity beats it)."""
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(24, 3))
  rot = Rotation.random(random_state=1).as_matrix()
  pred = 1.3 * gt @ rot.T + [0.5, -1.0, 2.0] + 0.01 * rng.normal(size=(24, 3))
  aligned = metrics.procrustes_align(pred, gt)
  best = np.linalg.norm(aligned - gt, axis=1).mean()
  assert best < 0.02
  for _ in range(50):
    r = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    s = rng.uniform(0.5, 1.5)
    trial = s * (pred - pred.mean(0)) @ r.T + gt.mean(0)
    assert ((trial - gt) ** 2).sum() >= ((aligned - gt) ** 2).sum() - 1e-9


# ------------------------------------------------------------------------------------------
# Motions


@pytest.mark.parametrize("name", sorted(motions_lib.PARAMETRIC_MOTIONS))
def test_parametric_motions_are_smooth_and_within_joint_limits(name):
  motion = motions_lib.parametric_motion(name, 90, 30.0)
  assert motion.body_pose.shape == (90, 23, 3) and motion.fps == 30.0
  angles = np.linalg.norm(np.asarray(motion.body_pose), axis=-1)  # [T, 23]
  for j, joint in enumerate(body_lib.SMPL_JOINT_NAMES[1:]):
    assert angles[:, j].max() <= motions_lib.JOINT_LIMITS[joint], joint
  # Smooth: frame-to-frame rotation change below 0.25 rad (7.5 rad/s at 30 fps) everywhere.
  full = np.concatenate([motion.global_orient[:, None], motion.body_pose], 1)
  r = Rotation.from_rotvec(full.reshape(-1, 3))
  r = r.as_matrix().reshape(90, 24, 3, 3)
  step = Rotation.from_matrix((np.swapaxes(r[:-1], -1, -2) @ r[1:]).reshape(-1, 3, 3))
  assert step.magnitude().max() < 0.25
  assert np.abs(np.diff(motion.transl, axis=0)).max() < 0.05  # < 1.5 m/s


def test_motion_library_has_the_requested_motions():
  wanted = {"walk_in_place", "walk_path", "turn_around", "squats", "arm_raises",
            "jumping_jacks", "dance"}
  assert wanted <= set(motions_lib.PARAMETRIC_MOTIONS)
  turn = motions_lib.parametric_motion("turn_around", 60)
  from hsjax.motion import heading_angle  # pylint: disable=g-import-not-at-top
  heading = np.unwrap(heading_angle(np.asarray(turn.global_orient)))
  assert abs(abs(heading[-1] - heading[0]) - 2 * np.pi) < 0.05


def test_fit_length_loops_cycles_and_ping_pongs_others():
  walk = motions_lib.get_motion("walk", 100)  # a 39-frame captured cycle
  assert walk.num_frames == 100
  speed = np.linalg.norm(np.diff(np.asarray(walk.transl)[:, [0, 2]], axis=0), axis=1)
  assert speed.max() < 3 * np.median(speed)  # no jump back at the cycle seam
  short = motions_lib.parametric_motion("squats", 10)
  long = motions_lib.fit_length(short, 25)
  np.testing.assert_array_equal(long.body_pose[10], short.body_pose[8])


def test_simulate_hmr_outliers_and_bad_shapes():
  gt = _gt_params(30)
  cams = _cams(30)
  noise = dataclasses.replace(HMR_NOISE_PRESETS["none"], outlier_prob=1.0, outlier_orient=1.0)
  est = simulate_hmr(gt, cams, noise, seed=0)
  err = (Rotation.from_rotvec(gt.global_orient).inv()
         * Rotation.from_rotvec(est.global_orient)).magnitude()
  np.testing.assert_allclose(err, 1.0, atol=1e-5)  # every frame is an outlier of 1 rad
  bad = dataclasses.replace(gt, body_pose=np.zeros((30, 23, 3, 3)))
  with pytest.raises(ValueError, match=r"expected body_pose \[T, 23, 3\]"):
    simulate_hmr(bad, cams, "mild", seed=0)
  with pytest.raises(ValueError, match=r"world_to_cam must be \[4, 4\] or \[T=30, 4, 4\]"):
    simulate_hmr(gt, _cams(29), "mild", seed=0)


def test_benchmark_presets_move_in_at_least_six_real_motions():
  """The named benchmark sequences use captured clips; parametric ones are `param_*` extras."""
  real = set(motion_pkg.builtin_motions())
  used = {cfg.motion for cfg in synthetic_lib.PRESETS.values() if cfg.motion in real}
  assert len(used) >= 6, used
  assert synthetic_lib.PRESETS["default"].motion in real
  for name, cfg in synthetic_lib.PRESETS.items():
    if cfg.motion in motions_lib.PARAMETRIC_MOTIONS:
      assert name.startswith("param_"), name
