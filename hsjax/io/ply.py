"""Gaussians and avatars as 3DGS ``.ply`` files (the layout splat viewers open).

The vertex element has, in this order, the properties of the official 3DGS output
(``GaussianModel.save_ply``), all ``float`` (float32), binary little-endian:

``x y z nx ny nz f_dc_0..2 f_rest_0..(3·(K−1)−1) opacity scale_0..2 rot_0..3``

* ``f_dc_c`` is the SH DC coefficient of channel c; ``f_rest`` holds the higher bands
  *channel-major* (``f_rest_{c·(K−1) + k−1}`` is coefficient k of channel c), as 3DGS stores
  ``features_rest`` transposed; K = (degree + 1)² and the degree is read back from the count;
* ``opacity`` is the logit, ``scale_*`` the log standard deviations, ``rot_*`` the quaternion
  (w, x, y, z), written normalised (viewers use it as stored); ``nx ny nz`` are zeros.

Gaussians with ``colors`` (RGB) are written as degree-0 SH, ``f_dc = (rgb − 0.5) / C0``
(3DGS ``RGB2SH``). A :class:`Gaussians` round trip is exact up to the float32 rounding of
``log``/``exp`` and ``logit``/``sigmoid`` (a few ulp).

:func:`save_avatar_ply` writes the canonical avatar in the same layout (so viewers show the
canonical body) followed by extra properties that viewers ignore: ``skin_init_0..23``,
``skin_logit_0..23``, ``face_id`` (int), ``bary_0..2``, ``active`` (uchar) and
``opacity_logit`` (the stored ``opacity`` of inactive slots is −30 so viewers hide them) and
``quat_param_0..3`` (the unnormalised rotation parameters). The raw parameters are stored, so
an avatar round trip is bit-exact. :func:`save_posed_ply` writes the avatar carried into one
frame's pose (world space), which viewers then show in that pose. Non-rigid MLP parameters go to
a sidecar ``<path>.nonrigid.msgpack`` (flax serialisation); the static fields go to header
comments.
"""

from __future__ import annotations

import dataclasses
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import nonrigid as nonrigid_lib
from hsjax.gaussians import Gaussians

SH_C0 = 0.28209479177387814
_NUM_JOINTS = 24
# Opacity logit written for inactive avatar slots: sigmoid(−30) ≈ 1e−13, invisible in viewers.
_HIDDEN_LOGIT = -30.0
_AVATAR_COMMENT = "hsjax_avatar"

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_TYPE_NAMES = {"f4": "float", "f8": "double", "i4": "int", "u1": "uchar"}


# ------------------------------------------------------------------------------------------
# Generic PLY vertex tables


def write_vertex_ply(path: str, columns: dict, comments=()) -> None:
  """Writes one ``vertex`` element, binary little-endian.

  Args:
    path: output file.
    columns: ordered ``name -> [N] array`` (float32, float64, int32 or uint8).
    comments: header comment lines.
  """
  names = list(columns)
  n = len(next(iter(columns.values()))) if columns else 0
  dtype = []
  for name in names:
    arr = np.asarray(columns[name])
    if arr.shape != (n,):
      raise ValueError(f"{path}: column '{name}' must have shape [{n}], found {arr.shape}")
    code = arr.dtype.str[1:]
    if code not in _TYPE_NAMES:
      raise ValueError(f"{path}: column '{name}' has unsupported dtype {arr.dtype}")
    dtype.append((name, "<" + code))
  table = np.empty(n, dtype=dtype)
  for name in names:
    table[name] = columns[name]
  header = ["ply", "format binary_little_endian 1.0"]
  header += [f"comment {c}" for c in comments]
  header.append(f"element vertex {n}")
  header += [f"property {_TYPE_NAMES[code[1:]]} {name}" for name, code in dtype]
  header.append("end_header")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(("\n".join(header) + "\n").encode("ascii"))
    f.write(table.tobytes())


def read_vertex_ply(path: str) -> tuple[dict, list[str]]:
  """Reads the ``vertex`` element of a PLY file (binary either endianness, or ascii).

  Returns:
    ``(columns, comments)``: ordered ``name -> [N] ndarray`` and the header comment lines.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"PLY file not found: {path}")
  with open(path, "rb") as f:
    if f.readline().strip() != b"ply":
      raise ValueError(f"{path}: not a PLY file (first line is not 'ply')")
    fmt, comments, elements = None, [], []
    while True:
      line = f.readline()
      if not line:
        raise ValueError(f"{path}: PLY header has no 'end_header'")
      words = line.decode("ascii", errors="replace").split()
      if not words:
        continue
      if words[0] == "end_header":
        break
      if words[0] == "format":
        fmt = words[1]
      elif words[0] == "comment":
        comments.append(line.decode("ascii", errors="replace")[len("comment"):].strip())
      elif words[0] == "element":
        elements.append((words[1], int(words[2]), []))
      elif words[0] == "property":
        if not elements:
          raise ValueError(f"{path}: 'property' before any 'element' in the header")
        if words[1] == "list":
          raise ValueError(f"{path}: list property '{words[-1]}' in element "
                           f"'{elements[-1][0]}' is not supported")
        if words[1] not in _PLY_TYPES:
          raise ValueError(f"{path}: unknown PLY type '{words[1]}' of property '{words[2]}'")
        elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
    if not elements or elements[0][0] != "vertex":
      raise ValueError(f"{path}: expected 'vertex' as the first element, found "
                       f"{[e[0] for e in elements]}")
    _, n, props = elements[0]
    if fmt in ("binary_little_endian", "binary_big_endian"):
      order = "<" if fmt == "binary_little_endian" else ">"
      dtype = np.dtype([(name, order + code) for name, code in props])
      data = f.read(dtype.itemsize * n)
      if len(data) < dtype.itemsize * n:
        raise ValueError(f"{path}: truncated: expected {n} vertices of {dtype.itemsize} bytes, "
                         f"found {len(data)} bytes")
      table = np.frombuffer(data, dtype=dtype, count=n)
      columns = {name: table[name].astype(table[name].dtype.newbyteorder("="))
                 for name, _ in props}
    elif fmt == "ascii":
      rows = [f.readline().split() for _ in range(n)]
      if any(len(r) != len(props) for r in rows):
        raise ValueError(f"{path}: ascii vertex rows must have {len(props)} values")
      values = np.asarray(rows, np.float64).reshape(n, len(props))
      columns = {name: values[:, i].astype(code) for i, (name, code) in enumerate(props)}
    else:
      raise ValueError(f"{path}: unknown PLY format '{fmt}'")
  return columns, comments


# ------------------------------------------------------------------------------------------
# Gaussians


def unit_quaternions(quats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(quats / |quats|, |quats|)`` for ``quats [N, 4]``; a zero quaternion becomes the
  identity (w = 1). Splat viewers take ``rot_*`` as a rotation as stored, so files hold unit
  quaternions."""
  quats = np.asarray(quats, np.float64)
  norms = np.linalg.norm(quats, axis=-1)
  unit = np.where(norms[:, None] > 0, quats / np.maximum(norms, 1e-30)[:, None],
                  np.array([1.0, 0.0, 0.0, 0.0]))
  return unit.astype(np.float32), norms.astype(np.float32)


def _gaussian_columns(means, quats, log_scales, opacity_logits, sh) -> dict:
  n = means.shape[0]
  quats, _ = unit_quaternions(quats)
  cols = {}
  for i, axis in enumerate("xyz"):
    cols[axis] = means[:, i]
  for axis in ("nx", "ny", "nz"):
    cols[axis] = np.zeros(n, np.float32)
  for c in range(3):
    cols[f"f_dc_{c}"] = sh[:, 0, c]
  rest = np.transpose(sh[:, 1:, :], (0, 2, 1)).reshape(n, -1)  # [N, 3 (K − 1)] channel-major
  for i in range(rest.shape[1]):
    cols[f"f_rest_{i}"] = rest[:, i]
  cols["opacity"] = opacity_logits
  for i in range(3):
    cols[f"scale_{i}"] = log_scales[:, i]
  for i in range(4):
    cols[f"rot_{i}"] = quats[:, i]
  return {k: np.ascontiguousarray(v, np.float32) for k, v in cols.items()}


def save_ply(path: str, gaussians: Gaussians, *, skip_transparent: bool = True) -> None:
  """Writes world-space Gaussians (e.g. ``hsjax.deform`` of one frame) as a 3DGS ``.ply``.

  Args:
    path: output file.
    gaussians: unbatched :class:`Gaussians` with ``sh`` [N, K, 3] or ``colors`` [N, 3].
    skip_transparent: leave out Gaussians with opacity exactly 0 (inactive avatar slots);
      their logit would be −inf.
  """
  means = np.asarray(gaussians.means, np.float32)
  if means.ndim != 2 or means.shape[1] != 3:
    raise ValueError(f"save_ply: means must be [N, 3] (one frame), found {means.shape}")
  if gaussians.sh is not None:
    sh = np.asarray(gaussians.sh, np.float32)
    if sh.ndim != 3 or sh.shape[2] != 3 or int(np.sqrt(sh.shape[1])) ** 2 != sh.shape[1]:
      raise ValueError(f"save_ply: sh must be [N, (d+1)², 3], found {sh.shape}")
  elif gaussians.colors is not None:
    colors = np.asarray(gaussians.colors, np.float32)
    if colors.shape != means.shape:
      raise ValueError(f"save_ply: colors must be RGB [N, 3], found {colors.shape}")
    sh = ((colors - 0.5) / SH_C0)[:, None, :]
  else:
    raise ValueError("save_ply: the Gaussians have neither sh nor colors")
  opacities = np.asarray(gaussians.opacities, np.float64)
  keep = opacities > 0 if skip_transparent else np.ones(len(means), bool)
  if np.any((opacities[keep] <= 0) | (opacities[keep] >= 1)):
    raise ValueError("save_ply: opacities must lie in (0, 1) to be stored as logits (found "
                     f"range [{opacities.min()}, {opacities.max()}]); 0 is allowed with "
                     "skip_transparent=True")
  kept = opacities[keep]
  logits = np.log(kept) - np.log1p(-kept)
  scales = np.asarray(gaussians.scales, np.float64)[keep]
  if np.any(scales <= 0):
    raise ValueError("save_ply: scales must be > 0 (they are stored as logs)")
  cols = _gaussian_columns(means[keep], np.asarray(gaussians.quats)[keep], np.log(scales),
                           logits, sh[keep])
  write_vertex_ply(path, cols)


def _sh_from_columns(path: str, cols: dict) -> np.ndarray:
  n = len(cols["x"])
  num_rest = sum(1 for k in cols if k.startswith("f_rest_"))
  if num_rest % 3 or int(np.sqrt(num_rest // 3 + 1)) ** 2 != num_rest // 3 + 1:
    raise ValueError(f"{path}: found {num_rest} f_rest_* properties; expected 3·((d+1)²−1) "
                     "for an SH degree d in 0..3")
  k = num_rest // 3 + 1
  sh = np.zeros((n, k, 3), np.float32)
  for c in range(3):
    sh[:, 0, c] = cols[f"f_dc_{c}"]
  rest = np.stack([cols[f"f_rest_{i}"] for i in range(num_rest)], -1) if num_rest else None
  if rest is not None:
    sh[:, 1:, :] = np.transpose(rest.reshape(n, 3, k - 1), (0, 2, 1))
  return sh


def _require(path: str, cols: dict, names) -> None:
  missing = [n for n in names if n not in cols]
  if missing:
    raise ValueError(f"{path}: missing PLY properties {missing}; found {list(cols)}")


_BASE_PROPS = (["x", "y", "z", "opacity"] + [f"f_dc_{c}" for c in range(3)]
               + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])


def load_ply(path: str) -> Gaussians:
  """Reads a 3DGS ``.ply`` into world-space :class:`Gaussians` (``sh`` set, degree from
  the number of ``f_rest_*``; opacities = sigmoid, scales = exp)."""
  cols, _ = read_vertex_ply(path)
  _require(path, cols, _BASE_PROPS)
  stack = lambda names: np.stack([cols[n] for n in names], -1).astype(np.float32)
  logits = cols["opacity"].astype(np.float64)
  return Gaussians(
      means=jnp.asarray(stack(["x", "y", "z"])),
      quats=jnp.asarray(stack([f"rot_{i}" for i in range(4)])),
      scales=jnp.asarray(np.exp(stack([f"scale_{i}" for i in range(3)]).astype(np.float64)),
                         jnp.float32),
      opacities=jnp.asarray(1.0 / (1.0 + np.exp(-logits)), jnp.float32),
      sh=jnp.asarray(_sh_from_columns(path, cols)))


# ------------------------------------------------------------------------------------------
# Avatars


def save_posed_ply(path: str, avatar, body_model, poses, frame: int) -> None:
  """Writes the avatar posed at ``frame`` of ``poses`` (world space) as a plain 3DGS ``.ply``.

  Args:
    path: output file.
    avatar: a canonical :class:`hsjax.avatar.Avatar`.
    body_model: the body model the avatar was fitted with.
    poses: ``SMPLParams`` with T frames (e.g. a run's ``smpl_refined.npz``).
    frame: index in ``[-T, T)``.

  Raises:
    ValueError: ``frame`` out of range (the message gives T).
  """
  num = int(np.asarray(poses.body_pose).shape[0])
  if not -num <= frame < num:
    raise ValueError(f"frame {frame} out of range: the poses have {num} frames "
                     f"(expected 0..{num - 1})")
  pose = body_lib.SMPLParams(betas=jnp.asarray(poses.betas),
                             body_pose=jnp.asarray(poses.body_pose)[frame],
                             global_orient=jnp.asarray(poses.global_orient)[frame],
                             transl=jnp.asarray(poses.transl)[frame])
  gaussians = avatar_lib.deform_with_aux(avatar, body_model, pose.betas, pose.body_pose,
                                         pose.global_orient, pose.transl).gaussians
  save_ply(path, gaussians)


def save_avatar_ply(path: str, avatar) -> None:
  """Writes a canonical :class:`hsjax.avatar.Avatar` (all slots) losslessly; see module doc."""
  active = np.asarray(avatar.active)
  logits = np.asarray(avatar.opacity_logits, np.float32)
  cols = _gaussian_columns(np.asarray(avatar.means), np.asarray(avatar.quats),
                           np.asarray(avatar.log_scales), np.where(active, logits, _HIDDEN_LOGIT),
                           np.asarray(avatar.sh))
  # rot_* are unit quaternions (what viewers need); the raw parameters make the reload exact.
  quats = np.asarray(avatar.quats, np.float32)
  for i in range(4):
    cols[f"quat_param_{i}"] = np.ascontiguousarray(quats[:, i])
  skin_init = np.asarray(avatar.skin_init, np.float32)
  skin_logits = np.asarray(avatar.skin_logits, np.float32)
  for j in range(_NUM_JOINTS):
    cols[f"skin_init_{j}"] = skin_init[:, j]
  for j in range(_NUM_JOINTS):
    cols[f"skin_logit_{j}"] = skin_logits[:, j]
  cols["face_id"] = np.asarray(avatar.face_ids, np.int32)
  bary = np.asarray(avatar.barycentrics, np.float32)
  for k in range(3):
    cols[f"bary_{k}"] = bary[:, k]
  cols["active"] = active.astype(np.uint8)
  cols["opacity_logit"] = logits
  comments = [f"{_AVATAR_COMMENT} sh_degree={avatar.sh_degree} "
              f"learn_skinning={int(avatar.learn_skinning)}"]
  sidecar = path + ".nonrigid.msgpack"
  if avatar.nonrigid is not None:

    config = dataclasses.asdict(avatar.nonrigid_config)
    comments.append(f"{_AVATAR_COMMENT}_nonrigid " + " ".join(f"{k}={v}" for k, v in
                                                               config.items()))
    with open(sidecar, "wb") as f:
      f.write(flax.serialization.to_bytes(jax.device_get(avatar.nonrigid)))
  write_vertex_ply(path, cols, comments)


def load_avatar_ply(path: str):
  """Reads a file written by :func:`save_avatar_ply` back into an identical Avatar."""
  cols, comments = read_vertex_ply(path)
  required = (_BASE_PROPS + [f"skin_init_{j}" for j in range(_NUM_JOINTS)]
              + [f"skin_logit_{j}" for j in range(_NUM_JOINTS)]
              + ["face_id", "active", "opacity_logit"] + [f"bary_{k}" for k in range(3)])
  _require(path, cols, required)
  static = _parse_comment(path, comments, _AVATAR_COMMENT)
  if static is None:
    raise ValueError(f"{path}: no '{_AVATAR_COMMENT}' header comment; not an avatar file "
                     "(use load_ply for plain 3DGS files)")
  sh = _sh_from_columns(path, cols)
  sh_degree = int(static["sh_degree"])
  if sh.shape[1] != (sh_degree + 1) ** 2:
    raise ValueError(f"{path}: header says sh_degree={sh_degree} but the file has "
                     f"{sh.shape[1]} SH coefficients per channel")
  stack = lambda names: jnp.asarray(np.stack([cols[n] for n in names], -1))
  nonrigid, config = None, None
  nonrigid_static = _parse_comment(path, comments, _AVATAR_COMMENT + "_nonrigid")
  if nonrigid_static is not None:
    types = {f.name: f.type for f in dataclasses.fields(nonrigid_lib.NonRigidConfig)}
    cast = {"int": int, "float": float}
    config = nonrigid_lib.NonRigidConfig(**{k: cast[types[k]](v)
                                            for k, v in nonrigid_static.items()})
    sidecar = path + ".nonrigid.msgpack"
    if not os.path.exists(sidecar):
      raise FileNotFoundError(f"{path}: the avatar has non-rigid parameters, but their file "
                              f"{sidecar} is missing")
    target = nonrigid_lib.init_params(jax.random.key(0), config, len(cols["x"]))
    with open(sidecar, "rb") as f:
      nonrigid = flax.serialization.from_bytes(jax.device_get(target), f.read())
    nonrigid = jax.tree.map(jnp.asarray, nonrigid)
  return avatar_lib.Avatar(
      means=stack(["x", "y", "z"]),
      log_scales=stack([f"scale_{i}" for i in range(3)]),
      # Files written before the rotations were normalised have no quat_param_*.
      quats=stack([f"quat_param_{i}" if "quat_param_0" in cols else f"rot_{i}"
                   for i in range(4)]),
      opacity_logits=jnp.asarray(cols["opacity_logit"]),
      sh=jnp.asarray(sh),
      skin_logits=stack([f"skin_logit_{j}" for j in range(_NUM_JOINTS)]),
      skin_init=stack([f"skin_init_{j}" for j in range(_NUM_JOINTS)]),
      face_ids=jnp.asarray(cols["face_id"], jnp.int32),
      barycentrics=stack([f"bary_{k}" for k in range(3)]),
      active=jnp.asarray(cols["active"] != 0),
      nonrigid=nonrigid,
      sh_degree=sh_degree,
      learn_skinning=bool(int(static["learn_skinning"])),
      nonrigid_config=config,
  )


def _parse_comment(path: str, comments, tag: str):
  for c in comments:
    words = c.split()
    if words and words[0] == tag:
      try:
        return dict(w.split("=", 1) for w in words[1:])
      except ValueError as e:
        raise ValueError(f"{path}: malformed header comment '{c}'") from e
  return None
