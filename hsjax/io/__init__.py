"""Files hsjax writes and reads back: one format per purpose.

* :mod:`~hsjax.io.ply` — 3DGS ``.ply`` (plain Gaussians, and the avatar with its skinning
  attributes), for splat viewers and interchange;
* :mod:`~hsjax.io.avatar_npz` — the avatar, every field, for an exact reload;
* :mod:`~hsjax.io.smpl_npz` — SMPL parameters in smplx's naming;
* :mod:`~hsjax.io.checkpoint` — fit checkpoints (msgpack, atomic writes, rotation).
"""

from hsjax.io.avatar_npz import load_avatar
from hsjax.io.avatar_npz import save_avatar
from hsjax.io.ply import load_avatar_ply
from hsjax.io.ply import load_ply
from hsjax.io.ply import save_avatar_ply
from hsjax.io.ply import save_ply
from hsjax.io.smpl_npz import load_smpl_npz
from hsjax.io.smpl_npz import save_smpl_npz

__all__ = [
    "load_avatar",
    "load_avatar_ply",
    "load_ply",
    "load_smpl_npz",
    "save_avatar",
    "save_avatar_ply",
    "save_ply",
    "save_smpl_npz",
]
