"""Tests of hsjax.fit.crop and FitConfig.person_crop: a crop's camera renders exactly the
window of the frame it was cut from, keypoints and depth move with it, the window covers the
person in every frame, and subjects fitted together share one crop size."""

import dataclasses

import jax
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import evaluation
from hsjax.camera import Camera
from hsjax.camera import intrinsics
from hsjax.data.sequence import Sequence
from hsjax.fit import crop as crop_lib
from hsjax import fit as fit_lib

SIZE = (48, 80)  # frame (height, width): the person, small, walks across it.


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model("default")


def _scene(body_model, num_frames=3):
  """A small avatar rendered in three frames as the person moves right: (sequence whose
  masks and images are the renders, the avatar, the poses)."""
  avatar = avatar_lib.init_avatar(jax.random.key(0), body_model, 600)
  t = num_frames
  transl = np.stack([np.linspace(-0.6, 0.6, t), np.full(t, 0.2), np.full(t, 6.0)], -1)
  poses = body_lib.SMPLParams(betas=np.zeros(body_model.num_betas, np.float32),
                              body_pose=np.zeros((t, 23, 3), np.float32),
                              global_orient=np.tile(np.float32([np.pi, 0, 0]), (t, 1)),
                              transl=transl.astype(np.float32))
  h, w = SIZE
  k = np.broadcast_to(intrinsics(70.0, w, h), (t, 3, 3)).astype(np.float32)
  cams = Camera(K=k, world_to_cam=np.broadcast_to(np.eye(4, dtype=np.float32), (t, 4, 4)),
                width=w, height=h)
  out = evaluation.render_frames(avatar, body_model, poses, cams)
  _, joints = body_lib.pose_frames_host(body_model, poses)
  uvw = joints @ k[0].T
  keypoints = np.concatenate([uvw[..., :2] / uvw[..., 2:], np.ones(joints.shape[:2] + (1,))],
                             -1).astype(np.float32)
  seq = Sequence(name="crop", images=np.asarray(out["rgb"], np.float32),
                 masks=np.asarray(out["alpha"] > 0.5, np.float32),
                 depth=np.asarray(out["depth"], np.float32) if "depth" in out else None,
                 depth_kind="metric" if "depth" in out else None, cameras=cams, hmr=poses,
                 keypoints_2d=keypoints)
  return seq, avatar, poses, np.asarray(out["rgb"]), joints


def test_crop_cameras_render_the_window_of_the_frame(body_model):
  """Rendered through each crop's camera, the avatar is the window of the whole frame's
  render, and the prepared keypoints are the joints projected by that camera."""
  seq, avatar, poses, full, joints = _scene(body_model)
  config = fit_lib.FitConfig(person_crop=True, downsample=1, progress=False, batch_frames=1,
                             person_crop_margin=0.2, depth_edge_px=0)
  source = fit_lib.FrameSource(seq, config)
  data = fit_lib.prepare_data(seq, config, body_model, source=source)
  crop = source.crop
  assert (source.height, source.width) == (crop.height, crop.width)
  assert crop.width < SIZE[1] and len(np.unique(crop.origins[:, 0])) == 3  # it follows
  cams = data.cameras(np.arange(3))
  cropped = np.asarray(evaluation.render_frames(avatar, body_model, poses, cams)["rgb"])
  for t in range(3):
    rows, cols = crop.window(t)
    np.testing.assert_allclose(cropped[t], full[t][rows, cols], atol=1e-5)
    _, mask, depth = source.frame(t)
    np.testing.assert_array_equal(mask, np.asarray(seq.masks[t])[rows, cols])
    np.testing.assert_array_equal(depth, np.asarray(seq.depth[t])[rows, cols])
    uvw = joints[t] @ np.asarray(cams.K[t]).T
    np.testing.assert_allclose(np.asarray(data.keypoints[t]), uvw[:, :2] / uvw[:, 2:],
                               atol=1e-3)
  assert float(data.frame_area) == SIZE[0] * SIZE[1]


def test_crop_factor_limits_the_crop_not_the_frame(body_model):
  """max_fit_size bounds the crop's long side; the crop's size is a multiple of its factor."""
  seq, *_ = _scene(body_model)
  config = fit_lib.FitConfig(person_crop=True, downsample=1, max_fit_size=8, progress=False,
                             batch_frames=1)
  source = fit_lib.FrameSource(seq, config)
  crop = source.crop
  assert source.factor == config.crop_factor(crop.height, crop.width) > 1
  assert crop.height % source.factor == 0 and crop.width % source.factor == 0
  assert max(source.height, source.width) <= 8
  data = fit_lib.prepare_data(seq, config, body_model, source=source)
  assert float(data.frame_area) == pytest.approx(SIZE[0] * SIZE[1] / source.factor**2)


def test_windows_cover_each_box_and_stay_inside_the_frame():
  boxes = np.array([[0, 10, 10, 40], [60, 5, 75, 30], [30, 20, 42, 44.0]])
  height, width, factor = crop_lib.crop_size([boxes], [(48, 80)], margin=0.1,
                                             factor_of=lambda h, w: 2)
  assert (height, width, factor) == (36, 18, 2)  # ceil(30 * 1.2), ceil(15 * 1.2) -> even
  origins = crop_lib.crop_origins(boxes, (48, 80), height, width)
  for (x0, y0), (bx0, by0, bx1, by1) in zip(origins, boxes):
    assert 0 <= x0 <= 80 - width and 0 <= y0 <= 48 - height
    assert x0 <= bx0 and bx1 <= x0 + width and y0 <= by0 and by1 <= y0 + height
  # Larger than the frame: the frame, rounded down to the factor.
  assert crop_lib.crop_size([boxes], [(47, 20)], margin=0.5,
                            factor_of=lambda h, w: 2)[:2] == (46, 20)


def test_frames_without_the_person_take_the_neighbours_window():
  boxes = np.array([[0, 0, 10, 10], [np.nan] * 4, [20, 0, 30, 10], [np.nan] * 4])
  origins = crop_lib.crop_origins(boxes, (40, 60), 10, 10)
  np.testing.assert_array_equal(origins[:, 0], [0, 10, 20, 20])
  with pytest.raises(ValueError, match="sequence.masks: a person crop needs the person in "
                     "at least one mask; all 2 masks are empty"):
    crop_lib.person_crops([np.zeros((2, 8, 8))], margin=0.1, factor_of=lambda h, w: 1)


def test_subjects_share_one_crop_size():
  small = np.zeros((2, 40, 60), np.float32)
  small[:, 10:20, 5:10] = 1.0
  large = np.zeros((3, 40, 60), np.float32)
  large[:, 5:35, 30:36] = 1.0
  crops, factor = crop_lib.person_crops([small, large], margin=0.0, factor_of=lambda h, w: 1)
  assert factor == 1
  assert {(c.height, c.width) for c in crops} == {(30, 6)}
  assert [len(c.origins) for c in crops] == [2, 3]


def test_mask_boxes_are_pixel_edges():
  masks = np.zeros((2, 6, 7), np.float32)
  masks[0, 2, 3] = 1.0
  np.testing.assert_array_equal(crop_lib.mask_boxes(masks)[0], [3, 2, 4, 3])
  assert np.isnan(crop_lib.mask_boxes(masks)[1]).all()


def test_person_crop_margin_is_checked():
  with pytest.raises(ValueError, match="person_crop_margin"):
    dataclasses.replace(fit_lib.FitConfig(), person_crop_margin=-0.1)
