"""Tests of the simulated monocular metric depth (hsjax.data.depth_noise) and its wiring."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from hsjax.data import DEPTH_NOISE_PRESETS, DepthNoise, degrade_depth, depth_intrinsics
from hsjax.data import synthetic_sequence
from hsjax.data import depth_noise as depth_noise_lib

from test_data_common import small_body  # pylint: disable=unused-import

# Small synthetic depth maps: an ellipsoidal "person" 3 m away, moving 1 px per frame.
T, H, W = 4, 96, 96
K = np.array([[120.0, 0.0, 48.0], [0.0, 120.0, 48.0], [0.0, 0.0, 1.0]])
PERSON_Z = 3.0  # metres, the silhouette's depth; the front bulges 0.12 m towards the camera.


def _person(num_frames=T):
  v, u = np.mgrid[0:H, 0:W] + 0.5
  depth, mask = [], []
  for t in range(num_frames):
    r2 = ((u - 48 - t) / 14.0) ** 2 + ((v - 48) / 36.0) ** 2
    m = (r2 < 1).astype(np.float32)
    depth.append(np.where(m >= 0.5, PERSON_Z - 0.12 * np.sqrt(np.clip(1 - r2, 0, 1)), 0.0))
    mask.append(m)
  return np.stack(depth), np.stack(mask)


def _interior(mask, px):
  """Person pixels at least ``px`` pixels from the silhouette (out of the blur's reach)."""
  return np.stack([ndimage.binary_erosion(m >= 0.5, iterations=px) for m in mask])


def test_deterministic_per_seed():
  depth, mask = _person()
  a = degrade_depth(depth, mask, K, "unidepth_like", seed=7)
  b = degrade_depth(depth, mask, K, "unidepth_like", seed=7)
  c = degrade_depth(depth, mask, K, "unidepth_like", seed=8)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3
  np.testing.assert_array_equal(depth_intrinsics(K, seed=7, num_frames=T),
                                depth_intrinsics(K, seed=7, num_frames=T))
  # A sequence seed (as the generator passes per view) is accepted and differs from its parts.
  d = degrade_depth(depth, mask, K, "unidepth_like", seed=[7, 2])
  assert np.abs(a - d).max() > 1e-3


def test_output_finite_float32_and_empty_frames_stay_invalid():
  depth, mask = _person()
  depth[2], mask[2] = 0.0, 0.0  # a frame where the person is not seen
  for name in DEPTH_NOISE_PRESETS:
    out = degrade_depth(depth, mask, K, name, seed=0)
    assert out.dtype == np.float32 and out.shape == depth.shape
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    assert not np.any(out[2])
    assert np.all(out[[0, 1, 3]].reshape(3, -1).max(axis=1) > 0)
  # Frame 3's noise does not depend on frame 2 being empty.
  full_depth, full_mask = _person()
  np.testing.assert_array_equal(degrade_depth(depth, mask, K, seed=0)[3],
                                degrade_depth(full_depth, full_mask, K, seed=0)[3])


def test_mean_relative_error_inside_mask_in_stated_range():
  """unidepth_like: mean |z'/z - 1| over valid person pixels is 2-20 % per sequence, 3-8 % at
  the median over seeds (4 % scale, 1 % flicker and distortion, boundary bleeding)."""
  depth, mask = _person()
  errs = []
  for seed in range(20):
    out = degrade_depth(depth, mask, K, "unidepth_like", seed=seed)
    inside = (mask >= 0.5) & (out > 0)
    errs.append(np.mean(np.abs(out[inside] / depth[inside] - 1)))
  assert 0.02 < min(errs) and max(errs) < 0.20, errs
  assert 0.03 < np.median(errs) < 0.08, errs
  # The harder preset is worse.
  hard = [np.mean(np.abs(o[i] / depth[i] - 1)) for o, i in (
      (o, (mask >= 0.5) & (o > 0)) for o in (
          degrade_depth(depth, mask, K, "unidepth_hard", seed=s) for s in range(20)))]
  assert np.median(hard) > 1.3 * np.median(errs)


def test_scale_only_applies_exactly_the_drawn_scale():
  depth, mask = _person()
  out = degrade_depth(depth, mask, K, "scale_only", seed=3)
  errors = depth_noise_lib.sample_depth_errors("scale_only", T, seed=3)
  np.testing.assert_array_equal(out > 0, depth > 0)  # no blur, no margin, no holes
  valid = depth > 0
  ratio = np.where(valid, out / np.where(valid, depth, 1.0), 0.0)
  np.testing.assert_allclose(ratio[valid], np.broadcast_to(errors.scale[:, None, None],
                                                           depth.shape)[valid], rtol=1e-6)
  assert abs(np.log(errors.scale[0])) > 1e-3  # an error was really applied


def test_scale_error_close_to_preset():
  """Away from the silhouette the median depth ratio is the drawn scale (within the
  distortion), and over seeds its log has the preset's spread."""
  noise = DEPTH_NOISE_PRESETS["unidepth_like"]
  depth, mask = _person()
  interior = _interior(mask, 8)
  found = []
  for seed in range(8):
    out = degrade_depth(depth, mask, K, noise, seed=seed)
    errors = depth_noise_lib.sample_depth_errors(noise, T, seed=seed)
    for t in range(T):
      sel = interior[t] & (out[t] > 0)
      found.append(np.log(np.median(out[t][sel] / depth[t][sel])) - np.log(errors.scale[t]))
  # 3 x the distortion rms bounds the residual of each frame.
  assert np.max(np.abs(found)) < 3 * noise.distortion + 0.005, found
  one_depth, one_mask = _person(1)
  one_interior = _interior(one_mask, 8)
  logs = []
  for seed in range(300):
    out = degrade_depth(one_depth, one_mask, K, noise, seed=seed)[0]
    sel = one_interior[0] & (out > 0)
    logs.append(np.log(np.median(out[sel] / one_depth[0][sel])))
  expected = np.hypot(noise.scale_sigma, noise.frame_scale_sigma)
  assert abs(np.mean(logs)) < 0.01
  assert 0.8 * expected < np.std(logs) < 1.25 * expected + noise.distortion


def test_edges_bleed_into_a_margin_with_intermediate_depth():
  depth, mask = _person()
  noise = DEPTH_NOISE_PRESETS["unidepth_like"]
  out = degrade_depth(depth, mask, K, noise, seed=1)
  scale = depth_noise_lib.sample_depth_errors(noise, T, seed=1).scale[:, None, None]
  person = mask >= 0.5
  dist = np.stack([ndimage.distance_transform_edt(~p) for p in person])
  ring = (dist > 0) & (dist <= noise.dilate)
  outside = dist > noise.dilate + 0.5
  # The margin is valid (except holes) and nothing beyond it is.
  assert np.mean(out[ring] > 0) > 0.9
  assert not np.any(out[outside])
  # One pixel out, depth (relative to the frame's scale) mixes the person (~3 m) and the
  # backdrop (median person depth + gap on the axis, tilted by at most 15 degrees).
  backdrop = np.median(depth[depth > 0]) + noise.background_gap
  rel = (out / scale)[(dist == 1) & (out > 0)]
  assert rel.min() > PERSON_Z - 0.2 and rel.max() < 1.2 * backdrop
  assert PERSON_Z + 0.2 < np.median(rel) < backdrop - 0.2
  # Farther out the margin approaches the backdrop.
  assert np.median((out / scale)[(dist == noise.dilate) & (out > 0)]) > np.median(rel) + 0.2
  # Inside, pixels at the silhouette are pulled back towards the backdrop, the interior not.
  edge = person & ~_interior(mask, 1) & (out > 0)
  core = _interior(mask, 8) & (out > 0)
  bias = (out / scale - depth)
  assert np.median(bias[edge]) > 0.1 and abs(np.median(bias[core])) < 0.1
  # Without blur and margin there is no bleeding.
  sharp = dataclasses.replace(noise, blur_sigma=0.0, dilate=0, hole_fraction=0.0)
  out_sharp = degrade_depth(depth, mask, K, sharp, seed=1)
  np.testing.assert_array_equal(out_sharp > 0, person)


def test_holes_cover_the_preset_fraction():
  depth, mask = _person()
  noise = DEPTH_NOISE_PRESETS["unidepth_hard"]
  fractions = []
  for seed in range(6):
    out = degrade_depth(depth, mask, K, noise, seed=seed)
    fractions.append(np.mean(out[_interior(mask, 1)] == 0))
  assert 0.3 * noise.hole_fraction < np.mean(fractions) < 3 * noise.hole_fraction, fractions
  no_holes = dataclasses.replace(noise, hole_fraction=0.0)
  assert np.all(degrade_depth(depth, mask, K, no_holes, seed=0)[mask >= 0.5] > 0)


def test_depth_intrinsics_scale_focal_only():
  noise = DEPTH_NOISE_PRESETS["unidepth_like"]
  k_hat = depth_intrinsics(np.broadcast_to(K, (T, 3, 3)), noise, seed=5)
  errors = depth_noise_lib.sample_depth_errors(noise, T, seed=5)
  assert k_hat.shape == (T, 3, 3)
  np.testing.assert_allclose(k_hat[:, 0, 0], K[0, 0] * errors.focal_scale, rtol=1e-6)
  np.testing.assert_allclose(k_hat[:, 1, 1], K[1, 1] * errors.focal_scale, rtol=1e-6)
  np.testing.assert_allclose(k_hat[:, :2, 2], np.broadcast_to(K[:2, 2], (T, 2)))
  assert np.all(np.abs(np.log(errors.focal_scale)) > 1e-4)
  assert np.all(np.abs(np.log(errors.focal_scale)) < 5 * (noise.focal_error + noise.scale_sigma))


def test_fully_coupled_focal_keeps_unprojected_lateral_positions():
  """With focal_coupling = 1 and no independent focal error, unprojecting the scaled depth
  with the estimated intrinsics gives the true x, y and only a wrong z."""
  noise = DepthNoise(scale_sigma=0.05, frame_scale_sigma=0.02, focal_coupling=1.0)
  depth, mask = _person()
  out = degrade_depth(depth, mask, K, noise, seed=2)
  k_hat = depth_intrinsics(K, noise, seed=2, num_frames=T)
  v, u = np.mgrid[0:H, 0:W] + 0.5
  valid = depth > 0
  for t in range(T):
    x_true = (u - K[0, 2]) * depth[t] / K[0, 0]
    x_hat = (u - k_hat[t, 0, 2]) * out[t] / k_hat[t, 0, 0]
    np.testing.assert_allclose(x_hat[valid[t]], x_true[valid[t]], atol=1e-5)
    assert np.abs(out[t][valid[t]] - depth[t][valid[t]]).max() > 1e-3


def test_rejects_bad_input():
  depth, mask = _person()
  with pytest.raises(ValueError, match="mask must have the shape"):
    degrade_depth(depth, mask[:, :-1], K, seed=0)
  with pytest.raises(ValueError, match=r"depth must be \[T, H, W\]"):
    degrade_depth(depth[0], mask[0], K, seed=0)
  with pytest.raises(ValueError, match="finite and >= 0"):
    degrade_depth(np.where(depth > 0, -depth, 0.0), mask, K, seed=0)
  with pytest.raises(ValueError, match=r"K must be \[3, 3\] or \[T=4, 3, 3\], found \[2, 3, 3\]"):
    degrade_depth(depth, mask, np.stack([K, K]), seed=0)
  with pytest.raises(ValueError, match="positive focal"):
    degrade_depth(depth, mask, K * np.array([[-1], [1], [1]]), seed=0)
  with pytest.raises(ValueError, match="unknown depth noise preset 'sensor'"):
    degrade_depth(depth, mask, K, "sensor", seed=0)
  with pytest.raises(ValueError, match="'scale_sigma'"):
    DepthNoise(scale_sigma=-0.1)
  with pytest.raises(ValueError, match="non-negative int"):
    degrade_depth(depth, mask, K, seed=-1)


def test_synthetic_sequence_unidepth_like(small_body, tmp_path):
  """The generator's "unidepth_like" mode: the same frames as "exact", the depth of
  degrade_depth on the exact depth, estimated intrinsics in depth_K, its own cache entry."""
  small = dict(num_frames=4, image_size=64, num_eval_views=1, num_novel_pose=2)
  exact = synthetic_sequence(seed=3, body_model=small_body, cache_dir=False, **small)
  assert exact.depth_K is None and exact.depth_kind == "metric"
  np.testing.assert_array_equal(exact.depth > 0, exact.masks >= 0.5)
  mono = synthetic_sequence(seed=3, body_model=small_body, cache_dir=str(tmp_path),
                            depth="unidepth_like", **small)
  assert mono.depth_kind == "metric"
  np.testing.assert_array_equal(np.asarray(mono.images), exact.images)
  np.testing.assert_array_equal(np.asarray(mono.masks), exact.masks)
  np.testing.assert_array_equal(np.asarray(mono.cameras.K), exact.cameras.K)
  for sub_exact, sub_mono, seed in ((exact, mono, [3, 2]),
                                    (exact.eval_views[0], mono.eval_views[0], [3, 3, 0]),
                                    (exact.novel_pose, mono.novel_pose, [3, 4])):
    expected = degrade_depth(sub_exact.depth, sub_exact.masks, sub_exact.cameras.K,
                             "unidepth_like", seed=seed)
    np.testing.assert_array_equal(np.asarray(sub_mono.depth), expected)
    np.testing.assert_allclose(np.asarray(sub_mono.depth_K), depth_intrinsics(
        sub_exact.cameras.K, "unidepth_like", seed=seed))
    assert sub_mono.metadata["depth_noise"]["preset"] == "unidepth_like"
  assert mono.eval_views[0].metadata["azimuth_deg"] == exact.eval_views[0].metadata["azimuth_deg"]
  assert mono.novel_pose.metadata["frame_stride"] == 4
  assert not np.allclose(np.asarray(mono.depth_K), exact.cameras.K)
  # Margin pixels outside the person are valid in the simulated depth, never in the exact.
  assert np.any((np.asarray(mono.depth) > 0) & (exact.masks < 0.5))
  # Another depth preset is another cache entry.
  synthetic_sequence(seed=3, body_model=small_body, cache_dir=str(tmp_path),
                     depth="scale_only", **small)
  assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2
  with pytest.raises(ValueError, match="depth must be one of"):
    synthetic_sequence(seed=3, body_model=small_body, cache_dir=False, depth="unidepth",
                       **small)


def test_unidepth_metric_is_unidepth_like_without_its_scale_error():
  """Same draws, same map up to the sequence scale; the focal keeps only its coupled flicker."""
  depth, mask = _person()
  like = degrade_depth(depth, mask, K, "unidepth_like", seed=5)
  metric = degrade_depth(depth, mask, K, "unidepth_metric", seed=5)
  errors = depth_noise_lib.sample_depth_errors("unidepth_like", T, seed=5)
  metric_errors = depth_noise_lib.sample_depth_errors("unidepth_metric", T, seed=5)
  assert abs(errors.log_scale) > 1e-3 and metric_errors.log_scale == 0.0
  np.testing.assert_array_equal(like > 0, metric > 0)
  valid = metric > 0
  np.testing.assert_allclose(like[valid] / metric[valid], np.exp(errors.log_scale), rtol=1e-5)
  np.testing.assert_array_equal(errors.frame_log_scale, metric_errors.frame_log_scale)
  np.testing.assert_allclose(np.log(metric_errors.focal_scale),
                             0.5 * metric_errors.frame_log_scale, rtol=1e-6)
