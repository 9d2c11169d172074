"""Metrics against independent computations (scipy, scikit-image, hand-computed cases)."""

import numpy as np
import pytest
import scipy.spatial
import skimage.metrics

from hsjax import metrics

SSIM_TOL = 1e-3


def _random_joints(rng, t=5, j=24):
  return rng.normal(size=(t, j, 3)).astype(np.float64)


def test_mpjpe_hand_computed_case():
  """A pure translation is removed by pelvis alignment; a joint offset of 3-4-5 mm is not."""
  gt = np.zeros((1, 24, 3))
  gt[0, 1:] = np.random.default_rng(0).normal(size=(23, 3))
  pred = gt + np.array([1.0, 2.0, 3.0])
  assert float(metrics.mpjpe(pred, gt)) == pytest.approx(0.0, abs=1e-4)
  pred = gt.copy()
  pred[0, 5] += np.array([0.003, 0.004, 0.0])
  assert float(metrics.mpjpe(pred, gt)) == pytest.approx(5.0 / 24, rel=1e-5)
  assert float(metrics.root_error(pred + 0.01, gt)) == pytest.approx(np.sqrt(3) * 10, rel=1e-5)


def test_pa_mpjpe_matches_scipy_procrustes():
  """scipy.spatial.procrustes standardises both sets; undo its scaling to compare in mm.

  The prediction is a noisy similarity transform of the truth, so the optimal orthogonal map
  is a proper rotation (scipy's allows reflections; ours, like every PA-MPJPE, does not).
  """
  rng = np.random.default_rng(1)
  gt = _random_joints(rng)
  rot = scipy.spatial.transform.Rotation.random(random_state=7).as_matrix()
  pred = 0.8 * gt @ rot.T + 0.5 + rng.normal(scale=0.1, size=gt.shape)
  ours = metrics.per_frame_pa_mpjpe(pred, gt)
  for t in range(pred.shape[0]):
    mtx_gt, mtx_pred, _ = scipy.spatial.procrustes(gt[t], pred[t])
    gt_norm = np.linalg.norm(gt[t] - gt[t].mean(0))  # scipy scales gt to unit Frobenius norm
    expected = np.mean(np.linalg.norm(mtx_pred - mtx_gt, axis=-1)) * gt_norm * 1000
    assert float(ours[t]) == pytest.approx(expected, rel=1e-4)


def test_pa_mpjpe_zero_for_similarity_transform():
  rng = np.random.default_rng(2)
  gt = _random_joints(rng, t=1)
  rot = scipy.spatial.transform.Rotation.random(random_state=3).as_matrix()
  pred = 1.7 * gt @ rot.T + np.array([0.3, -2.0, 5.0])
  assert float(metrics.pa_mpjpe(pred, gt)) == pytest.approx(0.0, abs=1e-3)
  assert float(metrics.mpjpe(pred, gt)) > 100.0


def test_first_frame_alignment_removes_rigid_world_offset():
  rng = np.random.default_rng(4)
  gt = _random_joints(rng, t=6)
  rot = scipy.spatial.transform.Rotation.random(random_state=5).as_matrix()
  pred = gt @ rot.T + np.array([1.0, 0.0, -1.0])
  assert float(metrics.first_frame_aligned_mpjpe(pred, gt)) == pytest.approx(0.0, abs=1e-3)
  assert float(metrics.global_mpjpe(pred, gt)) > 100.0


def test_rigid_transform_recovers_a_rotation_and_translation_per_frame():
  """Kabsch per frame against scipy's rotations: the transform maps each frame onto the truth
  and carries no scale (a scaled copy is not mapped exactly)."""
  rng = np.random.default_rng(6)
  gt = _random_joints(rng, t=3)
  rots = scipy.spatial.transform.Rotation.random(3, random_state=7).as_matrix()
  shifts = rng.normal(size=(3, 3))
  source = np.einsum("tij,tnj->tni", rots, gt) + shifts[:, None]
  transform = np.asarray(metrics.rigid_transform(source, gt))
  assert transform.shape == (3, 4, 4)
  np.testing.assert_allclose(transform[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (3, 1)))
  np.testing.assert_allclose(transform[:, :3, :3], np.transpose(rots, (0, 2, 1)), atol=1e-5)
  mapped = np.einsum("tij,tnj->tni", transform[:, :3, :3], source) + transform[:, None, :3, 3]
  np.testing.assert_allclose(mapped, gt, atol=1e-5)
  scaled = np.asarray(metrics.rigid_transform(1.5 * gt, gt))
  np.testing.assert_allclose(np.linalg.det(scaled[:, :3, :3]), 1.0, atol=1e-5)
  assert not np.allclose(np.einsum("tij,tnj->tni", scaled[:, :3, :3], 1.5 * gt)
                         + scaled[:, None, :3, 3], gt, atol=1e-3)


def test_mask_iou_hand_computed():
  pred = np.zeros((2, 4, 4))
  target = np.zeros((2, 4, 4))
  pred[0, :2] = 0.9  # 8 pixels
  target[0, 1:3] = 1.0  # 8 pixels, 4 shared
  np.testing.assert_allclose(metrics.mask_iou(pred, target), [4 / 12, 0.0])  # empty: 0


def test_accel_error_hand_computed():
  """A constant-velocity offset has zero acceleration error; a quadratic one does not."""
  t = np.arange(5, dtype=np.float64)
  gt = np.zeros((5, 2, 3))
  pred = gt + (0.01 * t)[:, None, None]
  assert float(metrics.accel_error(pred, gt)) == pytest.approx(0.0, abs=1e-6)
  pred = gt.copy()
  pred[:, :, 0] = (0.001 * t**2)[:, None]  # second difference 2 mm in x
  assert float(metrics.accel_error(pred, gt)) == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage(seed):
  rng = np.random.default_rng(seed)
  ref = rng.uniform(size=(40, 52, 3))
  img = np.clip(ref + rng.normal(scale=0.1, size=ref.shape), 0, 1)
  expected = skimage.metrics.structural_similarity(
      img, ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
      channel_axis=-1)
  assert float(metrics.ssim(img, ref)) == pytest.approx(expected, abs=SSIM_TOL)


def test_psnr_hand_computed_and_masked():
  ref = np.zeros((4, 4, 3))
  img = np.full((4, 4, 3), 0.1)
  assert float(metrics.psnr(img, ref)) == pytest.approx(20.0, rel=1e-5)
  mask = np.zeros((4, 4))
  mask[:2] = 1
  img[2:] = 0.5  # outside the mask: must not count
  assert float(metrics.psnr(img, ref, mask)) == pytest.approx(20.0, rel=1e-5)


def test_lpips_reports_unavailable_instead_of_a_number():
  ok, why = metrics.lpips_available()
  if ok:
    pytest.skip("LPIPS weights are present in this environment")
  assert why
  with pytest.raises(RuntimeError, match="LPIPS unavailable"):
    metrics.lpips(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
