"""The video front end: decoding, observations, correspondence, landmark fit, keypoint term.

Most tests need no detector (landmarks are made from known SMPL joints); those that run
MediaPipe skip with the reason when the ``video`` extra is missing.
"""

import os
import re
import subprocess
import sys
import types

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import body as body_lib
from hsjax import losses
from hsjax import video
from hsjax.camera import Camera
from hsjax.camera import intrinsics
from hsjax.video import correspondence
from hsjax.video import mediapipe_observer
from hsjax.video import observations as obs_lib

MEDIAPIPE_OK, MEDIAPIPE_REASON = video.mediapipe_available()


def _write_clip(path, frames, fps=10):
  w = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                         macro_block_size=1, ffmpeg_log_level="error")
  for f in frames:
    w.append_data(f)
  w.close()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_read_video_stride_range_and_resize(tmp_path):
  frames = np.zeros((12, 32, 48, 3), np.uint8)
  frames[:, :, :, 0] = (np.arange(12) * 20)[:, None, None]
  path = str(tmp_path / "clip.mp4")
  _write_clip(path, frames)
  clip = video.read_video(path, stride=2, start=1, end=9, long_side=24)
  assert clip.source_indices.tolist() == [1, 3, 5, 7]
  assert clip.frames.shape == (4, 16, 24, 3)
  assert clip.fps == pytest.approx(5.0)
  assert abs(int(clip.frames[2, 8, 12, 0]) - 100) < 12  # frame 5 has red 100
  assert len(video.read_video(path, max_frames=3)) == 3


# imageio-ffmpeg leaves its pipe to ffmpeg unclosed when ffmpeg refuses the file.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_read_video_bad_input(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such video"):
    video.read_video(str(tmp_path / "missing.mp4"))
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"not a video at all")
  with pytest.raises(ValueError, match="bad.mp4"):
    video.read_video(str(bad))
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  with pytest.raises(ValueError, match="empty.mp4"):
    video.read_video(str(empty))


def test_focal_from_fov_default_is_the_diagonal():
  assert video.focal_from_fov(640, 480, video.DEFAULT_DIAGONAL_FOV_DEG) == pytest.approx(800.0)
  cams = video.video_cameras(640, 480, 3)
  assert np.allclose(cams.world_to_cam, np.eye(4))
  assert cams.K.shape == (3, 3, 3) and cams.K[0, 0, 2] == 320


def test_video_fit_config_takes_the_video_settings_and_keeps_its_steps_within_the_schedule():
  config = video.video_fit_config()
  steps, warmup = video.VIDEO_SCHEDULE
  assert (config.steps, config.warmup_steps, config.fill_unseen_at) == (
      steps, warmup, video.VIDEO_FILL_UNSEEN_AT)
  assert config.loss_weights == video.VIDEO_LOSS_WEIGHTS
  assert (config.train_betas, config.downsample, config.person_crop, config.sh_degree) == (
      video.VIDEO_TRAIN_BETAS, video.VIDEO_DOWNSAMPLE, video.VIDEO_PERSON_CROP,
      video.VIDEO_SH_DEGREE)
  short = video.video_fit_config(steps=40)
  assert (short.steps, short.warmup_steps, short.fill_unseen_at) == (40, 40, 40)
  given = video.video_fit_config(steps=40, warmup_steps=5, sh_degree=1, rounds=2)
  assert (given.warmup_steps, given.fill_unseen_at, given.sh_degree, given.rounds) == (5, 40, 1, 2)


def test_correspondence_rows_sum_to_one_and_are_equivariant():
  for w in (correspondence.NAIVE_WEIGHTS, correspondence.CALIBRATED_WEIGHTS):
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert not np.any(w[~correspondence.support_mask()])
  rng = np.random.default_rng(0)
  lm = rng.normal(size=(33, 3)).astype(np.float32)
  rot = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
  a = correspondence.smpl_world_joints(lm)
  b = correspondence.smpl_world_joints(2.0 * lm @ rot.T + 1.0)
  assert np.allclose(2.0 * a @ rot.T + 1.0, b, atol=1e-4)


_SMPL_MIRROR = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20,
                23, 22)
_LANDMARK_MIRROR = (0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19,
                    22, 21, 24, 23, 26, 25, 28, 27, 30, 29, 32, 31)


def test_calibrated_weights_are_used_by_default_and_left_right_symmetric():
  """The calibration was fitted on mirrored samples too: a left joint's row is its right
  twin's, mirrored; and the default mapping is the calibrated one, not the naive one."""
  w = correspondence.CALIBRATED_WEIGHTS
  mirrored = w[list(_SMPL_MIRROR)][:, list(_LANDMARK_MIRROR)]
  limbs = [j for j in range(24) if _SMPL_MIRROR[j] != j]
  assert np.allclose(w[limbs], mirrored[limbs], atol=1e-4)
  assert not np.allclose(w, correspondence.NAIVE_WEIGHTS)
  lm = np.random.default_rng(3).uniform(0, 100, (33, 3)).astype(np.float32)
  assert np.allclose(video.smpl_keypoints(lm), video.smpl_keypoints(lm, w))
  # Corrections, not a remap: body joints move < 1 (in L1 of the weights; the wrists 0.76),
  # the hands, between pinky, index and thumb, the most (1.39).
  change = np.abs(w - correspondence.NAIVE_WEIGHTS).sum(axis=1)
  assert np.all(change[:22] < 1.0) and np.all(change < 1.5)


def test_fit_weights_recovers_a_known_combination():
  rng = np.random.default_rng(1)
  lm = rng.normal(size=(200, 33, 2))
  truth = correspondence.NAIVE_WEIGHTS.astype(np.float64).copy()
  truth[1] = 0.0
  truth[1, [23, 24, 25]] = [0.7, 0.2, 0.1]  # left hip: towards the other hip and the knee
  joints = np.einsum("jk,nkd->njd", truth, lm)
  w = correspondence.fit_weights(lm, joints, np.ones(200), ridge=1e-6)
  assert np.allclose(w[1], truth[1], atol=1e-3)


def test_keypoint_confidence_is_the_weakest_landmark():
  lm = np.zeros((33, 3), np.float32)
  lm[:, 2] = 1.0
  lm[25, 2] = 0.2  # left knee barely visible
  kp = video.smpl_keypoints(lm, correspondence.NAIVE_WEIGHTS)
  assert kp.shape == (24, 3)
  assert kp[4, 2] == pytest.approx(0.2)  # SMPL left knee
  assert kp[3, 2] == pytest.approx(correspondence.DERIVED_CONFIDENCE)  # spine1


def _box(x0, y0, x1, y1):
  return np.array([x0, y0, x1, y1], np.float32)


def test_box_tools():
  assert obs_lib.box_iou(_box(0, 0, 2, 2), _box(1, 0, 3, 2)) == pytest.approx(1 / 3)
  assert obs_lib.box_iou(_box(0, 0, 1, 1), _box(5, 5, 6, 6)) == 0.0
  assert obs_lib.crop_window(_box(40, 40, 60, 80), 100, 100) == (10, 20, 90, 100)
  assert obs_lib.describe_frames([3, 4, 5, 9, 11, 12]) == "3-5, 9, 11-12"


def _observations(t=4, h=20, w=30, detected=None):
  rng = np.random.default_rng(0)
  lm = rng.uniform(0, 20, size=(t, 33, 3)).astype(np.float32)
  lm[..., 2] = 0.9
  det = np.ones(t, bool) if detected is None else np.asarray(detected)
  masks = np.zeros((t, h, w), np.float32)
  masks[:, 5:15, 10:20] = 1.0
  lm[~det] = 0.0
  masks[~det] = 0.0
  return obs_lib.Observations(masks=masks, landmarks=lm,
                              world_landmarks=rng.normal(size=(t, 33, 3)).astype(np.float32),
                              boxes=np.tile(_box(10, 5, 20, 15), (t, 1)), detected=det,
                              frame_indices=np.arange(t) * 2, backend="test",
                              notes=("a note",))


def test_observations_roundtrip(tmp_path):
  obs = _observations()
  path = str(tmp_path / "observations.npz")
  obs.save(path)
  back = video.load_observations(path)
  assert np.allclose(back.landmarks, obs.landmarks) and back.notes == ("a note",)
  assert np.allclose(back.masks, obs.masks, atol=1 / 255)
  assert back.frame_indices.tolist() == [0, 2, 4, 6]
  np.savez(str(tmp_path / "broken.npz"), masks=obs.masks)
  with pytest.raises(ValueError, match="missing field"):
    video.load_observations(str(tmp_path / "broken.npz"))


def test_build_sequence_drops_and_lists_frames_without_a_person():
  obs = _observations(detected=[True, False, True, True])
  cams = video.video_cameras(30, 20, 4)
  frames = np.zeros((4, 20, 30, 3), np.uint8)
  model = body_lib.load_body_model("default")
  keep = video.usable_frames(obs)
  assert keep.tolist() == [True, False, True, True]
  init = body_lib.SMPLParams(betas=np.zeros(model.num_betas, np.float32),
                             body_pose=np.zeros((3, 23, 3), np.float32),
                             global_orient=np.zeros((3, 3), np.float32),
                             transl=np.zeros((3, 3), np.float32))
  seq, info = video.build_sequence("clip", frames, obs, cams, init,
                                   np.zeros((3, 24, 3), np.float32), fps=15.0)
  assert len(seq) == 3 and info["dropped"] == [2]
  assert "source frames 2" in info["message"]
  none = _observations(detected=[False] * 4)
  with pytest.raises(ValueError, match="no person found in any of the 4 frames"):
    video.build_sequence("clip", frames, none, cams, init, np.zeros((0, 24, 3)), fps=15.0)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_video_run_directory_gives_back_its_sequence(tmp_path):
  """experiments/view.py on a video run: the sequence is rebuilt from the run directory (the
  video decoded again, the cached observations and initialisation), nothing detected again."""
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
  import common  # pylint: disable=import-outside-toplevel
  frames = np.zeros((8, 20, 30, 3), np.uint8)
  frames[..., 1] = (np.arange(8) * 30)[:, None, None]
  clip = str(tmp_path / "clip.mp4")
  _write_clip(clip, frames)
  run = tmp_path / "run"
  run.mkdir()
  obs = _observations(detected=[True, False, True, True])  # source frames 0, 2, 4, 6
  obs.save(str(run / "observations.npz"))
  model = body_lib.load_body_model("default")
  init = body_lib.SMPLParams(betas=np.zeros(model.num_betas, np.float32),
                             body_pose=np.zeros((3, 23, 3), np.float32),
                             global_orient=np.zeros((3, 3), np.float32),
                             transl=np.tile(np.float32([0, 0, 3]), (3, 1)))
  from hsjax import io as io_lib  # pylint: disable=import-outside-toplevel
  io_lib.save_smpl_npz(str(run / "smpl_init.npz"), init, fps=5.0)
  (run / "video.json").write_text('{"focal": 40.0}')
  entry = {"path": clip, "stride": 2, "start": 0, "end": -1, "max_frames": 0, "long_side": 0}
  seq = common.load_video_run_sequence(str(run), entry)
  assert len(seq) == 3 and seq.metadata["frame_indices"] == [0, 4, 6]
  np.testing.assert_allclose(seq.images[1, 0, 0, 1], 120 / 255, atol=0.05)  # source frame 4
  assert float(seq.cameras.K[0, 0, 0]) == 40.0
  np.testing.assert_array_equal(seq.hmr.transl, init.transl)
  with pytest.raises(common.InputError, match="the file has changed since the run"):
    common.load_video_run_sequence(str(run), {**entry, "stride": 1})
  with pytest.raises(common.InputError, match="cannot be read again"):
    common.load_video_run_sequence(str(run), {**entry, "path": str(tmp_path / "moved.mp4")})
  (run / "video.json").unlink()
  with pytest.raises(common.InputError, match="video.json is missing"):
    common.load_video_run_sequence(str(run), entry)


def test_agreement_with_observations_is_perfect_on_its_own_render():
  """Masks rendered from the avatar and keypoints projected from the joints agree exactly;
  shifting the keypoints by 3 px shows as 3 px."""
  from hsjax import avatar as avatar_lib  # pylint: disable=import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=import-outside-toplevel
  model = body_lib.load_body_model("default")
  avatar = avatar_lib.init_avatar(jax.random.key(0), model, 800)
  poses = body_lib.SMPLParams(betas=np.zeros(model.num_betas, np.float32),
                              body_pose=np.zeros((2, 23, 3), np.float32),
                              global_orient=np.tile(np.float32([np.pi, 0, 0]), (2, 1)),
                              transl=np.tile(np.float32([0, 0.2, 3.0]), (2, 1)))
  cams = video.video_cameras(48, 64, 2, focal=60.0)
  alpha = evaluation.render_frames(avatar, model, poses, cams)["alpha"]
  joints, uv = _projected_targets(model, poses, np.asarray(cams.K[0]))
  assert np.all(joints[..., 2] > 0)
  seq, _ = video.build_sequence("own", np.zeros((2, 64, 48, 3), np.uint8),
                                _observations(t=2, h=64, w=48), cams, poses, uv, fps=10.0)
  seq.masks = np.asarray(alpha > 0.5, np.float32)
  agreement = video.agreement_with_observations(model, avatar, seq, poses)
  assert agreement["mask_iou"] == pytest.approx(1.0)
  assert agreement["keypoint_px_median"] == pytest.approx(0.0, abs=1e-3)
  seq.keypoints_2d = uv + np.float32([3.0, 0.0, 0.0])
  shifted = video.agreement_with_observations(model, avatar, seq, poses)
  assert shifted["keypoint_px_median"] == pytest.approx(3.0, abs=1e-3)


def _projected_targets(model, params, k):
  _, joints = body_lib.pose_frames_host(model, params)
  uvw = joints @ k.T
  uv = uvw[..., :2] / uvw[..., 2:]
  return joints, np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1).astype(np.float32)


def test_frames_where_the_world_torso_jumps_are_untrusted_and_take_interpolated_roots():
  """A body turning 10° a frame whose 3D torso flips by 180° in frames 4-5: those frames (and
  the neighbours that jump to them) are untrusted, and their root orientation is slerped
  from the trusted frames around them, back onto the smooth turn."""
  from hsjax import rotations_np  # pylint: disable=import-outside-toplevel
  from hsjax.motion.motion import resample_rotations  # pylint: disable=import-outside-toplevel
  from hsjax.video import init as init_lib  # pylint: disable=import-outside-toplevel
  t = 10
  yaw = np.radians(10.0 * np.arange(t))
  truth = np.stack([np.zeros(t), yaw, np.zeros(t)], -1)
  seen = truth.copy()
  seen[4:6, 1] += np.pi  # the flip
  valid = np.ones(t, bool)
  valid[8] = False  # an undetected frame is skipped, not judged
  untrusted = init_lib.untrusted_torso(seen, valid, 30.0)
  np.testing.assert_array_equal(np.flatnonzero(untrusted), [3, 4, 5, 6])
  known = np.flatnonzero(valid & ~untrusted)
  fixed = resample_rotations(seen[known], known, np.arange(t))  # as initial_guess does
  angle = np.linalg.norm(rotations_np.matrix_to_axis_angle(np.einsum(
      "tji,tjk->tik", rotations_np.axis_angle_to_matrix(fixed),
      rotations_np.axis_angle_to_matrix(truth))), axis=-1)
  assert np.degrees(angle[valid]).max() < 1e-3
  assert not init_lib.untrusted_torso(seen, valid, 0.0).any()  # 0 switches the rule off
  assert not init_lib.untrusted_torso(truth, valid, 30.0).any()


def test_landmark_fit_recovers_a_pose_from_exact_keypoints():
  """Perfect 2D keypoints and 3D directions of a known pose: the fit lands close to it."""
  model = body_lib.load_body_model("default")
  t = 3
  rng = np.random.default_rng(0)
  pose = np.zeros((t, 23, 3), np.float32)
  pose[:, 3, 0] = 0.6  # left knee bent
  pose[:, 15, 2] = -0.8  # left shoulder (joint 16) lowered
  pose += 0.05 * rng.normal(size=pose.shape).astype(np.float32)
  gt = body_lib.SMPLParams(betas=np.zeros(model.num_betas, np.float32), body_pose=pose,
                           global_orient=np.tile(np.array([np.pi, 0.0, 0.0], np.float32),
                                                 (t, 1)),
                           transl=np.tile(np.array([0.1, 0.2, 4.0], np.float32), (t, 1)))
  k = intrinsics(500.0, 256, 256)
  joints, kp = _projected_targets(model, gt, k)
  world = joints - joints[:, :1]
  params, report = video.fit_landmarks(model, kp, world, k,
                                       config=video.InitConfig(root_steps=60, steps=200))
  _, fitted = body_lib.pose_frames_host(model, params)
  err = np.linalg.norm((fitted - fitted[:, :1]) - (joints - joints[:, :1]), axis=-1).mean()
  assert err < 0.08, err  # metres, root-relative (the pose prior keeps a small bias)
  assert np.abs(fitted[:, 0] - joints[:, 0]).max() < 0.3
  assert all(np.isfinite(v) for v in report["terms"].values())


def test_landmark_fit_never_nan_with_invisible_frames():
  model = body_lib.load_body_model("default")
  kp = np.zeros((2, 24, 3), np.float32)  # nothing visible at all
  params, _ = video.fit_landmarks(model, kp, np.zeros((2, 24, 3), np.float32),
                                  intrinsics(300.0, 64, 64),
                                  config=video.InitConfig(root_steps=2, steps=3))
  for x in jax.tree_util.tree_leaves(params):
    assert np.all(np.isfinite(x))


def test_transform_params_moves_the_joints_rigidly():
  model = body_lib.load_body_model("default")
  rng = np.random.default_rng(2)
  p = body_lib.SMPLParams(betas=np.zeros(model.num_betas, np.float32),
                          body_pose=0.1 * rng.normal(size=(2, 23, 3)).astype(np.float32),
                          global_orient=rng.normal(size=(2, 3)).astype(np.float32),
                          transl=rng.normal(size=(2, 3)).astype(np.float32))
  m = np.eye(4, dtype=np.float32)
  m[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0] * np.sign(
      np.linalg.det(np.linalg.qr(rng.normal(size=(3, 3)))[0]))
  if np.linalg.det(m[:3, :3]) < 0:
    m[:3, 0] *= -1
  m[:3, 3] = [0.5, -1.0, 2.0]
  _, j0 = body_lib.pose_frames_host(model, p)
  _, j1 = body_lib.pose_frames_host(model, video.transform_params(model, p, m))
  assert np.allclose(j0 @ m[:3, :3].T + m[:3, 3], j1, atol=1e-4)


class _Ctx:
  def __init__(self, joints, camera):
    self.body = body_lib.BodyOutput(vertices=None, joints=joints, transforms=None, rotmats=None)
    self.camera = camera


def _frame(kp, conf):
  z = jnp.zeros((kp.shape[0], 4, 4))
  return losses.Frame(image=z[..., None], mask=z, depth=z, depth_K=None, depth_weight=0.0,
                      depth_is_metric=1.0, index=jnp.arange(kp.shape[0]), keypoints=kp,
                      keypoint_conf=conf)


def test_keypoint_term_zero_at_truth_robust_and_finite():
  k = jnp.asarray(intrinsics(100.0, 64, 64))[None]
  cam = Camera(K=k, world_to_cam=jnp.eye(4)[None], width=64, height=64)
  joints = jnp.asarray(np.random.default_rng(0).uniform(-0.3, 0.3, (1, 24, 3))) + jnp.array(
      [0.0, 0.0, 3.0])
  uv = jax.vmap(lambda c, j: __import__("hsjax").camera.project_points(c, j)[0])(cam, joints)
  ones = jnp.ones((1, 24))
  term = losses.keypoints_2d
  assert float(term(None, _frame(uv, ones), None, _Ctx(joints, cam))) == pytest.approx(0.0)
  far = float(term(None, _frame(uv + 1000.0, ones), None, _Ctx(joints, cam)))
  assert 0.99 < far <= 1.0  # saturates: one wrong landmark costs at most its weight
  zero = term(None, _frame(uv * jnp.nan, jnp.zeros((1, 24))), None, _Ctx(joints, cam))
  # NaN targets can only come with zero confidence (prepare_data zeroes them); the term
  # masks them anyway.
  assert float(zero) == 0.0
  g = jax.grad(lambda j: term(None, _frame(uv + 3.0, ones), None, _Ctx(j, cam)))(joints)
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_keypoint_term_is_off_by_default():
  assert losses.DEFAULT_LOSSES["keypoints_2d"][0] == 0.0
  assert dict(video.VIDEO_LOSS_WEIGHTS)["keypoints_2d"] > 0


@pytest.mark.skipif(not MEDIAPIPE_OK, reason=MEDIAPIPE_REASON)
def test_mediapipe_observes_a_rendered_person():
  from hsjax import data  # pylint: disable=import-outside-toplevel
  seq = data.synthetic_sequence("default", seed=0, num_frames=6, num_eval_views=0,
                                num_novel_pose=0, depth="none", cache_dir=False)
  frames = np.round(np.asarray(seq.images) * 255).astype(np.uint8)
  obs = video.MediaPipeObserver().observe(frames)
  assert obs.detected.all()
  gt = np.asarray(seq.masks) > 0.5
  iou = (np.logical_and(obs.masks > 0.5, gt).sum() / np.logical_or(obs.masks > 0.5, gt).sum())
  assert iou > 0.8
  assert np.all(np.isfinite(obs.landmarks)) and np.all(np.isfinite(obs.world_landmarks))
  blank = np.full((2, 128, 128, 3), 127, np.uint8)
  none = video.MediaPipeObserver().observe(blank)
  assert not none.detected.any() and np.all(none.landmarks == 0)


REAL_CLIP = os.path.join(os.path.dirname(__file__), "data", "real_video", "balance.mp4")


# ffmpeg's subprocess forks a process in which JAX (started by earlier tests) runs threads;
# the child execs ffmpeg at once, so JAX's fork warning does not apply.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.skipif(not MEDIAPIPE_OK, reason=MEDIAPIPE_REASON)
def test_real_clip_observed_and_initialised():
  """A camera-recorded clip (tests/data/real_video): one person found in every frame, and a
  landmark initialisation that reprojects onto the landmarks with a body of human size."""
  clip = video.read_video(REAL_CLIP, stride=2, long_side=512)
  assert clip.frames.shape == (50, 512, 288, 3)
  obs = video.MediaPipeObserver().observe(clip.frames)
  assert video.usable_frames(obs).all()
  area = obs.masks.reshape(len(obs), -1).mean(-1)
  assert np.all((area > 0.02) & (area < 0.2)), area  # the person, not the lab around them
  h, w = clip.frames.shape[1:3]
  cams = video.video_cameras(w, h, len(obs), focal=video.focal_from_fov(
      w, h, video.DEFAULT_DIAGONAL_FOV_DEG))
  body_model = body_lib.load_body_model("default")
  init, keypoints, _ = video.initialise(body_model, obs, cams)
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(init))
  out = body_lib.body_forward(body_model, jnp.broadcast_to(init.betas, (len(obs), 10)),
                              init.body_pose, init.global_orient, init.transl)
  joints = np.asarray(out.joints)
  uvw = np.einsum("tij,tkj->tki", np.asarray(cams.K), joints)
  error = np.linalg.norm(uvw[..., :2] / uvw[..., 2:] - keypoints[..., :2], axis=-1)
  assert np.median(error[keypoints[..., 2] > 0.5]) < 3.0  # px at 512 px (measured 1.4)
  rest = body_lib.body_forward(body_model, jnp.asarray(init.betas)[None],
                               jnp.zeros((1, 23, 3)), jnp.zeros((1, 3)), jnp.zeros((1, 3)))
  height = float(np.ptp(np.asarray(rest.vertices)[0, :, 1]))
  assert 1.45 < height < 2.05, height
  assert np.all((joints[:, 0, 2] > 1.5) & (joints[:, 0, 2] < 10.0))  # in front of the camera
  assert np.max(np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1)) < 0.1  # m per frame


# ------------------------------------------------------------------------------------------
# Bad input: several people, a person partly out of frame, a clip shorter than the batch.

_PERSON_A, _PERSON_B = 255, 128  # grey levels of the painted "people" the fake pose sees
_UV = np.random.default_rng(7).uniform(0.0, 1.0, (33, 2))
_UV[0], _UV[1] = (0.0, 0.0), (1.0, 1.0)  # the landmarks span the painted rectangle


class _FakePose:
  """Stands in for ``mp.solutions.pose.Pose``: "people" are rectangles of one grey level.

  The tracker (``static_image_mode=False``) reports person B in frames whose corner pixel is
  1 (as a real tracker jumps to somebody else), otherwise person A; the searcher (static)
  reports A when A is in the window it is given, else B. Landmarks span the rectangle.
  """

  def __init__(self, static):
    self.static = static

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def process(self, image):
    h, w = image.shape[:2]
    present = [v for v in (_PERSON_A, _PERSON_B) if np.any(image[..., 1] == v)]
    if not present:
      return types.SimpleNamespace(pose_landmarks=None, pose_world_landmarks=None,
                                   segmentation_mask=None)
    if self.static:
      who = present[0]
    else:
      who = _PERSON_B if (image[0, 0, 0] == 1 and _PERSON_B in present) else present[0]
    ys, xs = np.nonzero(image[..., 1] == who)
    x0, x1, y0, y1 = xs.min() / w, (xs.max() + 1) / w, ys.min() / h, (ys.max() + 1) / h
    pts = [types.SimpleNamespace(x=x0 + u * (x1 - x0), y=y0 + v * (y1 - y0), visibility=0.9)
           for u, v in _UV]
    world = [types.SimpleNamespace(x=u - 0.5, y=v - 0.5, z=0.0) for u, v in _UV]
    seg = (image[..., 1] == who).astype(np.float32)
    return types.SimpleNamespace(pose_landmarks=types.SimpleNamespace(landmark=pts),
                                 pose_world_landmarks=types.SimpleNamespace(landmark=world),
                                 segmentation_mask=seg)


def test_tracking_follows_the_first_person_when_the_detector_jumps(monkeypatch):
  """Two people; in frames 2-3 the tracker reports the other one, in frame 5 only the other
  one is in view: the observations keep following the first person (frames 2-3 re-found by a
  search around its last box), leave frame 5 out, list both in the notes, and hold no NaN."""
  monkeypatch.setattr(mediapipe_observer, "mediapipe_available", lambda: (True, ""))
  monkeypatch.setattr(video.MediaPipeObserver, "_pose", lambda self, static: _FakePose(static))
  t, h, w = 7, 120, 240
  frames = np.zeros((t, h, w, 3), np.uint8)
  for i in range(t):
    if i != 5:
      frames[i, 20:110, 30 + 2 * i:70 + 2 * i] = _PERSON_A  # walks slowly to the right
    frames[i, 25:115, 160:200] = _PERSON_B
  frames[[2, 3], 0, 0, 0] = 1  # the tracker jumps to B here
  obs = video.MediaPipeObserver(min_long_side=0).observe(frames)
  assert obs.detected.tolist() == [True, True, True, True, True, False, True]
  centres = 0.5 * (obs.boxes[obs.detected, 0] + obs.boxes[obs.detected, 2])
  assert np.all(centres < 100), centres  # always person A (x 30-82), never B (x 160-200)
  assert any("frames 2-3, 5" in n and "followed" in n for n in obs.notes), obs.notes
  assert np.all(obs.masks[5] == 0) and np.all(obs.landmarks[5] == 0)
  for x in (obs.masks, obs.landmarks, obs.world_landmarks, obs.boxes):
    assert np.all(np.isfinite(x))


def _rendered_frames(num_frames):
  from hsjax import data  # pylint: disable=import-outside-toplevel
  seq = data.synthetic_sequence("default", seed=0, num_frames=num_frames, num_eval_views=0,
                                num_novel_pose=0, depth="none")
  return seq, np.round(np.asarray(seq.images) * 255).astype(np.uint8)


@pytest.mark.skipif(not MEDIAPIPE_OK, reason=MEDIAPIPE_REASON)
def test_mediapipe_follows_one_of_two_people():
  """Two rendered people side by side (the clip and its reversal): MediaPipe's single-pose
  graph plus the box tracking report one person, on the same side in every frame."""
  _, frames = _rendered_frames(8)
  two = np.concatenate([frames, frames[::-1]], axis=2)  # [T, 256, 512, 3]
  obs = video.MediaPipeObserver().observe(two)
  assert obs.detected.sum() >= 6
  centres = 0.5 * (obs.boxes[obs.detected, 0] + obs.boxes[obs.detected, 2])
  assert np.all(centres < 256) or np.all(centres > 256), centres
  assert np.all(np.isfinite(obs.landmarks)) and np.all(np.isfinite(obs.world_landmarks))


@pytest.mark.skipif(not MEDIAPIPE_OK, reason=MEDIAPIPE_REASON)
def test_person_partly_out_of_frame_is_down_weighted_never_nan():
  """The legs cut off by the frame's bottom edge: landmarks below the edge keep at most 0.1
  visibility, the SMPL ankles and feet get low confidence, and the landmark fit is finite."""
  _, frames = _rendered_frames(6)
  top = np.ascontiguousarray(frames[:, :150])  # the body is ~40-230 px tall: knees down cut
  obs = video.MediaPipeObserver().observe(top)
  assert obs.detected.sum() >= 4
  lm = obs.landmarks[obs.detected]
  below = lm[..., 1] > 150
  assert below[:, [27, 28]].any()  # ankles guessed below the edge
  assert np.all(lm[..., 2][below] <= 0.1 + 1e-6)
  kp_all = video.smpl_keypoints(obs.landmarks)
  kp = kp_all[obs.detected]
  for joint, landmark in ((7, 27), (8, 28)):  # SMPL ankles <- BlazePose ankles
    assert np.all(kp[below[:, landmark], joint, 2] <= 0.1 + 1e-6)
  model = body_lib.load_body_model("default")
  world = video.smpl_world_joints(obs.world_landmarks)
  # Two frames and the settings of test_landmark_fit_never_nan_with_invisible_frames: one
  # compilation serves both.
  params, report = video.fit_landmarks(model, kp_all[:2], world[:2],
                                       intrinsics(300.0, 256, 150), valid=obs.detected[:2],
                                       config=video.InitConfig(root_steps=2, steps=3))
  for x in jax.tree_util.tree_leaves(params):
    assert np.all(np.isfinite(x))
  assert all(np.isfinite(v) for v in report["terms"].values())


# Starting a subprocess from this (multithreaded, MediaPipe-loaded) process makes an at-fork
# hook of a loaded library complain; the child is a fresh interpreter and is unaffected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_video_command_refuses_a_clip_shorter_than_the_batch(tmp_path):
  """Two frames and a batch of four: a one-line error naming the file, before detection."""
  path = str(tmp_path / "short.mp4")
  _write_clip(path, np.zeros((2, 32, 32, 3), np.uint8))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run([sys.executable, os.path.join(root, "experiments", "video.py"),
                           f"--video={path}", "--stride=1", "--batch_frames=4",
                           f"--output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, env=env, cwd=root, timeout=600,
                          check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert re.search(r"video\.py: error: --video: 2 frames decoded, fewer than "
                   r"--batch_frames=4", result.stderr), result.stderr[-2000:]
