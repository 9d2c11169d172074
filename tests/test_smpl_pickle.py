"""Tests of the restricted SMPL ``.pkl`` / ``.npz`` readers (hsjax.smpl_pickle)."""

import os
import pickle
import zipfile
import zlib

import numpy as np
import pytest
import scipy.sparse

from hsjax import smpl_pickle
from fake_pickles import fake_pickled_class


def _make(cls, **state):
  obj = cls.__new__(cls)
  obj.__dict__.update(state)
  return obj


@pytest.fixture
def chumpy_classes(monkeypatch):
  ch = fake_pickled_class(monkeypatch, "chumpy.ch", "Ch")
  select = fake_pickled_class(monkeypatch, "chumpy.reordering", "Select")
  csc = fake_pickled_class(monkeypatch, "scipy.sparse.csc", "csc_matrix")
  return ch, select, csc


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pickle_round_trip(tmp_path, chumpy_classes, protocol):
  """Ch leaves, an indexed Select node and a CSC matrix come back as dense arrays."""
  ch, select, csc = chumpy_classes
  rng = np.random.default_rng(0)
  shapedirs = rng.normal(size=(7, 3, 4))
  weights = rng.random((7, 5))
  perm = rng.permutation(weights.size)
  dense = np.where(rng.random((5, 7)) < 0.4, rng.random((5, 7)), 0.0)
  sp = scipy.sparse.csc_matrix(dense)
  data = {
      "shapedirs": _make(ch, x=shapedirs, _dirty_vars={"x"}),
      # Select(a, idxs): a.ravel()[idxs] reshaped to preferred_shape.
      "weights": _make(select, a=_make(ch, x=weights.ravel()[np.argsort(perm)]), idxs=perm,
                       preferred_shape=(7, 5)),
      "J_regressor": _make(csc, data=sp.data, indices=sp.indices, indptr=sp.indptr,
                           _shape=sp.shape, maxprint=50),
      "kintree_table": np.array([[4294967295, 0], [0, 1]], np.int64),
      "bs_style": "lbs",
      "pose_training_info": {"bs_type": "lrotmin"},
  }
  path = tmp_path / "model.pkl"
  path.write_bytes(pickle.dumps(data, protocol=protocol))
  out = smpl_pickle.load_smpl_pickle(str(path))
  np.testing.assert_array_equal(out["shapedirs"], shapedirs)
  np.testing.assert_array_equal(out["weights"], weights)
  np.testing.assert_array_equal(out["J_regressor"], dense)
  np.testing.assert_array_equal(out["kintree_table"], data["kintree_table"])
  assert out["bs_style"] == "lbs"
  assert out["pose_training_info"] == {"bs_type": "lrotmin"}


def test_csr_and_old_scipy_shape_key(tmp_path, monkeypatch):
  """CSR layout, and ``shape`` instead of ``_shape`` (older scipy pickles)."""
  csr = fake_pickled_class(monkeypatch, "scipy.sparse.csr", "csr_matrix")
  dense = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
  sp = scipy.sparse.csr_matrix(dense)
  data = {"J": _make(csr, data=sp.data, indices=sp.indices, indptr=sp.indptr, shape=sp.shape)}
  path = tmp_path / "m.pkl"
  path.write_bytes(pickle.dumps(data, protocol=2))
  np.testing.assert_array_equal(smpl_pickle.load_smpl_pickle(str(path))["J"], dense)


class _Payload:
  """Pickles as a call of ``func(*args)``: what a malicious model file would contain."""

  def __init__(self, func, args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _payloads(marker):
  return {
      "os.system": _Payload(os.system, (f"touch {marker}",)),
      "builtins.exec": _Payload(exec, (f"open({str(marker)!r}, 'w').close()",)),
      "builtins.eval": _Payload(eval, (f"open({str(marker)!r}, 'w').close()",)),
      "numpy.load": _Payload(np.load, (str(marker),)),  # numpy, yet not whitelisted
  }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval", "numpy.load"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, kind, protocol):
  """A pickle naming any other global is refused before it is called.

  The same bytes *do* create the marker file when given to plain ``pickle.loads`` (so the
  payload is live), but not when given to hsjax's loader.
  """
  marker = tmp_path / "pwned"
  payload = _payloads(marker)[kind]
  blob = pickle.dumps({"v_template": np.zeros((3, 3)), "f": payload}, protocol=protocol)
  path = tmp_path / "evil.pkl"
  path.write_bytes(blob)
  with pytest.raises(smpl_pickle.UnsafePickleError) as info:
    smpl_pickle.load_smpl_pickle(str(path))
  assert str(path) in str(info.value)
  assert "refusing to load global" in str(info.value)
  assert not marker.exists()
  if kind != "numpy.load":  # the control: unrestricted unpickling runs the payload
    pickle.loads(blob)  # noqa: S301 - the point of the test
    assert marker.exists()


def test_codecs_encode_only_latin1(tmp_path):
  """``_codecs.encode`` is whitelisted for protocol-2 bytes only, not every codec."""
  import codecs  # pylint: disable=g-import-not-at-top
  blob = pickle.dumps({"x": _Payload(codecs.encode, (b"abc", "zlib"))}, protocol=2)
  assert b"_codecs\nencode" in blob
  path = tmp_path / "zlib.pkl"
  path.write_bytes(blob)
  with pytest.raises(smpl_pickle.UnsafePickleError, match="zlib"):
    smpl_pickle.load_smpl_pickle(str(path))


def test_npz_with_pickled_sparse_regressor(tmp_path):
  """``np.savez`` of a de-chumpied SMPL dict: J_regressor is a 0-d object array holding a
  real ``scipy.sparse.csc_matrix``; strings are object or unicode arrays."""
  rng = np.random.default_rng(1)
  dense = np.where(rng.random((4, 9)) < 0.3, rng.random((4, 9)), 0.0)
  path = tmp_path / "m.npz"
  np.savez(path, J_regressor=np.array(scipy.sparse.csc_matrix(dense), dtype=object),
           v_template=rng.normal(size=(9, 3)), bs_style=np.array("lbs", dtype=object),
           names=np.array(["a", "bc"], dtype=object), plain_names=np.array(["x", "y"]))
  out = smpl_pickle.load_npz_restricted(str(path))
  np.testing.assert_array_equal(out["J_regressor"], dense)
  assert out["v_template"].shape == (9, 3)
  assert out["bs_style"] == "lbs"
  assert list(out["names"]) == ["a", "bc"]
  assert list(out["plain_names"]) == ["x", "y"]


def test_npz_with_malicious_object_member_is_refused(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.npz"
  member = np.empty((), dtype=object)
  member[()] = _Payload(os.system, (f"touch {marker}",))
  np.savez(path, v_template=np.zeros((2, 3)), J_regressor=member)
  with pytest.raises(smpl_pickle.UnsafePickleError) as info:
    smpl_pickle.load_npz_restricted(str(path))
  assert "J_regressor" in str(info.value) and "posix.system" in str(info.value)
  assert not marker.exists()


def test_bad_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothere.pkl"):
    smpl_pickle.load_smpl_pickle(str(tmp_path / "nothere.pkl"))
  with pytest.raises(FileNotFoundError, match="nothere.npz"):
    smpl_pickle.load_npz_restricted(str(tmp_path / "nothere.npz"))
  garbage = tmp_path / "garbage.pkl"
  garbage.write_bytes(b"not a pickle at all")
  with pytest.raises(ValueError, match="garbage.pkl"):
    smpl_pickle.load_smpl_pickle(str(garbage))
  listpkl = tmp_path / "list.pkl"
  listpkl.write_bytes(pickle.dumps([1, 2]))
  with pytest.raises(ValueError, match="expected a pickled dict"):
    smpl_pickle.load_smpl_pickle(str(listpkl))
  notzip = tmp_path / "bad.npz"
  notzip.write_bytes(b"PK nothing")
  with pytest.raises(ValueError, match="bad.npz"):
    smpl_pickle.load_npz_restricted(str(notzip))
  badheader = tmp_path / "hdr.npz"
  with zipfile.ZipFile(badheader, "w") as zf:
    zf.writestr("x.npy", b"\x93NUMPY\x01\x00\x10\x00__import__('os')")
  with pytest.raises(ValueError, match="malformed .npy header"):
    smpl_pickle.load_npz_restricted(str(badheader))


def test_unsupported_chumpy_node_is_named(tmp_path, monkeypatch):
  add = fake_pickled_class(monkeypatch, "chumpy.ch_ops", "add")
  path = tmp_path / "m.pkl"
  path.write_bytes(pickle.dumps({"v_template": _make(add, b=1)}, protocol=2))
  with pytest.raises(ValueError, match=r"v_template.*chumpy\.ch_ops\.add"):
    smpl_pickle.load_smpl_pickle(str(path))


def _py2_pickle_of_array(key: bytes, array: np.ndarray) -> bytes:
  """Hand-written protocol-2 opcodes as Python 2 / numpy 1.x wrote an ``{key: array}`` dict:
  ``numpy.core.multiarray`` names and the raw buffer as a Python-2 ``str`` (SHORT_BINSTRING),
  which only decodes with ``encoding="latin1"``."""
  def short_str(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b
  assert array.dtype == np.float64 and array.ndim == 1 and array.nbytes < 256
  dtype = (b"cnumpy\ndtype\n" + short_str(b"f8") + b"K\x00K\x01\x87R"
           + b"(K\x03" + short_str(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
  return (b"\x80\x02}" + short_str(key)
          + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short_str(b"b")
          + b"\x87R(K\x01K" + bytes([array.shape[0]]) + b"\x85" + dtype + b"\x89"
          + short_str(array.tobytes()) + b"tbs.")


def test_python2_pickle_with_latin1_buffers(tmp_path):
  """A Python-2 SMPL-style pickle whose array buffer holds bytes >= 0x80."""
  array = np.array([1.5, -2.0, np.pi, 1e-300])
  assert max(array.tobytes()) >= 0x80
  path = tmp_path / "py2.pkl"
  path.write_bytes(_py2_pickle_of_array(b"J", array))
  out = smpl_pickle.load_smpl_pickle(str(path))
  np.testing.assert_array_equal(out["J"], array)


# ------------------------------------------------------------------------------------------
# joblib files (joblib 1.6 writes them here; hsjax reads them without importing joblib) and
# the size cap.

_COMPRESSIONS = [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3), ("lz4", 3)]


def _joblib_dump(obj, path, compress):
  joblib = pytest.importorskip("joblib")
  if isinstance(compress, tuple) and compress[0] == "lz4":
    pytest.importorskip("lz4")
  joblib.dump(obj, path, compress=compress)


@pytest.mark.parametrize("compress", _COMPRESSIONS, ids=str)
def test_joblib_file_round_trip(tmp_path, compress):
  """What ``joblib.dump(obj, path, compress=...)`` writes reads back equal: C and Fortran
  arrays, object arrays (a nested pickle in joblib's stream), numpy scalars, containers."""
  rng = np.random.default_rng(0)
  obj = {"c": rng.normal(size=(3, 4)), "f": np.asfortranarray(rng.integers(0, 9, (2, 5))),
         "o": np.array([{"x": np.ones(2)}, "s"], dtype=object), "scalar": np.float32(2.5),
         "empty": np.zeros((0, 3)), "nested": [{"k": (1, "z")}, {1, 2}], "b": b"\x00\xff"}
  path = tmp_path / "out.pkl"
  _joblib_dump(obj, path, compress)
  if compress:
    assert smpl_pickle.compression_of(path.read_bytes()[:8]) is not None
  out = smpl_pickle.load_pickle(str(path))
  np.testing.assert_array_equal(out["c"], obj["c"])
  np.testing.assert_array_equal(out["f"], obj["f"])
  assert out["f"].flags.f_contiguous and not out["f"].flags.c_contiguous
  assert out["o"][1] == "s" and np.array_equal(out["o"][0]["x"], np.ones(2))
  assert out["scalar"] == np.float32(2.5) and out["scalar"].dtype == np.float32
  assert out["empty"].shape == (0, 3)
  assert out["nested"] == [{"k": (1, "z")}, {1, 2}] and out["b"] == b"\x00\xff"


@pytest.mark.parametrize("compress", [0, 3], ids=str)
@pytest.mark.parametrize("where", ["top", "object_array"])
def test_malicious_joblib_file_is_refused_and_runs_nothing(tmp_path, compress, where):
  """A code-referencing global inside a joblib file (also inside the nested pickle of an
  object array) is refused before anything runs; joblib.load of the same file runs it."""
  joblib = pytest.importorskip("joblib")
  marker = tmp_path / "pwned"
  payload = _Payload(os.system, (f"touch {marker}",))
  if where == "object_array":
    payload = np.array([payload, 1], dtype=object)
  path = tmp_path / "evil.pkl"
  joblib.dump({"smpl": np.zeros(3), "x": payload}, path, compress=compress)
  with pytest.raises(smpl_pickle.UnsafePickleError, match=r"evil\.pkl.*system"):
    smpl_pickle.load_pickle(str(path))
  assert not marker.exists()
  joblib.load(path)  # the control: joblib's own loader runs the payload
  assert marker.exists()


class _Huge:
  """Pickles as an ndarray that claims 1 TiB: ``_reconstruct`` of a 0-length array, then
  BUILD with the huge shape (what numpy itself writes, with another shape)."""

  def __reduce__(self):
    return (np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),  # pylint: disable=protected-access
            (1, (1 << 40,), np.dtype(np.uint8), False, b""))


class _HugeDirect:
  def __reduce__(self):
    return np.core.multiarray._reconstruct, (np.ndarray, (1 << 40,), b"b")  # pylint: disable=protected-access


def _joblib_record(shape, dtype="uint8"):
  joblib = pytest.importorskip("joblib")
  wrapper = joblib.numpy_pickle.NumpyArrayWrapper(np.ndarray, shape, "C", np.dtype(dtype))
  return pickle.dumps({"mask": wrapper}, protocol=4)


@pytest.mark.parametrize("kind", ["build", "build_p4", "reconstruct", "joblib", "joblib_zlib"])
def test_terabyte_array_is_refused_with_a_clear_message(tmp_path, kind):
  """A file asking for a 1 TiB array is refused before the allocation: a PickleTooLargeError
  (a ValueError) naming the file, the shape and the limit; never a MemoryError."""
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # np.core in the fixtures' pickles
    blob = {"build": lambda: pickle.dumps({"a": _Huge()}, protocol=2),
            "reconstruct": lambda: pickle.dumps({"a": _HugeDirect()}, protocol=4),
            "joblib": lambda: _joblib_record((1 << 40,)),
            "joblib_zlib": lambda: zlib.compress(_joblib_record((1 << 20, 1 << 20)), 3),
            "build_p4": lambda: pickle.dumps({"a": _Huge()}, protocol=4)}[kind]()
  path = tmp_path / "huge.pkl"
  path.write_bytes(blob)
  with pytest.raises(smpl_pickle.PickleTooLargeError,
                     match=r"huge\.pkl.*refusing an array of shape .*1\.0 TiB.*limit of 2\.0 GiB"):
    smpl_pickle.load_pickle(str(path))


def test_calling_ndarray_is_refused(tmp_path):
  """``numpy.ndarray`` resolves only as _reconstruct's type argument: calling it (which would
  allocate any shape) fails as a malformed file, not a MemoryError."""
  path = tmp_path / "call.pkl"
  path.write_bytes(pickle.dumps({"a": _Payload(np.ndarray, ((1 << 40,), "u1"))}, protocol=4))
  with pytest.raises(ValueError, match=r"call\.pkl: not a readable pickle"):
    smpl_pickle.load_pickle(str(path))


def test_size_cap_is_configurable(tmp_path, monkeypatch):
  """``max_bytes=`` and ``$HSJAX_PICKLE_MAX_BYTES`` set the cap: on arrays, on .npy / .npz
  members and on how far a compressed stream may inflate (a decompression bomb)."""
  array = np.zeros(4096, np.float64)  # 32 KiB
  path = tmp_path / "a.pkl"
  path.write_bytes(pickle.dumps({"a": array}))
  assert smpl_pickle.load_pickle(str(path))["a"].shape == (4096,)
  with pytest.raises(smpl_pickle.PickleTooLargeError, match="32.0 KiB"):
    smpl_pickle.load_pickle(str(path), max_bytes=16 << 10)
  monkeypatch.setenv("HSJAX_PICKLE_MAX_BYTES", str(16 << 10))
  with pytest.raises(smpl_pickle.PickleTooLargeError, match="HSJAX_PICKLE_MAX_BYTES"):
    smpl_pickle.load_pickle(str(path))
  np.save(tmp_path / "a.npy", array)
  with pytest.raises(smpl_pickle.PickleTooLargeError, match=r"a\.npy"):
    smpl_pickle.load_npy(str(tmp_path / "a.npy"))
  np.savez(tmp_path / "m.npz", v_template=array)
  with pytest.raises(smpl_pickle.PickleTooLargeError, match=r"m\.npz:v_template"):
    smpl_pickle.load_npz_restricted(str(tmp_path / "m.npz"))
  monkeypatch.delenv("HSJAX_PICKLE_MAX_BYTES")
  bomb = tmp_path / "bomb.pkl"
  bomb.write_bytes(zlib.compress(b"\x80\x04" + b"\x00" * (1 << 20), 9))  # 1 MiB from ~1 KiB
  assert bomb.stat().st_size < 4096
  with pytest.raises(smpl_pickle.PickleTooLargeError, match=r"bomb\.pkl.*inflates to more"):
    smpl_pickle.load_pickle(str(bomb), max_bytes=64 << 10)
  monkeypatch.setenv("HSJAX_PICKLE_MAX_BYTES", "lots")
  with pytest.raises(ValueError, match="HSJAX_PICKLE_MAX_BYTES: expected a number"):
    smpl_pickle.load_pickle(str(path))


def test_smpl_body_file_written_with_joblib(tmp_path, chumpy_classes):
  """An SMPL dict saved with joblib (compressed) reads through the same path."""
  ch, _, _ = chumpy_classes
  shapedirs = np.random.default_rng(2).normal(size=(5, 3, 2))
  path = tmp_path / "smpl.pkl"
  _joblib_dump({"shapedirs": _make(ch, x=shapedirs), "f": np.zeros((2, 3), np.int32)}, path, 3)
  out = smpl_pickle.load_smpl_pickle(str(path))
  np.testing.assert_array_equal(out["shapedirs"], shapedirs)
