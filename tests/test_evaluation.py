"""Tests of hsjax.evaluation: the metric plumbing of a run (the metrics themselves are tested
against scipy / scikit-image in test_metrics.py)."""

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import evaluation
from hsjax import metrics
from hsjax.camera import Camera
from hsjax.data import synthetic_sequence
from hsjax.rendering import render as render_gaussians


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model()


@pytest.fixture(scope="module")
def sequence(tmp_path_factory, body_model):
  """4 frames at 32 px, one held-out view, two novel-pose frames."""
  return synthetic_sequence("default", seed=0, num_frames=4, image_size=32, num_eval_views=1,
                            num_novel_pose=2, cache_dir=str(tmp_path_factory.mktemp("cache")),
                            body_model=body_model)


@pytest.fixture(scope="module")
def avatar(body_model):
  return avatar_lib.init_avatar(jax.random.key(0), body_model, 300, init_color=(0.6, 0.3, 0.2))


# ------------------------------------------------------------------------------------------
# Pieces


def test_bbox_mask_grows_and_clips():
  mask = np.zeros((20, 30), np.float32)
  mask[5:8, 10:14] = 1.0
  box = evaluation.bbox_mask(mask, margin=2)
  expected = np.zeros_like(mask)
  expected[3:10, 8:16] = 1.0
  np.testing.assert_array_equal(box, expected)
  # Clipped at the image border.
  mask[0, 0] = 1.0
  box = evaluation.bbox_mask(mask, margin=3)
  assert box[0, 0] == 1.0 and box[10, 16] == 1.0 and box[11, 17] == 0.0
  rows, cols = evaluation.bbox_slices(box)
  assert (rows, cols) == (slice(0, 11), slice(0, 17))


def test_bbox_mask_of_empty_mask_is_whole_image():
  """Nothing to crop to: the box metrics fall back to the full frame."""
  np.testing.assert_array_equal(evaluation.bbox_mask(np.zeros((4, 5))), np.ones((4, 5)))


def test_composite_target():
  image = np.full((2, 2, 3), 0.8, np.float32)
  mask = np.array([[1.0, 0.0], [0.5, 0.0]], np.float32)
  out = evaluation.composite_target(image, mask, (0.0, 0.2, 1.0))
  np.testing.assert_allclose(out[0, 0], [0.8, 0.8, 0.8])
  np.testing.assert_allclose(out[0, 1], [0.0, 0.2, 1.0])
  np.testing.assert_allclose(out[1, 0], [0.4, 0.5, 0.9])


def test_image_metrics_regions_match_numpy():
  """Box PSNR = PSNR of the crop; mask PSNR = PSNR over mask pixels; full = whole frame."""
  rng = np.random.default_rng(0)
  target = rng.random((40, 48, 3)).astype(np.float32)
  pred = np.clip(target + rng.normal(scale=0.05, size=target.shape), 0, 1).astype(np.float32)
  mask = np.zeros((40, 48), np.float32)
  mask[12:30, 15:33] = 1.0
  pred[~mask.astype(bool)] = target[~mask.astype(bool)]  # errors only on the person
  out = evaluation.image_metrics(pred, target, mask, bbox_margin=4)

  def psnr(a, b):
    return -10 * np.log10(np.mean((a.astype(np.float64) - b) ** 2))

  np.testing.assert_allclose(out["psnr"], psnr(pred[8:34, 11:37], target[8:34, 11:37]),
                             atol=1e-3)
  np.testing.assert_allclose(out["psnr_mask"], psnr(pred[12:30, 15:33], target[12:30, 15:33]),
                             atol=1e-3)
  np.testing.assert_allclose(out["psnr_full"], psnr(pred, target), atol=1e-3)
  np.testing.assert_allclose(out["ssim_full"], float(metrics.ssim(pred, target)), atol=1e-6)
  # The empty background raises the full-frame score above the box's and the box's above
  # the mask's: the reason the tables crop to the box.
  assert out["psnr_full"] > out["psnr"] > out["psnr_mask"]
  assert "lpips" not in out


def test_summarize_reports_lpips_as_unavailable():
  per_image = [{"psnr": 20.0, "ssim": 0.5}, {"psnr": 30.0, "ssim": 0.7}]
  s = evaluation.summarize(per_image, "no weights", overflow=3)
  assert s["psnr"] == 25.0 and s["ssim"] == pytest.approx(0.6)
  assert s["lpips"] is None and s["lpips_unavailable"] == "no weights"
  assert s["num_images"] == 2 and s["overflow"] == 3


def test_improvement_pct():
  out = evaluation.improvement_pct({"mpjpe": 100.0, "v2v": 50.0, "x": 0.0},
                                   {"mpjpe": 60.0, "v2v": 75.0})
  assert out == {"mpjpe": 40.0, "v2v": -50.0}


def test_evaluate_poses(body_model, sequence):
  """HMR vs GT: positive errors; refined = GT: zero errors and 100 % improvement."""
  out = evaluation.evaluate_poses(body_model, sequence.hmr, sequence.gt, sequence.gt)
  assert out["hmr"]["mpjpe"] > 10.0
  assert out["refined"]["mpjpe"] == pytest.approx(0.0, abs=1e-2)
  assert out["improvement_pct"]["mpjpe"] == pytest.approx(100.0, abs=1e-2)
  assert len(out["per_frame"]["hmr"]["mpjpe"]) == len(sequence)
  np.testing.assert_allclose(np.mean(out["per_frame"]["hmr"]["mpjpe"]), out["hmr"]["mpjpe"],
                             rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Rendering and a whole run


def test_render_frames_matches_render(body_model, sequence, avatar):
  """One frame of render_frames equals deform + render called directly."""
  poses = sequence.gt
  out = evaluation.render_frames(avatar, body_model, poses, sequence.cameras, frames=[2],
                                 background=(0.1, 0.2, 0.3), tile_capacity=64)
  g = avatar_lib.deform(avatar, body_model, np.asarray(poses.betas), poses.body_pose[2],
                        poses.global_orient[2], poses.transl[2])
  cam = Camera(K=sequence.cameras.K[2], world_to_cam=sequence.cameras.world_to_cam[2],
               width=32, height=32)
  ref = render_gaussians(g, cam, background=np.array([0.1, 0.2, 0.3], np.float32),
                         tile_capacity=64)
  np.testing.assert_allclose(out["rgb"][0], np.asarray(ref.rgb), atol=1e-5)
  assert out["rgb"].shape == (1, 32, 32, 3) and out["frames"].tolist() == [2]
  assert out["alpha"][0].max() > 0.5  # the avatar is in view


def test_evaluate_run_structure_and_protocol(body_model, sequence, avatar, monkeypatch):
  monkeypatch.setattr(metrics, "lpips_available", lambda: (False, "weights missing"))
  result = evaluation.evaluate_run(body_model, sequence, avatar, sequence.gt,
                                   tile_capacity=64, frame_stride=2)
  assert result["pose"]["refined"]["mpjpe"] == pytest.approx(0.0, abs=1e-2)
  for key in ("train_view", "novel_view", "novel_pose"):
    summary = result[key]
    assert summary["lpips"] is None and summary["lpips_unavailable"] == "weights missing"
    assert np.isfinite(summary["psnr"]) and 0.0 < summary["ssim"] <= 1.0
  assert result["train_view"]["frames"] == [0, 2]
  assert result["novel_view"]["num_images"] == 2  # 1 view x frames 0, 2
  assert result["novel_pose"]["num_images"] == 2 and result["novel_pose"]["pose_source"] == "gt"
  assert result["lpips"] == {"available": False, "reason": "weights missing"}
  assert "psnr" in result["protocol"]["table_psnr_ssim"]
  assert result["drift"]["num_frames"] == 2 and result["drift"]["mean_mm"] < 10.0


def test_novel_pose_uses_gt_poses_and_fitted_betas(body_model, sequence, avatar):
  """The evaluated poses change the novel-view score but not the novel-pose one (GT poses);
  the fitted betas change both."""
  kwargs = dict(tile_capacity=64, train_view=False, use_lpips=False)
  base = evaluation.evaluate_run(body_model, sequence, avatar, sequence.gt, **kwargs)
  moved = body_lib.SMPLParams(betas=sequence.gt.betas, body_pose=sequence.gt.body_pose,
                              global_orient=sequence.gt.global_orient,
                              transl=np.asarray(sequence.gt.transl) + 0.1)
  shifted = evaluation.evaluate_run(body_model, sequence, avatar, moved, **kwargs)
  assert shifted["novel_pose"]["psnr"] == base["novel_pose"]["psnr"]
  assert shifted["novel_view"]["psnr"] != base["novel_view"]["psnr"]
  fat = body_lib.SMPLParams(betas=np.asarray(sequence.gt.betas) + 2.0,
                            body_pose=sequence.gt.body_pose,
                            global_orient=sequence.gt.global_orient, transl=sequence.gt.transl)
  reshaped = evaluation.evaluate_run(body_model, sequence, avatar, fat, **kwargs)
  assert reshaped["novel_pose"]["psnr"] != base["novel_pose"]["psnr"]


def test_aligned_novel_view_removes_the_global_placement_only(body_model, sequence, avatar):
  """Poses moved rigidly away from the truth score worse in the held-out view, and as well as
  the truth once aligned; an articulation error stays after the alignment."""
  kwargs = dict(tile_capacity=64, train_view=False, use_lpips=False, align_novel_view=True)
  gt = sequence.gt
  base = evaluation.evaluate_run(body_model, sequence, avatar, gt, **kwargs)
  turn = np.eye(4)
  turn[:3, :3] = Rotation.from_euler("y", 25.0, degrees=True).as_matrix()
  turn[:3, 3] = [0.2, 0.0, -0.3]
  moved = body_lib.transform_params(body_model, gt, turn)
  shifted = evaluation.evaluate_run(body_model, sequence, avatar, moved, **kwargs)
  assert shifted["novel_view"]["psnr"] < base["novel_view"]["psnr"] - 1.0
  assert shifted["novel_view_aligned"]["psnr"] == pytest.approx(
      base["novel_view_aligned"]["psnr"], abs=0.05)
  assert base["novel_view_aligned"]["psnr"] == pytest.approx(base["novel_view"]["psnr"],
                                                             abs=0.05)
  assert "novel_view_aligned" in base["protocol"]
  bent = body_lib.SMPLParams(betas=gt.betas, body_pose=np.asarray(gt.body_pose) + 0.4,
                             global_orient=gt.global_orient, transl=gt.transl)
  articulated = evaluation.evaluate_run(body_model, sequence, avatar, bent, **kwargs)
  assert articulated["novel_view_aligned"]["psnr"] < base["novel_view_aligned"]["psnr"] - 1.0
  no_flag = evaluation.evaluate_run(body_model, sequence, avatar, gt, tile_capacity=64,
                                    train_view=False, use_lpips=False)
  assert "novel_view_aligned" not in no_flag


def test_gaussian_drift_measures_distance_from_the_posed_body(body_model, sequence, avatar):
  fresh = evaluation.gaussian_drift(avatar, body_model, sequence.gt, frames=[0, 3])
  assert fresh["num_frames"] == 2
  assert fresh["mean_mm"] < 10.0 and fresh["beyond_5cm_pct"] == 0.0  # vertex spacing
  normals = body_lib.vertex_normals(body_model.v_template, body_model.faces)
  pushed = avatar.replace(means=avatar.means + 0.1 * normals[
      avatar_lib.anchor_vertex_ids(avatar, body_model)])
  far = evaluation.gaussian_drift(pushed, body_model, sequence.gt, frames=[0, 3])
  # 10 cm off the skin along the normal; in the body's concave places (between the legs,
  # under the arms) another part can be closer.
  assert 70.0 < far["mean_mm"] < 101.0 and far["beyond_5cm_pct"] > 75.0
  assert far["p95_mm"] >= far["mean_mm"] * 0.9


def test_evaluate_run_rejects_wrong_frame_count(body_model, sequence, avatar):
  short = body_lib.SMPLParams(betas=sequence.gt.betas, body_pose=sequence.gt.body_pose[:2],
                              global_orient=sequence.gt.global_orient[:2],
                              transl=sequence.gt.transl[:2])
  with pytest.raises(ValueError, match="poses have 2 frames.*has 4"):
    evaluation.evaluate_run(body_model, sequence, avatar, short)
