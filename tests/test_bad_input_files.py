"""Bad input: body model files, importer files (PeopleSnapshot, ZJU-MoCap, pickles) and BVH.

Each case states its outcome: an error naming the file and what was expected, or a named
warning saying what was assumed."""

import os
import pickle

import numpy as np
import pytest

from hsjax import body as body_lib
from hsjax.data import load_sequence
from hsjax.data.importers import common as importer_common
from hsjax.motion import bvh as bvh_lib

from test_data_common import small_body  # pylint: disable=unused-import


# ------------------------------------------------------------------------------------------
# Body model files


def _body_arrays(model):
  return {"v_template": np.asarray(model.v_template), "shapedirs": np.asarray(model.shapedirs),
          "posedirs": np.asarray(model.posedirs).reshape(-1, 3, 207) if False else None,
          "J_regressor": np.asarray(model.J_regressor),
          "weights": np.asarray(model.lbs_weights), "kintree_table": np.stack(
              [np.array([4294967295] + list(model.parents[1:])), np.arange(24)]),
          "f": np.asarray(model.faces)}


def _write_body_npz(path, model, **changes):
  arrays = {k: v for k, v in _body_arrays(model).items() if v is not None}
  arrays.update(changes)
  np.savez(path, **arrays)


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


BODY_CASES = [
    ("pkl_runs_code", lambda p: _dump(p, _Evil()), ".pkl",
     r"x\.pkl: refusing to unpickle"),
    ("pkl_garbage", lambda p: _bytes(p, b"this is not a pickle"), ".pkl",
     r"x\.pkl: not a readable"),
    ("pkl_empty", lambda p: _bytes(p, b""), ".pkl", r"x\.pkl: "),
    ("pkl_truncated", lambda p: _bytes(p, pickle.dumps({"v_template": np.zeros((5, 3))})[:40]),
     ".pkl", r"x\.pkl: "),
    ("npz_is_text", lambda p: _bytes(p, b"hello"), ".npz", r"x\.npz: "),
    ("npz_not_zip_pickle", lambda p: _dump(p, {"a": 1}), ".npz", r"x\.npz: "),
    ("unknown_extension", lambda p: _bytes(p, b""), ".obj",
     r"x\.obj: unknown body model extension '\.obj'; expected \.pkl or \.npz"),
]


def _dump(path, obj):
  with open(path, "wb") as f:
    pickle.dump(obj, f)


def _bytes(path, data):
  with open(path, "wb") as f:
    f.write(data)


@pytest.mark.parametrize("write,ext,pattern", [c[1:] for c in BODY_CASES],
                         ids=[c[0] for c in BODY_CASES])
def test_bad_body_file_is_refused_naming_it(tmp_path, write, ext, pattern):
  path = str(tmp_path / f"x{ext}")
  write(path)
  with pytest.raises(ValueError, match=pattern):
    body_lib.load_body_model(path)


def test_body_file_that_is_missing_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"body model file not found: .*nope\.pkl"):
    body_lib.load_body_model(str(tmp_path / "nope.pkl"))


@pytest.mark.parametrize("scale,pattern", [
    (0.5, r"field 'weights' rows must sum to 1, found 0\.5 at vertex 0"),
    (-1.0, r"field 'weights' must be >= 0")])
def test_skinning_weights_must_be_a_partition_of_unity(small_body, scale, pattern):
  arrays = _body_arrays(small_body)
  arrays["weights"] = arrays["weights"] * scale
  arrays = {k: v for k, v in arrays.items() if v is not None}
  with pytest.raises(ValueError, match=r"mine\.npz: " + pattern):
    body_lib.body_model_from_arrays(arrays, source="mine.npz")


# ------------------------------------------------------------------------------------------
# Importer files


def test_zju_garbage_annots_is_named(small_body, tmp_path):
  for d in ("new_params", "mask_cihp"):
    os.makedirs(tmp_path / d)
  _bytes(str(tmp_path / "annots.npy"), b"\x93NUMPY garbage")
  with pytest.raises(ValueError, match=r"annots\.npy"):
    load_sequence(str(tmp_path), format="zju", body_model=small_body)


def test_zju_annots_not_a_dict_is_named(small_body, tmp_path):
  for d in ("new_params", "mask_cihp"):
    os.makedirs(tmp_path / d)
  np.save(tmp_path / "annots.npy", np.zeros(3))
  with pytest.raises(ValueError, match=r"annots\.npy: expected a dict with 'cams' and 'ims'"):
    load_sequence(str(tmp_path), format="zju", body_model=small_body)


def _ps_layout(root):
  for d in ("images", "masks", "poses"):
    os.makedirs(root / d)
  _bytes(str(root / "images" / "0.png"), b"")
  _bytes(str(root / "masks" / "0.npy"), b"")
  np.savez(root / "cameras.npz", intrinsic=np.eye(3), extrinsic=np.eye(4), height=8, width=8)


def test_peoplesnapshot_cameras_npz_that_is_text_is_named(small_body, tmp_path):
  _ps_layout(tmp_path)
  np.savez(tmp_path / "poses" / "anim_nerf_train.npz", betas=np.zeros(10),
           global_orient=np.zeros((1, 3)), body_pose=np.zeros((1, 69)), transl=np.zeros((1, 3)))
  _bytes(str(tmp_path / "cameras.npz"), b"intrinsic = ...")
  with pytest.raises(ValueError, match=r"cameras\.npz: PeopleSnapshot camera file must be an "
                     r"\.npz archive .*found text"):
    load_sequence(str(tmp_path), format="peoplesnapshot", body_model=small_body)


def test_peoplesnapshot_pose_file_with_pickles_is_refused(small_body, tmp_path):
  _ps_layout(tmp_path)
  np.savez(tmp_path / "poses" / "anim_nerf_train.npz", betas=np.array([{"a": 1}], object))
  with pytest.raises(ValueError, match=r"anim_nerf_train\.npz: member 'betas' holds pickled"):
    load_sequence(str(tmp_path), format="peoplesnapshot", body_model=small_body)


def test_peoplesnapshot_pose_file_missing_field_is_named(small_body, tmp_path):
  _ps_layout(tmp_path)
  np.savez(tmp_path / "poses" / "anim_nerf_train.npz", betas=np.zeros(10))
  with pytest.raises(ValueError, match=r"anim_nerf_train\.npz: missing field 'global_orient'"):
    load_sequence(str(tmp_path), format="peoplesnapshot", body_model=small_body)


def test_garbage_pickle_is_named(tmp_path):
  path = str(tmp_path / "track.pkl")
  _bytes(path, b"\x80\x04garbage")
  with pytest.raises(ValueError, match=r"track\.pkl"):
    importer_common.read_pickle(path)


# ------------------------------------------------------------------------------------------
# BVH

_BVH_HEAD = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
}
MOTION
"""


def _bvh(path, header_frames, rows, last_partial=False):
  lines = [" ".join(str(float(i + c)) for c in range(9)) for i in range(rows)]
  if last_partial:
    lines.append("1 2 3")
  _bytes(path, (_BVH_HEAD + f"Frames: {header_frames}\nFrame Time: 0.0333333\n"
                + "\n".join(lines) + "\n").encode())


@pytest.mark.parametrize("header,rows,partial,read", [
    (3, 4, False, 4),   # exporters' off-by-one: Frames: 3069 above 3070 rows
    (5, 4, False, 4),   # cut short
    (6, 4, True, 4)])   # cut mid-row: the incomplete row is dropped
def test_bvh_frame_count_disagreeing_with_rows_reads_complete_rows(tmp_path, header, rows,
                                                                    partial, read):
  path = str(tmp_path / "clip.bvh")
  _bvh(path, header, rows, partial)
  with pytest.warns(bvh_lib.FrameCountWarning, match=rf"clip\.bvh: header says Frames: "
                    rf"{header} but {read} complete frame rows follow"):
    clip = bvh_lib.read_bvh(path)
  assert clip.frames.shape == (read, 9)
  np.testing.assert_array_equal(clip.frames[-1, 3:], np.arange(read - 1, read + 8)[3:])


def test_bvh_with_matching_count_reads_silently(tmp_path):
  path = str(tmp_path / "clip.bvh")
  _bvh(path, 4, 4)
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert bvh_lib.read_bvh(path).frames.shape == (4, 9)


def test_bvh_bad_row_in_the_middle_is_still_an_error(tmp_path):
  path = str(tmp_path / "clip.bvh")
  _bvh(path, 4, 4)
  with open(path) as f:
    text = f.read().replace("1.0 2.0 3.0 4.0", "1.0 2.0 x 4.0", 1)
  _bytes(path, text.encode())
  with pytest.raises(ValueError, match=r"clip\.bvh: frame 0: value 'x' of joint 'Hips'"):
    bvh_lib.read_bvh(path)
