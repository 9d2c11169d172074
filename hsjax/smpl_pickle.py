"""Safe readers for SMPL model files: ``.pkl`` with chumpy / scipy objects, and ``.npz``.

An SMPL ``.pkl`` is a Python pickle, and plain ``pickle.load`` on a file from the internet runs
whatever code the file names. The official files (SMPL v1.0 / v1.1, SMPLify's neutral model)
are Python-2 pickles holding numpy arrays, ``chumpy.ch.Ch`` objects (``shapedirs``, sometimes
``v_template`` and ``weights``) and ``scipy.sparse.csc_matrix`` objects (``J_regressor``).
:class:`RestrictedUnpickler` resolves only a short whitelist of globals:

* numpy's array and scalar reconstructors (``_reconstruct``, ``ndarray``, ``dtype``,
  ``scalar``, ``_frombuffer``) under both ``numpy.core`` and ``numpy._core`` names;
* ``copyreg`` / ``copy_reg`` ``_reconstructor`` and ``__newobj__``, ``object`` and ``set``
  (from ``builtins`` / ``__builtin__``), and ``_codecs.encode`` (how protocol-2 pickles
  store ``bytes``);
* every ``chumpy.*`` class, mapped to :class:`ChumpyStub`, which only records its pickled state
  (a ``Ch`` keeps its value in ``state["x"]``; an indexed node ``Select`` keeps ``a``, ``idxs``
  and ``preferred_shape``);
* ``scipy.sparse`` CSC / CSR matrices and arrays, mapped to :class:`SparseStub`, which
  densifies ``data`` / ``indices`` / ``indptr`` with numpy (scipy is not needed).

Every other global is refused with :class:`UnsafePickleError` before it is imported, so the
pickle cannot call it. chumpy itself is never imported (it does not install on numpy >= 1.24).
"""

from __future__ import annotations

import ast
import codecs
import copyreg
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle referenced a global outside the whitelist (nothing was called)."""


class _PickledState:
  """A stub object: keeps the state a pickle gives it, and runs nothing."""

  state: dict = {}  # replaced (never mutated) by ``__setstate__``

  def __init__(self, *args, **kwargs):  # pylint: disable=unused-argument
    # ``copyreg._reconstructor`` (protocol 0/1 pickles) calls ``__init__``; nothing to do.
    pass

  def __setstate__(self, state):
    self.state = dict(state) if isinstance(state, dict) else {"__state__": state}


class ChumpyStub(_PickledState):
  """Stands in for any chumpy class; holds the pickled ``__dict__`` of the node.

  chumpy's ``Ch.__getstate__`` returns the instance ``__dict__`` (minus caches): the value of a
  leaf ``Ch`` is ``state["x"]``; ``chumpy.reordering.Select`` nodes hold ``a`` (a node),
  ``idxs`` (flat indices into ``a``) and optionally ``preferred_shape``.
  """

  class_name = "chumpy"  # the pickled module.name, set per subclass by the unpickler


  def value(self, where: str) -> np.ndarray:
    """The node's array value; ``where`` names the field for error messages."""
    state = self.state
    if "x" in state:
      return np.asarray(_resolve(state["x"], where))
    if "a" in state and "idxs" in state:
      base = np.asarray(_resolve(state["a"], where))
      out = base.ravel()[np.asarray(_resolve(state["idxs"], where)).ravel()]
      shape = state.get("preferred_shape")
      return out.reshape(tuple(shape)) if shape is not None else out
    raise ValueError(f"{where}: unsupported chumpy node {self.class_name}; it holds "
                     f"neither 'x' nor 'a'/'idxs' (found state keys {sorted(state)})")



class SparseStub(_PickledState):
  """Stands in for ``scipy.sparse`` CSC / CSR matrices; densified with numpy."""

  layout = "csc"  # set per subclass by :func:`_sparse_stub`
  class_name = "scipy.sparse.csc_matrix"


  def value(self, where: str) -> np.ndarray:
    """Dense ``[rows, cols]`` array."""
    state = self.state
    # scipy >= 1.? pickles the shape as ``_shape``; older releases as ``shape``.
    shape = state.get("_shape", state.get("shape"))
    missing = [k for k in ("data", "indices", "indptr") if k not in state]
    if shape is None or missing:
      raise ValueError(f"{where}: malformed {self.class_name} (missing "
                       f"{missing + (['_shape'] if shape is None else [])}; found "
                       f"{sorted(state)})")
    data = np.asarray(_resolve(state["data"], where))
    indices = np.asarray(_resolve(state["indices"], where)).astype(np.int64)
    indptr = np.asarray(_resolve(state["indptr"], where)).astype(np.int64)
    rows, cols = (int(s) for s in shape)
    major = cols if self.layout == "csc" else rows
    if indptr.shape != (major + 1,) or indptr[-1] != data.size or indices.size != data.size:
      raise ValueError(f"{where}: inconsistent {self.class_name} of shape {(rows, cols)}: "
                       f"indptr {indptr.shape}, indices {indices.shape}, data {data.shape}")
    minor_dim = rows if self.layout == "csc" else cols
    if indices.size and (indices.min() < 0 or indices.max() >= minor_dim):
      raise ValueError(f"{where}: {self.class_name} indices out of range [0, {minor_dim})")
    major_idx = np.repeat(np.arange(major), np.diff(indptr))
    dense = np.zeros((rows, cols), data.dtype)
    if self.layout == "csc":
      np.add.at(dense, (indices, major_idx), data)  # duplicates sum, as in scipy
    else:
      np.add.at(dense, (major_idx, indices), data)
    return dense


def _sparse_stub(layout: str, name: str) -> type:
  return type(f"{name}Stub", (SparseStub,), {"layout": layout, "class_name": name})


_CSC_STUB = _sparse_stub("csc", "scipy.sparse.csc_matrix")
_CSR_STUB = _sparse_stub("csr", "scipy.sparse.csr_matrix")
_SPARSE_CLASSES = {"csc_matrix": _CSC_STUB, "csc_array": _CSC_STUB,
                   "csr_matrix": _CSR_STUB, "csr_array": _CSR_STUB}

def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
  """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin1 only.

  The general ``codecs.encode`` reaches every registered codec (zlib, base64, ...); a model
  file needs none of them.
  """
  if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
    raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r} in pickle")
  return codecs.encode(text, "latin1")


# pylint: disable=protected-access
# (module, name) -> object. These only build arrays, scalars, dtypes, sets and plain objects;
# none of them can reach a callable that is not itself in this table.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
  _SAFE_GLOBALS[(_mod, "_reconstruct")] = _multiarray._reconstruct
  _SAFE_GLOBALS[(_mod, "scalar")] = _multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
  _SAFE_GLOBALS[(_mod, "_frombuffer")] = _numeric._frombuffer
_SAFE_GLOBALS[("numpy", "ndarray")] = np.ndarray
_SAFE_GLOBALS[("numpy", "dtype")] = np.dtype
for _mod in ("copyreg", "copy_reg"):
  _SAFE_GLOBALS[(_mod, "_reconstructor")] = copyreg._reconstructor
  _SAFE_GLOBALS[(_mod, "__newobj__")] = copyreg.__newobj__
for _mod in ("builtins", "__builtin__"):
  _SAFE_GLOBALS[(_mod, "object")] = object
  _SAFE_GLOBALS[(_mod, "set")] = set
_SAFE_GLOBALS[("_codecs", "encode")] = _latin1_encode
# pylint: enable=protected-access


class RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that resolves only the whitelisted globals (see the module docstring).

  Args:
    file: binary file object.
    source: file name used in error messages.
  """

  def __init__(self, file, *, source: str):
    # Python-2 pickles store numpy buffers as ``str``; latin1 maps bytes 1:1 (numpy re-encodes).
    super().__init__(file, encoding="latin1")
    self._source = source

  def find_class(self, module: str, name: str) -> Any:
    obj = _SAFE_GLOBALS.get((module, name))
    if obj is not None:
      return obj
    if module == "chumpy" or module.startswith("chumpy."):
      return type(name, (ChumpyStub,), {"class_name": f"{module}.{name}"})
    if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and (
        name in _SPARSE_CLASSES):
      return _SPARSE_CLASSES[name]
    raise UnsafePickleError(
        f"{self._source}: refusing to load global '{module}.{name}': an SMPL model file may "
        "only reference numpy arrays, chumpy and scipy.sparse CSC/CSR matrices; this file "
        "references other code and was not loaded")

  def persistent_load(self, pid):
    raise UnsafePickleError(f"{self._source}: refusing persistent id {pid!r} in pickle")


def _resolve(value: Any, where: str) -> Any:
  """Replaces chumpy / sparse stubs (also inside containers) with dense ndarrays."""
  if isinstance(value, (ChumpyStub, SparseStub)):
    return value.value(where)
  if isinstance(value, dict):
    return {k: _resolve(v, f"{where}.{k}") for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(v, where) for v in value)
  if isinstance(value, np.ndarray) and value.dtype == object:
    items = [_resolve(v, where) for v in value.ravel().tolist()]
    if value.ndim == 0:
      return items[0]
    if all(isinstance(v, str) for v in items):
      return np.asarray(items).reshape(value.shape)
    out = np.empty(value.shape, object)
    out.ravel()[:] = items  # ravel of a fresh array is a view
    return out
  return value


def restricted_loads(data: bytes, *, source: str = "<bytes>") -> Any:
  """Unpickles ``data`` through :class:`RestrictedUnpickler` and resolves the stubs."""
  import io  # pylint: disable=g-import-not-at-top
  return _resolve(RestrictedUnpickler(io.BytesIO(data), source=source).load(), source)


def load_smpl_pickle(path: str) -> dict[str, Any]:
  """Reads an SMPL-format ``.pkl`` (official v1.0 / v1.1 files included) without running code.

  Args:
    path: the ``.pkl`` file.

  Returns:
    The file's top-level dict. chumpy objects and scipy sparse matrices are replaced by dense
    ``np.ndarray`` values; other fields (strings such as ``bs_style``, the
    ``pose_training_info`` dict) are returned as the plain Python values they are.

  Raises:
    FileNotFoundError: no such file.
    UnsafePickleError: the pickle references a global outside the whitelist.
    ValueError: the file is not a pickled dict, or a chumpy / sparse object is malformed.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"SMPL model file not found: {path}")
  with open(path, "rb") as f:
    try:
      data = RestrictedUnpickler(f, source=path).load()
    except UnsafePickleError:
      raise
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError) as e:
      raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a pickled dict of SMPL fields, found "
                     f"{type(data).__name__}")
  return {str(k): _resolve(v, f"{path}:{k}") for k, v in data.items()}


# ------------------------------------------------------------------------------------------
# .npz


_NPY_MAGIC = b"\x93NUMPY"


def _read_npy_header(f, where: str) -> tuple[np.dtype, tuple[int, ...], bool]:
  """Parses a ``.npy`` header (format versions 1, 2, 3) from an open member.

  Returns ``(dtype, shape, fortran_order)``; the file is left at the start of the data.
  """
  magic = f.read(8)
  if len(magic) != 8 or magic[:6] != _NPY_MAGIC:
    raise ValueError(f"{where}: not a .npy member (bad magic {magic[:6]!r})")
  major = magic[6]
  if major == 1:
    (length,) = struct.unpack("<H", f.read(2))
  elif major in (2, 3):
    (length,) = struct.unpack("<I", f.read(4))
  else:
    raise ValueError(f"{where}: unsupported .npy format version {major}.{magic[7]}")
  text = f.read(length).decode("utf8" if major == 3 else "latin1")
  try:
    header = ast.literal_eval(text)  # literals only: no names, no calls
  except (ValueError, SyntaxError) as e:
    raise ValueError(f"{where}: malformed .npy header {text!r}") from e
  if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
    raise ValueError(f"{where}: malformed .npy header {text!r}")
  dtype = np.lib.format.descr_to_dtype(header["descr"])
  return dtype, tuple(int(s) for s in header["shape"]), bool(header["fortran_order"])


def load_npz_restricted(path: str) -> dict[str, Any]:
  """Reads an SMPL-format ``.npz`` without executing pickled code.

  Numeric members are read with ``allow_pickle=False``. Object members (e.g. a pickled sparse
  ``J_regressor`` or string fields, as ``np.savez`` writes them from a de-chumpied SMPL dict)
  are unpickled by :class:`RestrictedUnpickler`; a 0-d object member becomes the object it
  holds (a sparse matrix becomes a dense ndarray).

  Args:
    path: the ``.npz`` file.

  Returns:
    Mapping from member name (without ``.npy``) to its value.

  Raises:
    FileNotFoundError: no such file.
    UnsafePickleError: an object member references a global outside the whitelist.
    ValueError: not a zip of ``.npy`` members.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"body model file not found: {path}")
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path}: not an .npz (zip) file")
  out = {}
  with zipfile.ZipFile(path) as zf:
    for member in zf.namelist():
      if not member.endswith(".npy"):
        continue
      key = member[:-4]
      where = f"{path}:{key}"
      with zf.open(member) as f:
        dtype, shape, _ = _read_npy_header(f, where)
        if not dtype.hasobject:
          out[key] = None  # read below with numpy's own reader, pickles disabled
          continue
        value = RestrictedUnpickler(f, source=where).load()
      if not isinstance(value, np.ndarray) or value.shape != shape:
        raise ValueError(f"{where}: object member should unpickle to an array of shape "
                         f"{shape}, found {type(value).__name__}")
      out[key] = _resolve(value, where)
    numeric = [k for k, v in out.items() if v is None]
    if numeric:
      with np.load(path, allow_pickle=False) as npz:
        for key in numeric:
          out[key] = npz[key]
  return out
