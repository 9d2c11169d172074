"""Bad input: the hsjax sequence layout (sequence.npz, images, masks, depth, metadata).

Each case damages one thing in a tiny valid sequence and states the outcome: an error whose
message names the file (and frame) or the field, or a named warning with the assumption made.
Frames are read the way the CLIs read them (``read_frames``: every frame, once)."""

import os
import warnings

import imageio.v3 as iio
import numpy as np
import pytest

from hsjax.data import io as io_lib
from hsjax.data import load_sequence
from hsjax.data import sequence as seq_lib

from bad_input_common import NUM_FRAMES, SIZE, npz_update, write_tiny


def _load(root):
  return seq_lib.read_frames(load_sequence(str(root)), str(root))


def _png(path, array):
  iio.imwrite(path, array)


def _mask_u8(value=255):
  m = np.zeros((SIZE, SIZE), np.uint8)
  m[4:12, 6:10] = value
  return m


# (id, damage(root), error class, regex the message must match)
ERROR_CASES = [
    ("npz_is_text", lambda r: _write(os.path.join(r, "sequence.npz"), "hello"),
     ValueError, r"sequence\.npz: hsjax sequence file must be an \.npz archive .*found text"),
    ("npz_is_npy", lambda r: np.save(os.path.join(r, "x.npy"), np.zeros(3)) or os.replace(
        os.path.join(r, "x.npy"), os.path.join(r, "sequence.npz")),
     ValueError, r"sequence\.npz: .*a single \.npy array"),
    ("npz_truncated", lambda r: _truncate(os.path.join(r, "sequence.npz"), 200),
     ValueError, r"sequence\.npz: .*(damaged|corrupt)"),
    ("npz_corrupt_member", lambda r: _corrupt_member(os.path.join(r, "sequence.npz")),
     ValueError, r"sequence\.npz: .*(damaged|corrupt)"),
    ("npz_missing", lambda r: os.remove(os.path.join(r, "sequence.npz")),
     ValueError, r"seq: cannot detect the sequence format; pass format="),
    ("npz_wrong_format_tag", lambda r: npz_update(os.path.join(r, "sequence.npz"),
                                                  format=np.array("other")),
     ValueError, r"field 'format' must be 'hsjax-sequence', found 'other'"),
    ("npz_missing_K", lambda r: npz_update(os.path.join(r, "sequence.npz"), K=None),
     ValueError, r"sequence\.npz: missing field 'K'"),
    ("K_singular", lambda r: _set_K(r, 2, 2, 0.0),
     ValueError, r"field 'K' frame 0: last row must be \[0, 0, 1\]"),
    ("K_negative_focal", lambda r: _set_K(r, 0, 0, -20.0),
     ValueError, r"field 'K' frame 0: focal lengths must be positive pixels, found fx=-20"),
    ("K_nan", lambda r: _set_K(r, 0, 2, np.nan),
     ValueError, r"field 'K' contains NaN or inf"),
    ("world_to_cam_scaled", lambda r: _set_w2c(r, lambda m: m * np.array([2, 2, 2, 1])[:, None]),
     ValueError, r"field 'world_to_cam' frame 0 is not a rigid transform"),
    ("world_to_cam_mirror", lambda r: _set_w2c(r, lambda m: m @ np.diag([-1, 1, 1, 1])),
     ValueError, r"field 'world_to_cam' frame 0 is not a rigid transform .*det R = -1"),
    ("world_to_cam_bottom_row", lambda r: _set_w2c(r, lambda m: m + np.eye(4)[3] * 0 +
                                                   np.outer(np.eye(4)[3], [0, 0, 1, 0])),
     ValueError, r"field 'world_to_cam' frame 0: last row must be \[0, 0, 0, 1\]"),
    ("body_pose_rotmats", lambda r: npz_update(os.path.join(r, "sequence.npz"),
                                               hmr_body_pose=np.zeros((NUM_FRAMES, 23, 3, 3))),
     ValueError, r"'hmr_body_pose' must be axis-angle .*rotation matrices given"),
    ("transl_nan", lambda r: npz_update(os.path.join(r, "sequence.npz"),
                                        hmr_transl=np.full((NUM_FRAMES, 3), np.nan)),
     ValueError, r"field 'hmr_transl' contains NaN or inf"),
    ("hmr_incomplete", lambda r: npz_update(os.path.join(r, "sequence.npz"), hmr_transl=None),
     ValueError, r"'hmr' parameters are incomplete; missing \['hmr_transl'\]"),
    ("frame_count_mismatch", lambda r: os.remove(os.path.join(r, "images", "000002.png")),
     ValueError, r"images: found 2 frames, expected 3"),
    ("mask_names_differ", lambda r: os.replace(os.path.join(r, "masks", "000001.png"),
                                               os.path.join(r, "masks", "000009.png")),
     ValueError, r"masks: frame names do not match images/"),
    ("image_truncated", lambda r: _truncate(os.path.join(r, "images", "000001.png"), 60),
     ValueError, r"images/000001\.png: not a readable image .*\(images frame 1\)"),
    ("image_is_text", lambda r: _write(os.path.join(r, "images", "000002.png"), "x"),
     ValueError, r"images/000002\.png: not a readable image"),
    ("image_wrong_size", lambda r: _png(os.path.join(r, "images", "000001.png"),
                                        np.zeros((8, 8, 3), np.uint8)),
     ValueError, r"images/000001\.png: images frame has shape \(8, 8, 3\), expected \(16, 16, 3\)"),
    ("mask_truncated", lambda r: _truncate(os.path.join(r, "masks", "000002.png"), 40),
     ValueError, r"masks/000002\.png: not a readable mask .*\(masks frame 2\)"),
    ("mask_empty_later_frame", lambda r: _png(os.path.join(r, "masks", "000002.png"),
                                              np.zeros((SIZE, SIZE), np.uint8)),
     ValueError, r"masks/000002\.png: field 'masks' frame 2 is empty"),
    ("mask_empty_first_frame", lambda r: _png(os.path.join(r, "masks", "000000.png"),
                                              np.zeros((SIZE, SIZE), np.uint8)),
     ValueError, r"masks/000000\.png: field 'masks' frame 0 is empty"),
    ("mask_constant_half", lambda r: _png(os.path.join(r, "masks", "000001.png"),
                                          np.full((SIZE, SIZE), 128, np.uint8)),
     ValueError, r"masks/000001\.png: field 'masks' frame 1 is constant \(every pixel 0\.50"),
    ("mask_constant_full", lambda r: _png(os.path.join(r, "masks", "000001.png"),
                                          np.full((SIZE, SIZE), 255, np.uint8)),
     ValueError, r"frame 1 is constant \(every pixel 1\)"),
    ("metadata_not_json", lambda r: _write(os.path.join(r, "metadata.json"), "{oops"),
     ValueError, r"metadata\.json: not valid JSON"),
    ("metadata_not_object", lambda r: _write(os.path.join(r, "metadata.json"), "[1]"),
     ValueError, r"metadata\.json: expected a JSON object, found list"),
    ("fps_zero", lambda r: npz_update(os.path.join(r, "sequence.npz"), fps=np.array(0.0)),
     ValueError, r"field 'fps' must be positive, found 0"),
]


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)


def _truncate(path, keep):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:keep])


def _corrupt_member(path):
  """Flips bytes inside a compressed member's data (the zip directory stays intact)."""
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  np.savez_compressed(path, **arrays)
  with open(path, "rb") as f:
    data = bytearray(f.read())
  for i in range(60, 200):
    data[i] ^= 0x5A
  with open(path, "wb") as f:
    f.write(bytes(data))


def _set_K(root, i, j, value):
  path = os.path.join(root, "sequence.npz")
  with np.load(path) as f:
    k = np.array(f["K"])
  k[..., i, j] = value
  npz_update(path, K=k)


def _set_w2c(root, fn):
  path = os.path.join(root, "sequence.npz")
  with np.load(path) as f:
    m = np.array(f["world_to_cam"], np.float64)
  npz_update(path, world_to_cam=np.stack([fn(x) for x in m]).astype(np.float32))


@pytest.mark.parametrize("damage,error,pattern", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_bad_sequence_is_refused_naming_file_and_field(tmp_path, damage, error, pattern):
  root = write_tiny(tmp_path / "seq")
  damage(root)
  with pytest.raises(error, match=pattern):
    _load(root)


def test_the_valid_sequence_loads_without_warnings(tmp_path):
  root = write_tiny(tmp_path / "seq", depth=True)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    seq = _load(root)
  assert isinstance(seq.masks, np.ndarray) and seq.masks.max() == 1.0


def test_masks_saved_as_0_1_are_read_with_a_named_warning(tmp_path):
  root = write_tiny(tmp_path / "seq")
  for t in range(NUM_FRAMES):
    _png(os.path.join(root, "masks", f"{t:06d}.png"), _mask_u8(1))
  with pytest.warns(io_lib.InputWarning, match=r"masks/000000\.png: mask values are 0/1, "
                    r"expected 0/255; read as 1 = person") as record:
    seq = _load(root)
  assert len(record) == 1  # one warning for the folder, not one per frame
  np.testing.assert_array_equal(seq.masks[1], _mask_u8(1).astype(np.float32))


def test_float_masks_in_0_255_are_rescaled_with_a_named_warning(tmp_path):
  path = str(tmp_path / "m.npy")
  np.save(path, _mask_u8(255).astype(np.float32))
  with pytest.warns(io_lib.InputWarning, match=r"m\.npy: float mask values reach 255"):
    m = io_lib.load_mask(path)
  assert m.max() == 1.0


@pytest.mark.parametrize("value,pattern", [
    (-1.0, r"mask values must lie in \[0, 1\], found \[-1"),
    (300.0, r"mask values must lie in \[0, 1\], found \[0, 300\]"),
    (np.nan, r"mask contains NaN or inf")])
def test_float_masks_out_of_range_are_refused(tmp_path, value, pattern):
  path = str(tmp_path / "m.npy")
  m = _mask_u8(1).astype(np.float32)
  m[0, 0] = value
  np.save(path, m)
  with pytest.raises(ValueError, match=r"m\.npy: " + pattern):
    io_lib.load_mask(path)


@pytest.mark.parametrize("depth,pattern", [
    (3000.0, r"depth must be in metres, found median 3000 \(millimetres\?"),
    (-1.0, r"depth must be >= 0 \(metres, 0 = invalid\), found min -1"),
    (np.inf, r"depth contains 256 NaN or inf values")])
def test_bad_metric_depth_is_refused_naming_the_file(tmp_path, depth, pattern):
  root = write_tiny(tmp_path / "seq", depth=True)
  np.save(os.path.join(root, "depth", "000001.npy"), np.full((SIZE, SIZE), depth, np.float32))
  with pytest.raises(ValueError, match=r"depth/000001\.npy: " + pattern):
    _load(root)


def test_depth_png_must_be_16_bit(tmp_path):
  path = str(tmp_path / "d.png")
  _png(path, np.full((SIZE, SIZE), 3, np.uint8))
  with pytest.raises(ValueError, match=r"d\.png: a depth PNG must be 16-bit millimetres"):
    io_lib.load_depth(path)


def test_relative_depth_is_not_unit_checked(tmp_path):
  """Relative (affine-ambiguous) depth may take any scale; only NaN / inf are refused."""
  path = str(tmp_path / "d.npy")
  np.save(path, np.full((SIZE, SIZE), 5000.0, np.float32))
  assert io_lib.load_depth(path, metric=False).max() == 5000.0


def test_in_memory_sequences_are_checked_alike():
  from bad_input_common import tiny_sequence  # pylint: disable=g-import-not-at-top
  seq = tiny_sequence(depth=True)
  seq.masks[2] = 0.5
  with pytest.raises(ValueError, match=r"mem: field 'masks' frame 2 is constant"):
    seq_lib.validate_sequence(seq, "mem")
  seq = tiny_sequence(depth=True)
  seq.depth[1] *= 1000
  with pytest.raises(ValueError, match=r"mem: depth frame 1: depth must be in metres"):
    seq_lib.read_frames(seq, "mem")
