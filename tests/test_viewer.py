"""The browser viewer's Python side: camera conversion, skinning reduction, the folder.

The page itself is tested in a real browser in ``test_viewer_browser.py``.
"""

import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.camera import look_at
from hsjax.camera import project_points
from hsjax.io.ply import read_vertex_ply
from hsjax.report import viewer

# Pixels: three.js's matrices reproduce hsjax's projection up to float32 rounding.
PROJECTION_TOL_PX = 1e-3
# The acceptance bound on the folder of a 300-frame, 50k-Gaussian avatar (without lib/).
MAX_VIEWER_BYTES = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model("default")


def _poses(num_betas: int, num_frames: int, seed: int = 0) -> body_lib.SMPLParams:
  rng = np.random.default_rng(seed)
  return body_lib.SMPLParams(
      betas=(0.5 * rng.standard_normal(num_betas)).astype(np.float32),
      body_pose=(0.35 * rng.standard_normal((num_frames, 23, 3))).astype(np.float32),
      global_orient=(0.5 * rng.standard_normal((num_frames, 3))).astype(np.float32),
      transl=(0.3 * rng.standard_normal((num_frames, 3))).astype(np.float32))


def test_camera_to_threejs_projects_like_hsjax():
  """OpenCV K / world_to_cam -> three.js matrices: same pixels (skew, off-centre, non-square)."""
  k = np.array([[310.0, 2.0, 150.0], [0.0, 290.0, 140.0], [0.0, 0.0, 1.0]], np.float32)
  camera = Camera(K=k, world_to_cam=look_at([1.0, 0.8, 3.0], [0.1, 0.2, 0.0]), width=320,
                  height=240)
  points = np.random.default_rng(0).uniform(-0.8, 0.8, (200, 3)).astype(np.float32)
  uv_hsjax, _ = project_points(camera, jnp.asarray(points))
  gl = viewer.camera_to_threejs(camera.K, camera.world_to_cam, camera.width, camera.height)
  uv_gl = viewer.project_threejs(gl, points, camera.width, camera.height)
  np.testing.assert_allclose(uv_gl, np.asarray(uv_hsjax), atol=PROJECTION_TOL_PX)


def test_camera_to_threejs_looks_down_minus_z():
  """three.js cameras look along their -z axis: the OpenCV forward (+z) maps onto it."""
  w2c = look_at([0.0, 1.0, 3.0], [0.0, 1.0, 0.0])
  gl = viewer.camera_to_threejs(np.eye(3), w2c, 2, 2)
  matrix_world = np.asarray(gl["matrix_world"]).reshape(4, 4)
  np.testing.assert_allclose(matrix_world[:3, 3], [0.0, 1.0, 3.0], atol=1e-6)
  np.testing.assert_allclose(-matrix_world[:3, 2], [0.0, 0.0, -1.0], atol=1e-6)  # forward
  np.testing.assert_allclose(matrix_world[:3, 1], [0.0, 1.0, 0.0], atol=1e-6)  # up


def test_reduce_skinning_keeps_top4_and_sums_to_255():
  rng = np.random.default_rng(1)
  w = rng.dirichlet(np.full(24, 0.3), size=500)
  joints, levels = viewer.reduce_skinning(w)
  assert joints.shape == levels.shape == (500, 4)
  np.testing.assert_array_equal(levels.astype(int).sum(1), 255)
  np.testing.assert_array_equal(joints, np.argsort(-w, 1, kind="stable")[:, :4])
  top = np.take_along_axis(w, joints.astype(int), 1)
  np.testing.assert_allclose(levels / 255, top / top.sum(1, keepdims=True), atol=1 / 255)


def test_reduce_skinning_is_exact_for_four_joints():
  """Weights on at most 4 joints in 8-bit steps survive unchanged."""
  w = np.zeros((3, 24))
  w[0, [2, 5, 9, 11]] = np.array([100, 80, 50, 25]) / 255
  w[1, 7] = 1.0
  w[2, [0, 23]] = np.array([128, 127]) / 255
  joints, levels = viewer.reduce_skinning(w)
  recon = np.zeros_like(w)
  np.put_along_axis(recon, joints.astype(int), levels / 255, 1)
  np.testing.assert_allclose(recon, w, atol=1e-12)


def test_viewer_skinning_matches_hsjax_deform(body_model):
  """The page's blend (top-4 8-bit weights, no pose offsets) lands within mm of deform()."""
  avatar = avatar_lib.init_avatar(jax.random.key(0), body_model, 1000, active_fraction=0.8)
  err = viewer.skinning_error(avatar, body_model, _poses(body_model.num_betas, 4))
  assert err["frames"] == 4
  assert err["mean_mm"] < 0.5, err
  assert err["p99_mm"] < 3.0, err
  assert err["cov_rel_mean"] < 0.05, err


def test_skin_like_viewer_is_lbs_with_rest_transforms(body_model):
  """Identity transforms leave the canonical means where they are."""
  means = np.random.default_rng(2).normal(size=(10, 3))
  joints, levels = viewer.reduce_skinning(np.random.default_rng(3).dirichlet(np.ones(24), 10))
  out, blended = viewer.skin_like_viewer(means, joints, levels, np.tile(np.eye(4), (24, 1, 1)))
  np.testing.assert_allclose(out, means, atol=1e-12)
  np.testing.assert_allclose(blended[..., :3], np.tile(np.eye(3), (10, 1, 1)), atol=1e-12)


def test_write_viewer_folder(body_model, tmp_path):
  avatar = avatar_lib.init_avatar(jax.random.key(1), body_model, 400, active_fraction=0.75)
  refined, hmr = _poses(body_model.num_betas, 5), _poses(body_model.num_betas, 5, seed=1)
  camera = Camera(K=np.array([[200, 0, 64], [0, 200, 48], [0, 0, 1]], np.float32),
                  world_to_cam=look_at([0, 0.3, 3], [0, 0, 0]), width=128, height=96)
  frames = np.random.default_rng(0).uniform(size=(5, 96, 128, 3)).astype(np.float32)
  out = str(tmp_path / "viewer")
  scene = viewer.write_viewer(out, avatar=avatar, body_model=body_model,
                              motions={"refined": (refined, 30.0), "hmr": (hmr, 30.0)},
                              camera=camera, frames=frames, measure=False)
  n = int(np.asarray(avatar.active).sum())
  assert scene["num_gaussians"] == n
  with open(os.path.join(out, "scene.json")) as f:
    assert json.load(f) == scene
  assert scene["default_motion"] == "refined"
  assert [m["name"] for m in scene["motions"]] == ["refined", "hmr"]
  columns, _ = read_vertex_ply(os.path.join(out, "avatar.ply"))
  assert len(columns["x"]) == n and "f_rest_0" not in columns
  assert os.path.getsize(os.path.join(out, "skinning.bin")) == n * 8
  for name in ("refined", "hmr"):
    data = np.fromfile(os.path.join(out, "motions", f"{name}.bin"), np.float32)
    assert data.shape == (5 * 24 * 12,)
  _, transforms = viewer.motion_transforms(body_model, hmr)
  np.testing.assert_array_equal(
      np.fromfile(os.path.join(out, "motions", "hmr.bin"), np.float32).reshape(5, 24, 3, 4),
      transforms[:, :, :3])
  assert len(scene["frames"]["files"]) == 5
  assert all(os.path.exists(os.path.join(out, f)) for f in scene["frames"]["files"])
  for path in ("index.html", "viewer.js", "lib/spark/spark.module.min.js", "lib/spark/LICENSE",
               "lib/three/build/three.module.js", "lib/three/LICENSE",
               "lib/three/examples/jsm/controls/OrbitControls.js"):
    assert os.path.exists(os.path.join(out, path)), path
  with open(os.path.join(out, "index.html")) as f:
    html = f.read()
  assert "http://" not in html and "https://" not in html  # nothing from a CDN


def test_write_viewer_rejects_bad_input(body_model, tmp_path):
  avatar = avatar_lib.init_avatar(jax.random.key(1), body_model, 100)
  camera = Camera(K=np.eye(3, dtype=np.float32), world_to_cam=np.eye(4, dtype=np.float32),
                  width=8, height=8)
  poses = _poses(body_model.num_betas, 3)
  with pytest.raises(ValueError, match="motion name"):
    viewer.write_viewer(str(tmp_path), avatar=avatar, body_model=body_model,
                        motions={"a/b": (poses, 30.0)}, camera=camera, measure=False)
  with pytest.raises(ValueError, match="2 input frames for a 3-frame"):
    viewer.write_viewer(str(tmp_path), avatar=avatar, body_model=body_model,
                        motions={"refined": (poses, 30.0)}, camera=camera, measure=False,
                        frames=np.zeros((2, 8, 8, 3)))


def test_viewer_size_300_frames_50k_gaussians(body_model, tmp_path):
  """The acceptance size: a 300-frame, 50k-Gaussian avatar (SH degree 1) under 20 MB."""
  avatar = avatar_lib.init_avatar(jax.random.key(0), body_model, 50_000, active_fraction=1.0)
  camera = Camera(K=np.eye(3, dtype=np.float32), world_to_cam=np.eye(4, dtype=np.float32),
                  width=256, height=256)
  out = str(tmp_path / "viewer")
  viewer.write_viewer(out, avatar=avatar, body_model=body_model,
                      motions={"refined": (_poses(body_model.num_betas, 300), 30.0)},
                      camera=camera, measure=False)
  size = viewer.folder_size(out)
  assert size < MAX_VIEWER_BYTES, size
  assert viewer.folder_size(out, exclude=()) > size + 4_000_000  # lib/ is left out


@pytest.mark.parametrize("video_world", [False, True])
def test_run_viewer_stands_the_body_up_as_the_camera_sees_it(body_model, monkeypatch,
                                                             video_world):
  """A video fit's world is the camera's frame (y down): the viewer turns the scene so that
  +y is up (the browser orbits about +y), and the first view still sees what the camera saw."""
  stand = np.array([np.pi, 0.0, 0.0], np.float32) if video_world else np.zeros(3, np.float32)
  w2c = (np.eye(4, dtype=np.float32) if video_world else look_at([0, 1.0, 4.0], [0, 0, 0]))
  poses = body_lib.SMPLParams(betas=np.zeros(body_model.num_betas, np.float32),
                              body_pose=np.zeros((2, 23, 3), np.float32),
                              global_orient=np.stack([stand] * 2),
                              transl=np.array([[0.1, 0.2, 4.0]] * 2, np.float32))
  cams = Camera(K=np.broadcast_to(np.array([[200, 0, 64], [0, 200, 48], [0, 0, 1]],
                                           np.float32), (2, 3, 3)),
                world_to_cam=np.stack([w2c] * 2), width=128, height=96)
  sequence = types.SimpleNamespace(cameras=cams, hmr=poses, fps=30.0)
  captured = {}
  monkeypatch.setattr(viewer, "write_viewer", lambda out, **kw: captured.update(kw))
  viewer.write_run_viewer("unused", body_model=body_model, sequence=sequence, avatar=None,
                          poses=poses, with_frames=False, measure=False)
  shown, _ = captured["motions"]["refined"]
  _, joints_before = body_lib.pose_frames_host(body_model, poses)
  _, joints_after = body_lib.pose_frames_host(body_model, shown)
  assert np.all(joints_after[:, 15, 1] > joints_after[:, 0, 1] + 0.3)  # head above pelvis
  cam0 = jax.tree_util.tree_map(lambda x: x[0], cams)
  uv_before, _ = project_points(cam0, jnp.asarray(joints_before[0]))
  uv_after, _ = project_points(captured["camera"], jnp.asarray(joints_after[0]))
  np.testing.assert_allclose(np.asarray(uv_after), np.asarray(uv_before), atol=1e-2)
