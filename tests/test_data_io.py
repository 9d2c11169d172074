"""Tests of the hsjax on-disk sequence layout: round trip, lazy loading and input validation."""

import dataclasses
import os
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from hsjax.data import LazyFrames, load_sequence, save_sequence, synthetic_sequence
from hsjax.data import validate_sequence

from bad_input_common import npz_update
from test_data_common import small_body  # pylint: disable=unused-import


@pytest.fixture(scope="module")
def saved(small_body, tmp_path_factory):
  seq = synthetic_sequence(seed=0, body_model=small_body, cache_dir=False, num_frames=6,
                           image_size=48, num_eval_views=1, num_novel_pose=2)
  root = tmp_path_factory.mktemp("seq") / "clean"
  save_sequence(str(root), seq)
  return seq, root


def _copy(saved_root, tmp_path):
  dst = tmp_path / "seq"
  shutil.copytree(saved_root, dst)
  return dst


def _edit_npz(root, **changes):
  npz_update(os.path.join(root, "sequence.npz"), **changes)


def test_round_trip_is_lazy_and_exact(saved):
  seq, root = saved
  loaded = load_sequence(str(root))
  assert isinstance(loaded.images, LazyFrames) and isinstance(loaded.depth, LazyFrames)
  assert loaded.images.shape == (6, 48, 48, 3) and len(loaded) == 6
  np.testing.assert_array_equal(np.asarray(loaded.images), seq.images)
  np.testing.assert_array_equal(loaded.masks[2:4], seq.masks[2:4])
  np.testing.assert_array_equal(loaded.depth[-1], seq.depth[-1])
  np.testing.assert_array_equal(loaded.images[3, :, :, 1], seq.images[3, :, :, 1])
  np.testing.assert_array_equal(loaded.hmr.body_pose, seq.hmr.body_pose)
  np.testing.assert_array_equal(loaded.gt.transl, seq.gt.transl)
  np.testing.assert_array_equal(loaded.cameras.K, seq.cameras.K)
  assert loaded.depth_kind == "metric" and loaded.fps == seq.fps
  assert len(loaded.eval_views) == 1 and loaded.novel_pose is not None
  np.testing.assert_array_equal(np.asarray(loaded.eval_views[0].images),
                                seq.eval_views[0].images)
  np.testing.assert_array_equal(loaded.novel_pose.gt.body_pose, seq.novel_pose.gt.body_pose)
  assert loaded.metadata["seed"] == 0
  with pytest.raises(IndexError):
    loaded.images[6]  # pylint: disable=pointless-statement


def test_static_camera_shorthand(saved, tmp_path):
  seq, root = saved
  root = _copy(root, tmp_path)
  _edit_npz(root, K=np.asarray(seq.cameras.K[0]), world_to_cam=np.asarray(
      seq.cameras.world_to_cam[0]))
  loaded = load_sequence(str(root), format="hsjax")
  assert loaded.cameras.K.shape == (6, 3, 3)
  np.testing.assert_array_equal(loaded.cameras.world_to_cam[5], seq.cameras.world_to_cam[0])


def test_user_layout_without_depth_or_gt(saved, tmp_path):
  seq, root = saved
  root = _copy(root, tmp_path)
  shutil.rmtree(root / "depth")
  shutil.rmtree(root / "eval_views")
  shutil.rmtree(root / "novel_pose")
  os.remove(root / "metadata.json")
  _edit_npz(root, depth_kind=None, gt_betas=None, gt_body_pose=None, gt_global_orient=None,
            gt_transl=None)
  loaded = load_sequence(str(root))
  assert loaded.depth is None and loaded.depth_kind is None and loaded.gt is None
  assert loaded.eval_views == [] and loaded.novel_pose is None


def test_depth_png_millimetres(saved, tmp_path):
  seq, root = saved
  root = _copy(root, tmp_path)
  for t in range(6):
    os.remove(root / "depth" / f"{t:06d}.npy")
    iio.imwrite(root / "depth" / f"{t:06d}.png",
                np.round(np.asarray(seq.depth[t]) * 1000).astype(np.uint16))
  loaded = load_sequence(str(root))
  np.testing.assert_allclose(loaded.depth[2], seq.depth[2], atol=5e-4)


# Each bad input raises a ValueError naming the file / field and the expected vs found value.
BAD_CASES = {
    "missing_frame": (lambda r: os.remove(r / "images" / "000003.png"),
                      r"images: found 5 frames, expected 6"),
    "mask_names": (lambda r: os.rename(r / "masks" / "000003.png", r / "masks" / "x.png"),
                   r"masks: frame names do not match"),
    "mask_size": (lambda r: iio.imwrite(r / "masks" / "000000.png",
                                        np.full((40, 48), 255, np.uint8)),
                  r"000000.png: masks frame has shape \(40, 48\), expected \(48, 48\)"),
    "empty_mask": (lambda r: iio.imwrite(r / "masks" / "000000.png",
                                         np.zeros((48, 48), np.uint8)),
                   r"masks' frame 0 is empty"),
    "nan_transl": (lambda r: _edit_npz(r, hmr_transl=np.full((6, 3), np.nan, np.float32)),
                   r"field 'hmr_transl' contains NaN or inf"),
    "inf_betas": (lambda r: _edit_npz(r, gt_betas=np.array([np.inf] * 10, np.float32)),
                  r"field 'gt_betas' contains NaN or inf"),
    "rotmats": (lambda r: _edit_npz(r, hmr_body_pose=np.tile(np.eye(3, dtype=np.float32),
                                                             (6, 23, 1, 1))),
                r"'hmr_body_pose' must be axis-angle \[6, 23, 3\], found \[6, 23, 3, 3\] "
                r"\(rotation matrices"),
    "rot6d": (lambda r: _edit_npz(r, hmr_global_orient=np.zeros((6, 6), np.float32)),
              r"'hmr_global_orient' must be axis-angle \[6, 3\], found \[6, 6\]"),
    "frame_count_params": (lambda r: _edit_npz(r, gt_transl=np.zeros((5, 3), np.float32)),
                           r"'gt_transl' must be axis-angle \[6, 3\], found \[5, 3\] \(frame "
                           r"count 5 != 6\)"),
    "bad_K": (lambda r: _edit_npz(r, K=np.zeros((6, 3, 4), np.float32)),
              r"field 'K' must be \[3, 3\] or \[6, 3, 3\], found \[6, 3, 4\]"),
    "non_rigid": (lambda r: _edit_npz(r, world_to_cam=np.tile(np.diag([2.0, 1, 1, 1]).astype(
        np.float32), (6, 1, 1))), r"'world_to_cam' frame 0 is not a rigid transform"),
    "format": (lambda r: _edit_npz(r, format=np.array("other")),
               r"field 'format' must be 'hsjax-sequence', found 'other'"),
    "depth_kind": (lambda r: _edit_npz(r, depth_kind=np.array("magic")),
                   r"depth_kind must be one of"),
    "no_hmr": (lambda r: _edit_npz(r, hmr_betas=None, hmr_body_pose=None,
                                   hmr_global_orient=None, hmr_transl=None),
               r"missing the HMR parameters"),
    "partial_hmr": (lambda r: _edit_npz(r, hmr_transl=None),
                    r"'hmr' parameters are incomplete; missing \['hmr_transl'\]"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_clear_error(saved, tmp_path, case):
  _, root = saved
  root = _copy(root, tmp_path)
  corrupt, message = BAD_CASES[case]
  corrupt(root)
  with pytest.raises(ValueError, match=message):
    load_sequence(str(root))


def test_lazy_frame_of_wrong_size_fails_on_access(saved, tmp_path):
  _, root = saved
  root = _copy(root, tmp_path)
  iio.imwrite(root / "images" / "000004.png", np.zeros((48, 50, 3), np.uint8))
  seq = load_sequence(str(root))  # frame 0 is fine; frame 4 is checked when loaded
  with pytest.raises(ValueError, match=r"000004.png: images frame has shape \(48, 50, 3\)"):
    seq.images[4]  # pylint: disable=pointless-statement


def test_validate_in_memory_sequence(saved):
  seq, _ = saved
  bad = dataclasses.replace(seq, masks=np.concatenate([seq.masks[:1] * 0, seq.masks[1:]]))
  with pytest.raises(ValueError, match=r"field 'masks' frame 0 is empty"):
    validate_sequence(bad)
  bad = dataclasses.replace(seq, images=seq.images[:, :40])
  with pytest.raises(ValueError, match=r"field 'images' must be \[6, 48, 48, 3\].*image size"):
    validate_sequence(bad)
  bad = dataclasses.replace(seq, depth=seq.depth[:5])
  with pytest.raises(ValueError, match=r"field 'depth'.*found \[5, 48, 48\]: frame count"):
    validate_sequence(bad)
  assert validate_sequence(seq).hmr.body_pose.dtype == np.float32


def test_load_sequence_errors(tmp_path):
  with pytest.raises(FileNotFoundError):
    load_sequence(str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="cannot detect the sequence format"):
    load_sequence(str(tmp_path))
  with pytest.raises(ValueError, match="unknown sequence format 'xyz'"):
    load_sequence(str(tmp_path), format="xyz")
