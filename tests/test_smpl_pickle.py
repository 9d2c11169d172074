"""Tests of the restricted SMPL ``.pkl`` / ``.npz`` readers (hsjax.smpl_pickle)."""

import os
import pickle
import zipfile

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
