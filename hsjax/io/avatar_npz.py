"""The avatar as ``.npz``: every field, for an exact reload (``.ply`` is for viewers)."""

from __future__ import annotations

import dataclasses
import json

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hsjax import avatar as avatar_lib
from hsjax import nonrigid as nonrigid_lib
from hsjax.io.npz import read_npz

AVATAR_FORMAT = "hsjax-avatar"
AVATAR_VERSION = 1


def save_avatar(path: str, avatar: avatar_lib.Avatar) -> None:
  """Writes every field of an avatar to ``.npz`` (non-rigid parameters flattened by path)."""
  arrays = {}
  for name in ("means", "log_scales", "quats", "opacity_logits", "sh", "skin_logits",
               "skin_init", "face_ids", "barycentrics", "active"):
    arrays[name] = np.asarray(getattr(avatar, name))
  nonrigid_config = None
  if avatar.nonrigid is not None:
    flat = flax.traverse_util.flatten_dict(jax.device_get(avatar.nonrigid), sep="/")
    for k, v in flat.items():
      arrays["nonrigid/" + k] = np.asarray(v)
    nonrigid_config = dataclasses.asdict(avatar.nonrigid_config)
  meta = {"format": AVATAR_FORMAT, "version": AVATAR_VERSION, "sh_degree": avatar.sh_degree,
          "learn_skinning": avatar.learn_skinning, "nonrigid_config": nonrigid_config}
  arrays["meta"] = np.asarray(json.dumps(meta))
  np.savez(path, **arrays)


def load_avatar(path: str) -> avatar_lib.Avatar:
  """Reads :func:`save_avatar`'s file."""
  data = read_npz(path, "avatar file")
  if "meta" not in data:
    raise ValueError(f"{path}: not an hsjax avatar file (no 'meta' field); found "
                     f"{sorted(data)[:8]}")
  meta = json.loads(str(data.pop("meta")))
  if meta.get("format") != AVATAR_FORMAT:
    raise ValueError(f"{path}: field 'format' must be '{AVATAR_FORMAT}', found "
                     f"{meta.get('format')!r}")
  nonrigid = {k[len("nonrigid/"):]: jnp.asarray(v) for k, v in data.items()
              if k.startswith("nonrigid/")}
  fields = {k: jnp.asarray(v) for k, v in data.items() if not k.startswith("nonrigid/")}
  config = None
  if meta.get("nonrigid_config") is not None:
    config = nonrigid_lib.NonRigidConfig(**meta["nonrigid_config"])
  return avatar_lib.Avatar(
      **fields, nonrigid=flax.traverse_util.unflatten_dict(nonrigid, sep="/") if nonrigid
      else None, sh_degree=int(meta["sh_degree"]), learn_skinning=bool(meta["learn_skinning"]),
      nonrigid_config=config)
