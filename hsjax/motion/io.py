"""One entry point for motion files, and the clips shipped with hsjax.

:func:`load_motion` reads

* ``.bvh``: any skeleton, retargeted to SMPL (:func:`hsjax.motion.retarget_bvh`);
* ``.npz``: hsjax's own layout (:func:`hsjax.motion.save_motion`) or AMASS / SMPL-H
  (``poses``, ``trans``, ``mocap_framerate``; :func:`hsjax.motion.load_amass`);
* ``.txt`` / ``.json``: DeepMimic humanoid3d clips (:func:`hsjax.motion.load_deepmimic`).

The shipped clips (:func:`builtin_motions`) are DeepMimic's 15 humanoid3d motion-capture clips
from PyPI's ``pybullet`` wheel (zlib licence), retargeted by ``tools/build_motions.py``; see
``hsjax/assets/motions/README.md`` for their provenance, placement and retargeting quality.
"""

from __future__ import annotations

import os
from importlib import resources

import numpy as np

from hsjax.motion import motion as motion_lib

_FORMATS = ("auto", "bvh", "hsjax", "amass", "deepmimic")


def _detect(path: str) -> str:
  ext = os.path.splitext(path)[1].lower()
  if ext == ".bvh":
    return "bvh"
  if ext in (".txt", ".json"):
    return "deepmimic"
  if ext == ".npz":
    with np.load(path, allow_pickle=False) as data:
      files = set(data.files)
    if "format" in files:
      return "hsjax"
    if "poses" in files:
      return "amass"
    raise ValueError(f"{path}: an .npz motion needs either hsjax's fields ('format', "
                     f"'body_pose', ...) or AMASS's ('poses', 'trans', 'mocap_framerate'); "
                     f"found {sorted(files)}")
  raise ValueError(f"{path}: unknown motion file extension {ext!r}; expected .bvh, .npz, "
                   ".txt or .json (or pass fmt=)")


def load_motion(path: str, *, fmt: str = "auto", target_fps: float | None = None,
                heading: bool = False, ground: bool = False, **kw) -> motion_lib.Motion:
  """Reads any supported motion file as an SMPL :class:`~hsjax.motion.Motion`.

  Args:
    path: the file (``.bvh``, ``.npz``, ``.txt`` / ``.json``).
    fmt: ``"auto"`` (from the extension and, for ``.npz``, the fields), ``"bvh"``,
      ``"hsjax"``, ``"amass"`` or ``"deepmimic"``.
    target_fps: resample to this rate (quaternion slerp); None keeps the file's.
    heading: turn the clip so that its first frame faces +z, its root at x = z = 0
      (:func:`hsjax.motion.normalize`).
    ground: move it vertically so that its soles touch ``y = 0`` at the lowest point of the
      clip (the feet of the rest skeleton ``rest`` passed in ``kw``, default "auto": the
      default body's mesh; :func:`hsjax.motion.normalize`).
    **kw: passed to the format's loader (e.g. ``joint_map=``, ``scale=`` for BVH).
  """
  rest = kw.get("rest", "auto")
  motion = _load(os.fspath(path), fmt, target_fps, kw)
  if heading or ground:
    from hsjax.motion import placement  # pylint: disable=g-import-not-at-top
    from hsjax.motion import skeleton  # pylint: disable=g-import-not-at-top
    named = isinstance(rest, str)
    motion = motion_lib.normalize(
        motion, heading=heading, ground=ground, center=heading,
        rest_joints=skeleton.rest_joints(rest) if named else rest,
        sole_offset=skeleton.sole_offset(rest) if named else 0.0,
        body=placement.body_points(rest) if named else None)
  return motion


def _load(path: str, fmt: str, target_fps: float | None, kw: dict) -> motion_lib.Motion:
  if not os.path.exists(path):
    raise FileNotFoundError(f"motion file not found: {path}")
  if fmt not in _FORMATS:
    raise ValueError(f"{path}: unknown motion format {fmt!r}; expected one of {_FORMATS}")
  if fmt == "auto":
    fmt = _detect(path)
  if fmt == "bvh":
    from hsjax.motion import bvh  # pylint: disable=g-import-not-at-top
    motion = bvh.retarget_bvh(bvh.read_bvh(path, **{k: kw.pop(k) for k in ("unit_scale",)
                                                    if k in kw}), **kw)
  elif fmt == "amass":
    from hsjax.motion import amass  # pylint: disable=g-import-not-at-top
    return amass.load_amass(path, target_fps=target_fps, **kw)
  elif fmt == "deepmimic":
    from hsjax.motion import deepmimic  # pylint: disable=g-import-not-at-top
    return deepmimic.load_deepmimic(path, target_fps=target_fps, **kw)
  else:
    if kw:
      raise TypeError(f"{path}: hsjax motion files take no options, got {sorted(kw)}")
    motion = motion_lib.load_hsjax_npz(path)
  if target_fps is not None:
    motion = motion_lib.resample(motion, target_fps)
  return motion


def builtin_dir() -> str:
  """Folder of the shipped clips."""
  return str(resources.files("hsjax") / "assets" / "motions")


def builtin_motions() -> list[str]:
  """Names of the shipped clips, sorted (e.g. ``"walk"``, ``"run"``, ``"cartwheel"``)."""
  folder = builtin_dir()
  if not os.path.isdir(folder):
    return []
  return sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith(".npz"))


def builtin_motion(name: str, target_fps: float | None = None) -> motion_lib.Motion:
  """A shipped clip by name (see :func:`builtin_motions`), optionally resampled."""
  names = builtin_motions()
  if name not in names:
    raise ValueError(f"unknown built-in motion {name!r}; available: {', '.join(names) or 'none'}"
                     f" (in {builtin_dir()})")
  motion = motion_lib.load_hsjax_npz(os.path.join(builtin_dir(), name + ".npz"))
  return motion if target_fps is None else motion_lib.resample(motion, target_fps)
