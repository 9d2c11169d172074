"""Safe readers for pickled files: SMPL model files (``.pkl``, ``.npz``) and joblib files.

An SMPL ``.pkl`` is a Python pickle, and plain ``pickle.load`` on a file from the internet runs
whatever code the file names. The official files (SMPL v1.0 / v1.1, SMPLify's neutral model)
are Python-2 pickles holding numpy arrays, ``chumpy.ch.Ch`` objects (``shapedirs``, sometimes
``v_template`` and ``weights``) and ``scipy.sparse.csc_matrix`` objects (``J_regressor``).
The tools whose outputs hsjax imports write pickles too: PHALP / 4D-Humans and NeuMan with
``joblib.dump`` (optionally compressed), ZJU-MoCap as object ``.npy`` files.
:class:`RestrictedUnpickler` resolves only a short whitelist of globals:

* numpy's array and scalar reconstructors (``_reconstruct``, ``dtype``, ``scalar``,
  ``_frombuffer``) under both ``numpy.core`` and ``numpy._core`` names; ``numpy.ndarray`` is
  accepted only as the type argument of ``_reconstruct`` (calling it is refused);
* ``copyreg`` / ``copy_reg`` ``_reconstructor`` and ``__newobj__``, ``object``, ``set`` and
  ``bytes`` (from ``builtins`` / ``__builtin__``), and ``_codecs.encode`` (how protocol-2
  pickles store ``bytes``);
* every ``chumpy.*`` class, mapped to :class:`ChumpyStub`, which only records its pickled state
  (a ``Ch`` keeps its value in ``state["x"]``; an indexed node ``Select`` keeps ``a``, ``idxs``
  and ``preferred_shape``);
* ``scipy.sparse`` CSC / CSR matrices and arrays, mapped to :class:`SparseStub`, which
  densifies ``data`` / ``indices`` / ``indptr`` with numpy (scipy is not needed);
* joblib's ``NumpyArrayWrapper``, mapped to :class:`JoblibArrayStub`: the record of an array
  whose raw bytes follow it in the stream (``joblib.numpy_pickle.NumpyPickler.save``); the
  unpickler reads those bytes itself (object arrays: a nested pickle, read by a restricted
  unpickler too). joblib is never imported.

Every other global is refused with :class:`UnsafePickleError` before it is imported, so the
pickle cannot call it. chumpy itself is never imported (it does not install on numpy >= 1.24).

**Size cap.** No array a file describes may take more than ``max_bytes`` (default
:data:`DEFAULT_MAX_BYTES`, overridden by the environment variable ``HSJAX_PICKLE_MAX_BYTES``
or the ``max_bytes`` argument), checked *before* anything is allocated; a compressed stream
may not inflate to more than that either. A file over the cap raises
:class:`PickleTooLargeError` (a ``ValueError``) naming the file, the array and the limit,
never a ``MemoryError``.

**joblib containers** (:func:`load_pickle`): ``joblib.dump(obj, path, compress=...)`` writes
the pickle stream through a compressor chosen by ``compress`` (an int is zlib at that level;
``("gzip", 3)``, ``("bz2", 3)``, ``("lzma", 3)``, ``("xz", 3)``, ``("lz4", 3)``); the file
starts with the compressor's magic bytes (zlib ``78``, gzip ``1f 8b``, bz2 ``BZ``, xz
``fd 37 7a 58 5a``, lzma ``5d 00``, lz4 ``04 22 4d 18``), an uncompressed dump starts with the
pickle itself. lz4 needs the ``lz4`` package; joblib files older than 0.10 (``ZF`` prefix,
arrays in side files) are refused with a message.

One concept, one module (about 680 lines): every pickle hsjax reads goes through this reader.
"""

from __future__ import annotations

import ast
import bz2
import codecs
import copyreg
import io
import lzma
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle referenced a global outside the whitelist (nothing was called)."""


class PickleTooLargeError(ValueError):
  """A pickled array (or a compressed stream) is larger than the size cap; nothing allocated."""


# The cap on one array (and on a decompressed stream) unless HSJAX_PICKLE_MAX_BYTES or an
# explicit ``max_bytes`` says otherwise. SMPL's largest array (posedirs, 6890 x 3 x 207 float64)
# is 34 MB; a PHALP result of a 10-minute video is a few hundred MB uncompressed.
DEFAULT_MAX_BYTES = 2 << 30  # 2 GiB
MAX_BYTES_ENV = "HSJAX_PICKLE_MAX_BYTES"


def max_bytes_limit(max_bytes: int | None = None) -> int:
  """The size cap in bytes: ``max_bytes`` if given, else ``$HSJAX_PICKLE_MAX_BYTES``, else
  :data:`DEFAULT_MAX_BYTES`."""
  if max_bytes is not None:
    return int(max_bytes)
  env = os.environ.get(MAX_BYTES_ENV)
  if not env:
    return DEFAULT_MAX_BYTES
  try:
    value = int(float(env))
  except ValueError:
    raise ValueError(f"${MAX_BYTES_ENV}: expected a number of bytes, found {env!r}") from None
  if value <= 0:
    raise ValueError(f"${MAX_BYTES_ENV}: expected a positive number of bytes, found {env!r}")
  return value


def _human(num: float) -> str:
  for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
    if num < 1024 or unit == "PiB":
      return f"{num:.0f} {unit}" if unit == "bytes" else f"{num:.1f} {unit}"
    num /= 1024
  raise AssertionError("unreachable")


def _checked_nbytes(shape: Any, dtype: Any, limit: int, where: str) -> int:
  """Bytes an array of ``shape`` / ``dtype`` needs; raises if over ``limit`` (nothing allocated)."""
  try:
    dims = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    dtype = np.dtype(dtype)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: malformed array record (shape {shape!r}, dtype {dtype!r})") from e
  if any(d < 0 for d in dims):
    raise ValueError(f"{where}: array shape {dims} has a negative dimension")
  nbytes = dtype.itemsize
  for d in dims:  # Python ints: no overflow
    nbytes *= d
  if nbytes > limit:
    raise PickleTooLargeError(
        f"{where}: refusing an array of shape {dims} and dtype {dtype} ({_human(nbytes)}): "
        f"larger than the limit of {_human(limit)} on any pickled array (pass max_bytes= or "
        f"set ${MAX_BYTES_ENV} if the file is trusted and that much memory is meant)")
  return nbytes


class _NdarrayType:
  """Stands for the global ``numpy.ndarray``: only ``_reconstruct`` accepts it; not callable."""

  def __repr__(self):
    return "numpy.ndarray"


_NDARRAY = _NdarrayType()


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


  def value(self, where: str, limit: int | None = None) -> np.ndarray:
    """The node's array value; ``where`` names the field for error messages."""
    state = self.state
    if "x" in state:
      return np.asarray(_resolve(state["x"], where, limit))
    if "a" in state and "idxs" in state:
      base = np.asarray(_resolve(state["a"], where, limit))
      out = base.ravel()[np.asarray(_resolve(state["idxs"], where, limit)).ravel()]
      shape = state.get("preferred_shape")
      return out.reshape(tuple(shape)) if shape is not None else out
    raise ValueError(f"{where}: unsupported chumpy node {self.class_name}; it holds "
                     f"neither 'x' nor 'a'/'idxs' (found state keys {sorted(state)})")



class SparseStub(_PickledState):
  """Stands in for ``scipy.sparse`` CSC / CSR matrices; densified with numpy."""

  layout = "csc"  # set per subclass by :func:`_sparse_stub`
  class_name = "scipy.sparse.csc_matrix"


  def value(self, where: str, limit: int | None = None) -> np.ndarray:
    """Dense ``[rows, cols]`` array (at most ``limit`` bytes, see :func:`max_bytes_limit`)."""
    state = self.state
    # scipy >= 1.? pickles the shape as ``_shape``; older releases as ``shape``.
    shape = state.get("_shape", state.get("shape"))
    missing = [k for k in ("data", "indices", "indptr") if k not in state]
    if shape is None or missing:
      raise ValueError(f"{where}: malformed {self.class_name} (missing "
                       f"{missing + (['_shape'] if shape is None else [])}; found "
                       f"{sorted(state)})")
    data = np.asarray(_resolve(state["data"], where, limit))
    indices = np.asarray(_resolve(state["indices"], where, limit)).astype(np.int64)
    indptr = np.asarray(_resolve(state["indptr"], where, limit)).astype(np.int64)
    rows, cols = (int(s) for s in shape)
    _checked_nbytes((rows, cols), data.dtype, max_bytes_limit(limit), where)
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


class JoblibArrayStub(_PickledState):
  """Stands in for ``joblib.numpy_pickle.NumpyArrayWrapper``: the record of one array.

  joblib pickles the wrapper's ``__dict__`` (``subclass``, ``shape``, ``order`` "C" / "F",
  ``dtype``, ``allow_mmap`` and, since joblib 1.2, ``numpy_array_alignment_bytes``) and writes
  the array right after it in the stream: for plain dtypes one padding-length byte and that many
  pad bytes (only when ``numpy_array_alignment_bytes`` is set), then the raw bytes in
  ``order``; for object dtypes a nested pickle of the array. :class:`RestrictedUnpickler`
  replaces the stub by that array when the stub is built.
  """

  class_name = "joblib.numpy_pickle.NumpyArrayWrapper"


# pylint: disable=protected-access
# (module, name) -> object. These only build arrays, scalars, dtypes, sets and plain objects;
# none of them can reach a callable that is not itself in this table. The array builders
# (``_reconstruct``, ``scalar``, ``_frombuffer``) are bound per unpickler to check the size cap.
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_JOBLIB = ("joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle")
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {}
_SAFE_GLOBALS[("numpy", "ndarray")] = _NDARRAY
_SAFE_GLOBALS[("numpy", "dtype")] = np.dtype
for _mod in ("copyreg", "copy_reg"):
  _SAFE_GLOBALS[(_mod, "_reconstructor")] = copyreg._reconstructor
  _SAFE_GLOBALS[(_mod, "__newobj__")] = copyreg.__newobj__
for _mod in ("builtins", "__builtin__"):
  _SAFE_GLOBALS[(_mod, "object")] = object
  _SAFE_GLOBALS[(_mod, "set")] = set
_SAFE_GLOBALS[("_codecs", "encode")] = _latin1_encode
for _mod in _JOBLIB:
  _SAFE_GLOBALS[(_mod, "NumpyArrayWrapper")] = JoblibArrayStub
# pylint: enable=protected-access


class RestrictedUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """An unpickler that resolves only the whitelisted globals (see the module docstring).

  It is Python's pure-Python unpickler (the one joblib extends too) with ``find_class``
  restricted, and ``BUILD`` checked: the shape an ndarray is given is checked against the size
  cap before numpy allocates it, and a joblib array record is replaced by the array that
  follows it in the stream.

  Args:
    file: binary file object (positioned at the pickle).
    source: file name used in error messages.
    max_bytes: the size cap (:func:`max_bytes_limit`).
  """

  dispatch = dict(pickle._Unpickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, *, source: str, max_bytes: int | None = None):
    # Python-2 pickles store numpy buffers as ``str``; latin1 maps bytes 1:1 (numpy re-encodes).
    super().__init__(file, encoding="latin1")
    self._source = source
    self._file = file
    self._limit = max_bytes_limit(max_bytes)

  def find_class(self, module: str, name: str) -> Any:
    if module in _MULTIARRAY and name == "_reconstruct":
      return self._reconstruct
    if module in _MULTIARRAY and name == "scalar":
      return self._scalar
    if module in _NUMERIC and name == "_frombuffer":
      return self._frombuffer
    if module in ("builtins", "__builtin__") and name == "bytes":
      return self._bytes  # protocol 2 pickles an empty ``bytes`` as ``bytes()``
    obj = _SAFE_GLOBALS.get((module, name))
    if obj is not None:
      return obj
    if module == "chumpy" or module.startswith("chumpy."):
      return type(name, (ChumpyStub,), {"class_name": f"{module}.{name}"})
    if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and (
        name in _SPARSE_CLASSES):
      return _SPARSE_CLASSES[name]
    raise UnsafePickleError(
        f"{self._source}: refusing to load global '{module}.{name}': a file read by hsjax may "
        "only reference numpy arrays, chumpy and scipy.sparse CSC/CSR matrices (and joblib's "
        "array records); this file references other code and was not loaded")

  def persistent_load(self, pid):
    raise UnsafePickleError(f"{self._source}: refusing persistent id {pid!r} in pickle")

  # --- array builders, size-checked -------------------------------------------------------

  def _reconstruct(self, subtype, shape, dtype):
    if subtype is not _NDARRAY:
      raise UnsafePickleError(f"{self._source}: refusing numpy _reconstruct of {subtype!r} "
                              "(only numpy.ndarray is accepted)")
    _checked_nbytes(shape, dtype, self._limit, self._source)
    return _multiarray._reconstruct(np.ndarray, shape, dtype)  # pylint: disable=protected-access

  def _bytes(self, *args):
    if args and isinstance(args[0], int):  # bytes(n) allocates n zero bytes
      _checked_nbytes((args[0],), np.uint8, self._limit, self._source)
    return bytes(*args)

  def _scalar(self, dtype, *args):
    _checked_nbytes((), dtype, self._limit, self._source)
    return _multiarray.scalar(dtype, *args)

  def _frombuffer(self, buf, dtype, shape, order):
    _checked_nbytes(shape, dtype, self._limit, self._source)
    return _numeric._frombuffer(buf, dtype, shape, order)  # pylint: disable=protected-access

  def _load_build(self):
    state, inst = self.stack[-1], self.stack[-2]
    if isinstance(inst, np.ndarray) and isinstance(state, tuple) and len(state) in (4, 5):
      # ndarray.__setstate__((version,) shape, dtype, is_fortran, rawdata) allocates the new
      # shape before it looks at rawdata: check the size first.
      shape, dtype = state[-4], state[-3]
      _checked_nbytes(shape, dtype, self._limit, self._source)
    pickle._Unpickler.load_build(self)  # pylint: disable=protected-access
    if isinstance(self.stack[-1], JoblibArrayStub):
      self.stack[-1] = self._read_joblib_array(self.stack[-1].state)

  dispatch[pickle.BUILD[0]] = _load_build

  def _read_joblib_array(self, record: dict) -> np.ndarray:
    """The array a joblib ``NumpyArrayWrapper`` record announces, read from the stream."""
    where = f"{self._source}: joblib array record"
    missing = [k for k in ("subclass", "shape", "order", "dtype") if k not in record]
    if missing:
      raise ValueError(f"{where}: expected fields subclass, shape, order, dtype; missing "
                       f"{missing} (found {sorted(record)})")
    if record["subclass"] is not _NDARRAY:
      raise UnsafePickleError(f"{where}: refusing array subclass {record['subclass']!r}")
    dtype, order = record["dtype"], record["order"]
    if not isinstance(dtype, np.dtype) or order not in ("C", "F"):
      raise ValueError(f"{where}: expected a numpy dtype and order 'C' or 'F', found "
                       f"{dtype!r} and {order!r}")
    nbytes = _checked_nbytes(record["shape"], dtype, self._limit, where)
    shape = tuple(int(s) for s in record["shape"])
    if dtype.hasobject:  # a nested pickle stream, restricted in the same way
      arr = RestrictedUnpickler(self._file, source=self._source, max_bytes=self._limit).load()
      if not isinstance(arr, np.ndarray) or arr.shape != shape:
        raise ValueError(f"{where}: expected an object array of shape {shape}, found "
                         f"{type(arr).__name__} {getattr(arr, 'shape', '')}")
      return arr
    if record.get("numpy_array_alignment_bytes") is not None:
      pad = self._file.read(1)
      if len(pad) != 1 or len(self._file.read(pad[0])) != pad[0]:
        raise ValueError(f"{where}: the stream ends inside the array padding")
    buf = bytearray(nbytes)
    got = self._file.readinto(buf) if nbytes else 0
    if got != nbytes:
      raise ValueError(f"{where}: the stream ends inside an array of shape {shape} "
                       f"({got} of {nbytes} bytes)")
    flat = np.frombuffer(buf, dtype=dtype)
    return flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape)


def _resolve(value: Any, where: str, limit: int | None = None) -> Any:
  """Replaces chumpy / sparse stubs (also inside containers) with dense ndarrays."""
  if isinstance(value, (ChumpyStub, SparseStub)):
    return value.value(where, limit)
  if isinstance(value, JoblibArrayStub):  # a record not followed by BUILD: malformed
    raise ValueError(f"{where}: joblib array record without its array")
  if isinstance(value, dict):
    return {k: _resolve(v, f"{where}.{k}", limit) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(v, where, limit) for v in value)
  if isinstance(value, np.ndarray) and value.dtype == object:
    items = [_resolve(v, where, limit) for v in value.ravel().tolist()]
    if value.ndim == 0:
      return items[0]
    if all(isinstance(v, str) for v in items):
      return np.asarray(items).reshape(value.shape)
    out = np.empty(value.shape, object)
    out.ravel()[:] = items  # ravel of a fresh array is a view
    return out
  return value


# Errors a malformed (not malicious) stream raises inside the unpickler; reported as ValueError.
_MALFORMED = (pickle.UnpicklingError, EOFError, UnicodeDecodeError, TypeError, KeyError,
              IndexError, AttributeError, ValueError, struct.error, OverflowError)


def _unpickle(file, source: str, limit: int) -> Any:
  """Runs :class:`RestrictedUnpickler` on ``file``; malformed streams become ``ValueError``."""
  try:
    return RestrictedUnpickler(file, source=source, max_bytes=limit).load()
  except (UnsafePickleError, PickleTooLargeError):
    raise
  except _MALFORMED as e:
    if str(e).startswith(source):
      raise
    raise ValueError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from e
  except MemoryError as e:  # an allocation the cap does not see (e.g. a huge list)
    raise PickleTooLargeError(f"{source}: out of memory while unpickling; the file asks for "
                              "more memory than this machine has") from e


def read_naming_the_file(reader, path: str, what: str) -> Any:
  """``reader(path)`` with every failure but a missing file turned into a ``ValueError`` whose
  message starts with ``path`` (``what``, e.g. "pickle", names the expected kind of file).

  Raises:
    FileNotFoundError: no such file (unchanged).
    ValueError: a refused (code-referencing or over-size) or malformed file.
  """
  try:
    return reader(path)
  except FileNotFoundError:
    raise
  except UnsafePickleError as e:
    raise ValueError(f"{path}: refusing to unpickle: {e}") from e
  except (ValueError, pickle.UnpicklingError, EOFError, OSError, MemoryError,
          zipfile.BadZipFile, zlib.error) as e:
    if str(e).startswith(path):
      raise ValueError(str(e)) from e
    raise ValueError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e


def restricted_loads(data: bytes, *, source: str = "<bytes>",
                     max_bytes: int | None = None) -> Any:
  """Unpickles ``data`` through :class:`RestrictedUnpickler` and resolves the stubs."""
  limit = max_bytes_limit(max_bytes)
  return _resolve(_unpickle(io.BytesIO(data), source, limit), source, limit)


# joblib's compressors, by the magic bytes their streams start with
# (joblib/compressor.py: _ZLIB_PREFIX, _GZIP_PREFIX, ...).
_COMPRESSED_PREFIXES = (
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\xfd\x37\x7a\x58\x5a", "xz"),
    (b"\x5d\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
)


def compression_of(head: bytes) -> str | None:
  """The joblib compressor whose magic ``head`` starts with, or ``None`` for a plain pickle.

  A pickle starts with the PROTO opcode ``0x80`` (protocol >= 2) or a protocol-0/1 opcode, none
  of which is a compressor's first byte.
  """
  for prefix, name in _COMPRESSED_PREFIXES:
    if head.startswith(prefix):
      return name
  return None


def _decompressor(kind: str, source: str):
  if kind in ("zlib", "gzip"):
    return zlib.decompressobj(zlib.MAX_WBITS if kind == "zlib" else 31)
  if kind == "bz2":
    return bz2.BZ2Decompressor()
  if kind in ("xz", "lzma"):
    return lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
  try:
    import lz4.frame  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  except ImportError:
    raise ValueError(f"{source}: an lz4-compressed joblib file; reading it needs the 'lz4' "
                     "package (pip install lz4)") from None
  return lz4.frame.LZ4FrameDecompressor()


def decompress(data: bytes, kind: str, *, source: str, max_bytes: int | None = None) -> bytes:
  """Inflates a joblib-compressed stream, never past ``max_bytes`` (a decompression bomb is
  refused with :class:`PickleTooLargeError` after at most that much output)."""
  limit = max_bytes_limit(max_bytes)
  d = _decompressor(kind, source)
  out = bytearray()
  try:
    if kind in ("zlib", "gzip"):
      buf = data
      while buf and not d.eof:
        out += d.decompress(buf, limit + 1 - len(out))
        buf = d.unconsumed_tail
        if len(out) > limit:
          break
      done = d.eof
    else:
      out += d.decompress(data, limit + 1)
      while len(out) <= limit and not d.eof and not d.needs_input:
        out += d.decompress(b"", limit + 1 - len(out))
      done = d.eof
  except (zlib.error, OSError, EOFError, lzma.LZMAError, RuntimeError, ValueError) as e:
    raise ValueError(f"{source}: corrupt {kind}-compressed joblib stream ({e})") from e
  if len(out) > limit:
    raise PickleTooLargeError(
        f"{source}: the {kind}-compressed stream inflates to more than {_human(limit)}, the "
        f"limit (pass max_bytes= or set ${MAX_BYTES_ENV} if the file is trusted)")
  if not done:
    raise ValueError(f"{source}: truncated {kind}-compressed joblib stream")
  return bytes(out)


def load_pickle(path: str, *, max_bytes: int | None = None) -> Any:
  """Reads a pickle, or a file written by ``joblib.dump`` (compressed or not), without running
  code.

  Args:
    path: the file.
    max_bytes: the size cap (:func:`max_bytes_limit`).

  Returns:
    The unpickled object: numpy arrays, plain containers, strings and numbers; chumpy objects
    and scipy sparse matrices become dense ``np.ndarray`` values.

  Raises:
    FileNotFoundError: no such file.
    UnsafePickleError: the stream references a global outside the whitelist.
    PickleTooLargeError: an array or the decompressed stream is over the size cap.
    ValueError: not a pickle / joblib file, or a malformed one (the message names the file).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: file not found")
  limit = max_bytes_limit(max_bytes)
  with open(path, "rb") as f:
    head = f.read(8)
    f.seek(0)
    if head.startswith(b"ZF"):
      raise ValueError(f"{path}: a joblib file from joblib < 0.10 (arrays in side files); "
                       "re-save it with a current joblib in a trusted session")
    kind = compression_of(head)
    if kind is None:
      obj = _unpickle(f, path, limit)
    else:
      obj = _unpickle(io.BytesIO(decompress(f.read(), kind, source=path, max_bytes=limit)),
                      path, limit)
  return _resolve(obj, path, limit)


def load_smpl_pickle(path: str, *, max_bytes: int | None = None) -> dict[str, Any]:
  """Reads an SMPL-format ``.pkl`` (official v1.0 / v1.1 files included) without running code.

  The file may also be a ``joblib.dump`` of the same dict (see :func:`load_pickle`).

  Args:
    path: the ``.pkl`` file.
    max_bytes: the size cap (:func:`max_bytes_limit`).

  Returns:
    The file's top-level dict. chumpy objects and scipy sparse matrices are replaced by dense
    ``np.ndarray`` values; other fields (strings such as ``bs_style``, the
    ``pose_training_info`` dict) are returned as the plain Python values they are.

  Raises:
    FileNotFoundError: no such file.
    UnsafePickleError: the pickle references a global outside the whitelist.
    PickleTooLargeError: an array is over the size cap.
    ValueError: the file is not a pickled dict, or a chumpy / sparse object is malformed.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"SMPL model file not found: {path}")
  data = load_pickle(path, max_bytes=max_bytes)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a pickled dict of SMPL fields, found "
                     f"{type(data).__name__}")
  return {str(k): v for k, v in data.items()}


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


def load_npy(path: str, *, max_bytes: int | None = None) -> Any:
  """Reads a ``.npy`` without running code: numeric arrays with numpy (``allow_pickle=False``),
  object arrays (``np.save`` of a dict, as ZJU-MoCap's ``annots.npy`` and NeuMan's
  ``alignments.npy``) through :class:`RestrictedUnpickler`. A 0-d object array becomes the
  object it holds. The array size is checked against the cap before anything is allocated.

  Raises:
    FileNotFoundError: no such file.
    UnsafePickleError, PickleTooLargeError, ValueError: as :func:`load_pickle`.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: file not found")
  limit = max_bytes_limit(max_bytes)
  with open(path, "rb") as f:
    dtype, shape, _ = _read_npy_header(f, path)
    _checked_nbytes(shape, dtype, limit, path)
    if not dtype.hasobject:
      f.seek(0)
      try:
        return np.load(f, allow_pickle=False)
      except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy ({e})") from e
    obj = _unpickle(f, path, limit)
  if not isinstance(obj, np.ndarray) or obj.shape != shape:
    raise ValueError(f"{path}: object .npy should unpickle to an array of shape {shape}, "
                     f"found {type(obj).__name__}")
  return _resolve(obj, path, limit)  # a 0-d object array becomes the object it holds


def load_npz_restricted(path: str, *, max_bytes: int | None = None) -> dict[str, Any]:
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
    PickleTooLargeError: a member is over the size cap (:func:`max_bytes_limit`).
    ValueError: not a zip of ``.npy`` members.
  """
  path = os.fspath(path)
  limit = max_bytes_limit(max_bytes)
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
        _checked_nbytes(shape, dtype, limit, where)
        if not dtype.hasobject:
          out[key] = None  # read below with numpy's own reader, pickles disabled
          continue
        value = _unpickle(f, where, limit)
      if not isinstance(value, np.ndarray) or value.shape != shape:
        raise ValueError(f"{where}: object member should unpickle to an array of shape "
                         f"{shape}, found {type(value).__name__}")
      out[key] = _resolve(value, where, limit)
    numeric = [k for k, v in out.items() if v is None]
    if numeric:
      with np.load(path, allow_pickle=False) as npz:
        for key in numeric:
          out[key] = npz[key]
  return out
