"""Tests of hsjax.io and hsjax.report: the files of a run directory."""

import os
import pickle
import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import jax
import numpy as np
import pytest
import scipy.sparse

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import evaluation
from hsjax import io as io_lib
from hsjax import rotations_np
from hsjax.report import figures
from hsjax.report import run_dir
from hsjax.report import tables
from hsjax.report import video as video_lib
from hsjax.camera import Camera
from hsjax.camera import project_points
from hsjax.data import synthetic_sequence

# SMPL parameters round-tripped through smplx: float32 forward passes of two libraries.
TOL_M = 1e-4


def decode_video(path: str, height: int, width: int) -> np.ndarray:
  """[F, H, W, 3] uint8 frames of an MP4, decoded by the ffmpeg binary of imageio-ffmpeg.

  (imageio's own reader leaves its pipes open, which pytest reports as ResourceWarnings.)
  """
  raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path, "-f",
                        "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True
                       ).stdout
  return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model()


def _random_params(seed: int, frames: int, num_betas: int) -> body_lib.SMPLParams:
  rng = np.random.default_rng(seed)
  return body_lib.SMPLParams(
      betas=rng.normal(size=num_betas).astype(np.float32),
      body_pose=rng.normal(scale=0.4, size=(frames, 23, 3)).astype(np.float32),
      global_orient=rng.normal(scale=1.0, size=(frames, 3)).astype(np.float32),
      transl=rng.normal(scale=0.5, size=(frames, 3)).astype(np.float32))


def test_smpl_npz_matches_smplx(tmp_path, body_model):
  """smplx.SMPL fed the saved arrays as they are gives hsjax.body_forward's vertices.

  The model is the embedded default body written as the plain-numpy SMPL pickle smplx reads.
  """
  smplx = pytest.importorskip("smplx")
  torch = pytest.importorskip("torch")
  fields = body_lib.read_body_file(body_lib.default_body_path())
  data = {k: np.asarray(fields[k]) for k in ("v_template", "shapedirs", "posedirs",
                                              "weights", "kintree_table", "f")}
  data["J_regressor"] = scipy.sparse.csc_matrix(np.asarray(fields["J_regressor"]))
  pkl = tmp_path / "SMPL_NEUTRAL.pkl"
  with open(pkl, "wb") as f:
    pickle.dump(data, f, protocol=2)

  params = _random_params(0, frames=3, num_betas=body_model.num_betas)
  path = str(tmp_path / "smpl_refined.npz")
  io_lib.save_smpl_npz(path, params, fps=30.0)
  saved = dict(np.load(path))
  assert saved["betas"].shape == (1, body_model.num_betas)
  assert saved["body_pose"].shape == (3, 69) and saved["global_orient"].shape == (3, 3)
  assert saved["transl"].shape == (3, 3)

  model = smplx.SMPL(model_path=str(pkl), num_betas=body_model.num_betas)
  with torch.no_grad():
    out = model(**{k: torch.from_numpy(saved[k]) for k in ("betas", "body_pose",
                                                             "global_orient", "transl")})
  ref = jax.jit(body_lib.body_forward)(body_model, params.betas, params.body_pose,
                                        params.global_orient, params.transl)
  np.testing.assert_allclose(out.vertices.numpy(), np.asarray(ref.vertices), atol=TOL_M)

  back = io_lib.load_smpl_npz(path)
  for field in ("betas", "body_pose", "global_orient", "transl"):
    np.testing.assert_array_equal(getattr(back, field), getattr(params, field))


def test_load_smpl_npz_names_bad_field(tmp_path):
  path = str(tmp_path / "bad.npz")
  np.savez(path, betas=np.zeros((1, 10)), global_orient=np.zeros((4, 3)),
           body_pose=np.zeros((4, 72)), transl=np.zeros((4, 3)))
  with pytest.raises(ValueError, match=r"bad.npz: field 'body_pose' must be \[T, 69\]"):
    io_lib.load_smpl_npz(path)
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    io_lib.load_smpl_npz(str(tmp_path / "missing.npz"))


@pytest.mark.parametrize("nonrigid", [False, True])
def test_avatar_npz_round_trip(tmp_path, body_model, nonrigid):
  avatar = avatar_lib.init_avatar(jax.random.key(1), body_model, 64, sh_degree=2,
                                  learn_skinning=nonrigid, nonrigid=nonrigid)
  path = str(tmp_path / "avatar.npz")
  io_lib.save_avatar(path, avatar)
  back = io_lib.load_avatar(path)
  assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(avatar)
  for a, b in zip(jax.tree_util.tree_leaves(avatar), jax.tree_util.tree_leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.asarray(b).dtype
  assert (back.sh_degree, back.learn_skinning) == (2, nonrigid)
  assert back.nonrigid_config == avatar.nonrigid_config


def test_load_avatar_rejects_other_npz(tmp_path):
  path = str(tmp_path / "x.npz")
  np.savez(path, means=np.zeros((3, 3)))
  with pytest.raises(ValueError, match="x.npz: not an hsjax avatar file"):
    io_lib.load_avatar(path)


# ------------------------------------------------------------------------------------------
# Pictures, tables, videos


def test_mask_overlay_colours():
  alpha = np.array([[1.0, 0.0, 1.0, 0.0]])
  mask = np.array([[1.0, 1.0, 0.0, 0.0]])
  out = figures.mask_overlay(alpha, mask)
  np.testing.assert_allclose(out[0, 0], [1, 1, 1])  # both
  np.testing.assert_allclose(out[0, 1], [1, 0, 0])  # target only: missed
  np.testing.assert_allclose(out[0, 2], [0, 0.3, 1])  # render only: spill
  np.testing.assert_allclose(out[0, 3], [0, 0, 0])


def test_error_map_scale():
  target = np.zeros((1, 3, 3), np.float32)
  render = np.array([[[0, 0, 0], [0.125, 0.125, 0.125], [1, 1, 1]]], np.float32)
  out = figures.error_map(render, target, vmax=0.25)
  colors = figures._ERROR_COLORS  # pylint: disable=protected-access
  np.testing.assert_allclose(out[0, 0], colors[0])  # no error: the darkest colour
  np.testing.assert_allclose(out[0, 1], colors[2])  # half the scale: the middle stop
  np.testing.assert_allclose(out[0, 2], colors[-1])  # beyond the scale: clipped


def test_orbit_cameras_look_at_targets():
  targets = np.array([[0.0, 1.0, 0.0], [1.0, 0.9, -2.0], [0.5, 1.1, 3.0], [0.0, 1.0, 1.0]])
  k = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]], np.float32)
  cams = video_lib.orbit_cameras(targets, k, 64, 48, distance=3.0, camera_height=1.5)
  for i, target in enumerate(targets):
    cam = jax.tree_util.tree_map(lambda x, i=i: x[i], cams)
    uv, z = project_points(cam, target)
    np.testing.assert_allclose(np.asarray(uv), [32.0, 24.0], atol=1e-3)  # image centre
    centre = np.asarray(cam.center)
    assert centre[1] == pytest.approx(1.5, abs=1e-5)
    assert np.linalg.norm((centre - target)[[0, 2]]) == pytest.approx(3.0, abs=1e-4)
    assert float(z) > 0
  # One turn: azimuths 0, 90, 180, 270 degrees. Frame 0 in front (+z), frame 2 behind.
  c0 = np.asarray(jax.tree_util.tree_map(lambda x: x[0], cams).center)
  c2 = np.asarray(jax.tree_util.tree_map(lambda x: x[2], cams).center)
  assert c0[2] - targets[0, 2] == pytest.approx(3.0, abs=1e-4)
  assert c2[2] - targets[2, 2] == pytest.approx(-3.0, abs=1e-4)


@pytest.mark.parametrize("up", ["+y", "-y"])
def test_orbit_cameras_keep_the_world_vertical_up_in_the_image(up):
  """A video fit's world is an OpenCV camera's frame (-y up): its orbit must not turn over."""
  sign = 1.0 if up == "+y" else -1.0
  targets = np.array([[0.0, sign * 1.0, 4.0]] * 4)
  k = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]], np.float32)
  cams = video_lib.orbit_cameras(targets, k, 64, 48, distance=3.0, camera_height=1.0, up=up)
  above = targets[0] + np.array([0.0, sign * 0.5, 0.0])  # half a metre higher
  for i in range(4):
    cam = jax.tree_util.tree_map(lambda x, i=i: x[i], cams)
    uv, _ = project_points(cam, above)
    assert float(uv[1]) < 24.0  # above the image centre
    assert np.asarray(cam.center)[1] == pytest.approx(sign * 1.0, abs=1e-5)
  c0 = np.asarray(jax.tree_util.tree_map(lambda x: x[0], cams).center)
  assert c0[2] - targets[0, 2] == pytest.approx(sign * 3.0, abs=1e-4)  # -y: the camera's side
  with pytest.raises(ValueError, match="up must be"):
    video_lib.orbit_cameras(targets, k, 64, 48, distance=3.0, camera_height=1.0, up="z")


def test_write_video_frames_and_padding(tmp_path):
  frames = [np.full((30, 40, 3), i / 10.0, np.float32) for i in range(7)]
  path = str(tmp_path / "v.mp4")
  video_lib.write_video(path, frames, fps=10)
  video = decode_video(path, 32, 48)  # padded to multiples of 16
  assert video.shape == (7, 32, 48, 3)
  last = video[6]
  assert abs(float(last[:30, :40].mean()) - 0.6 * 255) < 6  # content kept, not rescaled
  assert float(last[31:, :].mean()) < 10  # the padding is black


def test_plot_pose_errors(tmp_path):
  per_frame = {name: {k: list(np.linspace(10, 50, 20) * s) for k in ("mpjpe", "pa_mpjpe",
                                                                        "root_error")}
               for name, s in (("hmr", 2.0), ("refined", 1.0))}
  path = str(tmp_path / "p.png")
  figures.plot_pose_errors(path, per_frame)
  img = iio.imread(path)
  assert img.shape == (780, 900, 3)
  red = np.sum((img[..., 0] > 200) & (img[..., 1] < 80))
  green = np.sum((img[..., 1] > 140) & (img[..., 0] < 60))
  assert red > 100 and green > 100


def test_tables():
  pose = {"hmr": {"mpjpe": 100.0, "pa_mpjpe": 50.0}, "refined": {"mpjpe": 60.0,
                                                                   "pa_mpjpe": 45.0},
          "improvement_pct": {"mpjpe": 40.0, "pa_mpjpe": 10.0}}
  text = tables.pose_table(pose)
  assert "| HMR initialisation | 100.0 | 50.0 |" in text
  assert "| improvement | +40.0 % | +10.0 % |" in text
  rows = [("HMR", {"pose": {"refined": {"mpjpe": 100.0}}}),
          ("joint", {"pose": {"refined": {"mpjpe": 60.0, "pa_mpjpe": 45.0}},
                     "novel_view": {"psnr": 25.123, "ssim": 0.9, "lpips": None}})]
  table = tables.ablation_table(rows)
  lines = table.splitlines()
  assert len(lines) == 4
  assert lines[2].startswith("| HMR | 100.0 | n/a |")
  assert "| 25.12 | 0.9000 | n/a |" in lines[3]


# ------------------------------------------------------------------------------------------
# A whole run directory (no fit: a fresh avatar and the HMR poses stand in for a result)


def test_write_run_writes_every_output(tmp_path, body_model):
  seq = synthetic_sequence("default", seed=0, num_frames=4, image_size=32, num_eval_views=1,
                           num_novel_pose=2, cache_dir=str(tmp_path / "cache"),
                           body_model=body_model)
  avatar = avatar_lib.init_avatar(jax.random.key(0), body_model, 300)
  result = evaluation.evaluate_run(body_model, seq, avatar, seq.hmr, tile_capacity=64,
                                   use_lpips=False)
  run = str(tmp_path / "run")
  files = run_dir.write_run(run, body_model=body_model, sequence=seq, avatar=avatar,
                            poses=seq.hmr, evaluation_result=result, history={"total": [1.0]},
                            fit_summary={"steps": 1, "time_s": 0.1, "final_loss": 1.0},
                            tile_capacity=64, num_panels=2, orbit_frames=5)
  expected = {"metrics.json", "table.md", "history.json", "smpl_refined.npz", "smpl_hmr.npz",
              "avatar.npz", "avatar.ply", "pose_error.png", "panels/frame_0000.png",
              "panels/frame_0003.png", "train_view.mp4", "orbit.mp4"}
  assert expected == set(files)
  for name in expected:
    assert os.path.getsize(os.path.join(run, name)) > 0, name
  panel = iio.imread(os.path.join(run, "panels", "frame_0003.png"))
  assert panel.shape == (32 + 16, 5 * 32 + 4 * 2, 3)  # five labelled tiles with gaps
  with open(os.path.join(run, "table.md")) as f:
    table = f.read()
  assert "| HMR initialisation |" in table and "| novel view |" in table
  assert decode_video(os.path.join(run, "orbit.mp4"), 32, 32).shape[0] == 5


def _tilted_camera_frame_poses(num_betas: int, tilt_deg: float) -> body_lib.SMPLParams:
  """An upright body turning about the world's vertical, seen by a camera that looks down by
  ``tilt_deg`` and is rolled by 10°: the poses in the camera's own frame (a video fit's)."""
  from scipy.spatial.transform import Rotation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  # World (+y up) -> camera (OpenCV, y down): half a turn about x, then the tilt and the roll.
  world_to_cam = (Rotation.from_euler("xz", [-tilt_deg, 10.0], degrees=True).as_matrix()
                  @ np.diag([1.0, -1.0, -1.0]))
  yaws = Rotation.from_euler("y", np.linspace(0.0, 300.0, 6)[:, None], degrees=True).as_matrix()
  orient = Rotation.from_matrix(world_to_cam @ yaws).as_rotvec()
  return body_lib.SMPLParams(betas=np.zeros(num_betas, np.float32),
                             body_pose=np.zeros((6, 23, 3), np.float32),
                             global_orient=orient.astype(np.float32),
                             transl=np.array([[0.0, 0.3, 3.5]] * 6, np.float32))


def test_upright_transform_stands_the_body_up_or_keeps_the_camera_vertical(body_model):
  """The body's mean up axis becomes +y; beyond MAX_UPRIGHT_TILT_DEG the camera's vertical is
  kept (half a turn about x)."""
  poses = _tilted_camera_frame_poses(body_model.num_betas, tilt_deg=25.0)
  transform = body_lib.upright_transform(poses)
  np.testing.assert_allclose(transform[:3, :3] @ transform[:3, :3].T, np.eye(3), atol=1e-9)
  assert np.linalg.det(transform[:3, :3]) == pytest.approx(1.0)
  upright = body_lib.transform_params(body_model, poses, transform)
  np.testing.assert_allclose(body_lib.mean_up_axis(upright.global_orient), [0.0, 1.0, 0.0],
                             atol=1e-5)
  lying = _tilted_camera_frame_poses(body_model.num_betas, tilt_deg=60.0)
  np.testing.assert_allclose(body_lib.upright_transform(lying), np.diag([1.0, -1.0, -1.0, 1.0]),
                             atol=1e-12)


def test_orbit_of_a_video_world_turns_about_the_body_s_vertical(body_model):
  """With a camera that looks down, the orbit of a video fit keeps the standing body upright
  in every view: its up axis through the pelvis is the image's vertical centre line."""
  poses = _tilted_camera_frame_poses(body_model.num_betas, tilt_deg=25.0)
  k = np.array([[200.0, 0, 64], [0, 200.0, 48], [0, 0, 1]], np.float32)
  cameras = Camera(K=np.broadcast_to(k, (6, 3, 3)),
                   world_to_cam=np.broadcast_to(np.eye(4, dtype=np.float32), (6, 4, 4)),
                   width=128, height=96)
  orbit, orbit_poses = run_dir.orbit_views(body_model, poses, cameras, 12)
  assert orbit.world_to_cam.shape == (12, 4, 4)
  assert orbit_poses.body_pose.shape == (12, 23, 3)
  _, joints = body_lib.pose_frames_host(body_model, orbit_poses)
  body_up = rotations_np.axis_angle_to_matrix(orbit_poses.global_orient)[:, :, 1]
  for i in range(12):
    cam = jax.tree_util.tree_map(lambda x, i=i: x[i], orbit)
    uv, _ = project_points(cam, np.stack([joints[i, 0], joints[i, 0] + 0.5 * body_up[i]]))
    pelvis, above = np.asarray(uv)
    assert above[1] < pelvis[1] - 10.0  # half a metre up the body is higher in the image
    assert abs(above[0] - pelvis[0]) < 0.05  # ... straight above the pelvis
