"""The benchmark suite: its splits, the motions it can take, and the metrics it reports."""

import types

import numpy as np
import pytest

from hsjax import body as body_lib
from hsjax import metrics
from hsjax import motion as motion_lib
from hsjax.data import synthetic_sequence
from hsjax.data.synthetic import suite
from hsjax.fit import align
from hsjax.fit import data as fit_data
from test_data_common import small_body  # pylint: disable=unused-import


def test_suite_has_disjoint_dev_and_test_splits_with_headline_sequences():
  dev, test = suite.split_sequences("dev"), suite.split_sequences("test")
  assert len(dev) + len(test) >= 16 and len(suite.split_sequences("all")) == len(suite.SUITE)
  assert not {(e.motion, e.seed) for e in dev} & {(e.motion, e.seed) for e in test}
  assert len({e.name for e in suite.SUITE}) == len(suite.SUITE)
  for split in (dev, test):
    assert sum(e.headline for e in split) >= len(split) // 2
    assert len({e.motion for e in split}) >= 6  # not only dance
    assert {e.hmr_noise for e in split} >= {"mild", "hmr2_like", "hard"}
    assert {e.depth for e in split} >= {"exact", "unidepth_like", "none"}
  # The reproduction of the punch failure is a dev sequence; the test split has its own punch.
  punch = [e for e in dev if e.motion == "punch"]
  assert punch and punch[0].seed == 4 and punch[0].headline
  assert any(e.motion == "punch" for e in test)
  with pytest.raises(ValueError, match="unknown benchmark split 'val'"):
    suite.split_sequences("val")


def test_synthetic_sequence_takes_a_motion_object_cached_by_content(small_body, tmp_path):
  clip = motion_lib.builtin_motion("kick", target_fps=30.0)
  small = dict(num_frames=4, image_size=32, num_eval_views=0, num_novel_pose=0,
               body_model=small_body, cache_dir=str(tmp_path))
  by_name = synthetic_sequence(seed=2, motion="kick", **small)
  by_object = synthetic_sequence(seed=2, motion=clip, **small)
  np.testing.assert_array_equal(np.asarray(by_object.gt.body_pose),
                                np.asarray(by_name.gt.body_pose))
  np.testing.assert_array_equal(np.asarray(by_object.images), np.asarray(by_name.images))
  assert by_object.metadata["config"]["motion"].startswith("kick@")
  # Another clip content is another cache entry, not a stale hit.
  changed = clip.replace(body_pose=np.asarray(clip.body_pose) * 0.5)
  other = synthetic_sequence(seed=2, motion=changed, **small)
  assert not np.allclose(np.asarray(other.gt.body_pose), np.asarray(by_name.gt.body_pose))
  path = tmp_path / "kick.npz"
  motion_lib.save_motion(str(path), clip)
  from_file = synthetic_sequence(seed=2, motion=str(path), **small)
  np.testing.assert_array_equal(np.asarray(from_file.gt.body_pose),
                                np.asarray(by_name.gt.body_pose))
  with pytest.raises(FileNotFoundError, match="motion file not found"):
    synthetic_sequence(seed=2, motion=str(tmp_path / "missing.bvh"), **small)


def test_aligned_accel_ignores_root_motion_world_accel_does_not():
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(10, 24, 3))
  jitter = np.zeros((10, 1, 3))
  jitter[::2, 0, 2] = 0.05  # the whole body jumps back and forth along z
  pred = gt + jitter
  assert float(metrics.aligned_accel_error(pred, gt)) == pytest.approx(0.0, abs=1e-3)
  assert float(metrics.accel_error(pred, gt)) > 50.0  # 4 x 5 cm second difference, in mm


def test_per_joint_and_camera_axis_root_errors():
  gt = np.zeros((3, 24, 3))
  gt[:, 5] = [0.0, -0.5, 0.0]
  pred = gt.copy()
  pred[:, 5] += [0.0, 0.0, 0.03]  # right knee 3 cm off
  per_joint = np.asarray(metrics.per_joint_mpjpe(pred, gt))
  assert per_joint[5] == pytest.approx(30.0, rel=1e-5) and np.delete(per_joint, 5).max() < 1e-4
  # A camera looking along world -z (rotated 180 degrees about y): world +z is camera -z.
  w2c = np.diag([-1.0, 1.0, -1.0, 1.0])
  shifted = gt + [0.1, 0.0, 0.2]
  cam = np.asarray(metrics.root_error_in_camera(shifted, gt, w2c))
  np.testing.assert_allclose(cam, np.broadcast_to([-100.0, 0.0, -200.0], (3, 3)), rtol=1e-5)
  assert body_lib.SMPL_JOINT_NAMES[5] == "right_knee"


def test_depth_alignment_moves_the_body_onto_exact_depth_along_the_ray():
  """A body 30 cm too far (HMR's typical error, along the camera ray) is moved back onto the
  observed depth, all but a few cm (at 64 px a body too far covers fewer, flatter pixels of
  the person, which biases the median by about a tenth); its root keeps its pixel."""
  model = body_lib.load_body_model()
  seq = synthetic_sequence(seed=0, num_frames=3, image_size=64, num_eval_views=0,
                           num_novel_pose=0, hmr_noise="none", cache_dir=False,
                           body_model=model)
  w2c = np.asarray(seq.cameras.world_to_cam, np.float64)
  k = np.asarray(seq.cameras.K, np.float64)
  _, joints = body_lib.pose_frames_host(model, seq.gt)
  pelvis_cam = np.einsum("tij,tj->ti", w2c[:, :3, :3], joints[:, 0]) + w2c[:, :3, 3]
  far = pelvis_cam * ((pelvis_cam[:, 2] + 0.3) / pelvis_cam[:, 2])[:, None]
  shift = np.einsum("tji,tj->ti", w2c[:, :3, :3], far - pelvis_cam)
  wrong = seq.gt.replace(transl=np.asarray(seq.gt.transl) + shift)
  transl, offsets = align.align_translation(model, wrong, np.asarray(seq.depth),
                                            np.asarray(seq.masks), k, w2c)
  np.testing.assert_allclose(offsets, -0.3, atol=0.06)
  _, aligned = body_lib.pose_frames_host(model, wrong.replace(transl=transl))
  cam = np.asarray(metrics.root_error_in_camera(aligned, joints, w2c))
  assert np.abs(cam[:, 2]).max() < 60.0  # mm, of 300
  aligned_cam = np.einsum("tij,tj->ti", w2c[:, :3, :3], aligned[:, 0]) + w2c[:, :3, 3]
  pixels = lambda p: (p @ k[0].T)[..., :2] / (p @ k[0].T)[..., 2:3]  # noqa: E731
  np.testing.assert_allclose(pixels(aligned_cam), pixels(far), atol=1e-3)
  # No usable depth: the translation stays as it was.
  same, zeros = align.align_translation(model, wrong, np.zeros_like(seq.depth),
                                        np.asarray(seq.masks), k, w2c)
  np.testing.assert_allclose(same, np.asarray(wrong.transl), atol=1e-6)
  assert np.all(zeros == 0)


def test_focal_ratio_rescales_depth_to_the_camera():
  k = np.tile(np.diag([100.0, 100.0, 1.0]), (2, 1, 1))
  depth_k = k.copy()
  depth_k[:, :2, :2] *= 1.1  # the depth network thought the focal length 10 % longer
  np.testing.assert_allclose(fit_data.focal_ratio(k, depth_k, 1.0), 1 / 1.1, rtol=1e-6)
  np.testing.assert_allclose(fit_data.focal_ratio(k, depth_k, 0.0), 1.0)


def test_suite_entry_load_takes_overrides_of_its_own_settings(monkeypatch):
  calls = []
  monkeypatch.setattr(suite.generator, "synthetic_sequence",
                      lambda name, **kw: calls.append(kw) or types.SimpleNamespace(name=None))
  entry = suite.split_sequences("dev")[0]
  seq = entry.load(depth="unidepth_metric", num_frames=8)
  assert seq.name == entry.name
  assert calls == [{"seed": entry.seed, "hmr_noise": entry.hmr_noise, "motion": entry.motion,
                    "depth": "unidepth_metric", "num_frames": 8}]
