"""Biovision Hierarchy (``.bvh``) files: reading any skeleton, retargeting, SMPL export.

Format, as read here:

* ``HIERARCHY``: nested ``ROOT`` / ``JOINT`` blocks with an ``OFFSET x y z`` (the joint's rest
  position in its parent's frame) and ``CHANNELS n name...``; ``End Site`` blocks carry only an
  offset and become channel-less joints named ``<parent>_end``.
* Channel names are ``Xposition``, ``Yposition``, ``Zposition``, ``Xrotation``, ``Yrotation``,
  ``Zrotation`` (any case), in any order and any subset per joint. Rotation channels are
  Euler angles in degrees, composed in the order the file lists them (``Zrotation Xrotation
  Yrotation`` gives ``R = Rz @ Rx @ Ry``, applied to the child's coordinates). Position
  channels *replace* the offset on their axes (the common reading of files whose joints have 6
  channels; for the usual root with offset 0 it is the same as adding).
* ``MOTION``: ``Frames: N``, ``Frame Time: dt`` (seconds) and N lines of one value per
  channel, joints in file order. When the rows disagree with ``N`` (exporters write
  ``Frames: 3069`` above 3070 rows; files get cut short), every complete row is read and a
  :class:`FrameCountWarning` says so.
* Units are whatever the file uses; :func:`detect_units` guesses them from the skeleton's
  height and ``read_bvh(unit_scale=...)`` converts.

The zero pose (all channels 0, offsets only) is the skeleton's rest pose; retargeting
(:func:`retarget_bvh`) maps that rest onto SMPL's T-pose whatever it is (T-pose, A-pose).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from hsjax import rotations_np
from hsjax.motion import motion as motion_lib
from hsjax.motion import retargeting
from hsjax.motion import skeleton

_CHANNELS = ("xposition", "yposition", "zposition", "xrotation", "yrotation", "zrotation")


@dataclasses.dataclass(frozen=True)
class Bvh:
  """A parsed BVH file (positions already multiplied by ``unit_scale``)."""

  path: str  # the file, for messages.
  skeleton: retargeting.SourceSkeleton  # joints in file order, end sites included.
  channels: tuple[tuple[str, ...], ...]  # [J] per joint, the channel names as written.
  frame_time: float  # seconds per frame.
  frames: np.ndarray  # [T, C] channel values in file order (positions scaled).
  end_site: tuple[bool, ...]  # [J] True for End Site pseudo-joints.

  @property
  def names(self) -> tuple[str, ...]:
    return self.skeleton.names

  @property
  def fps(self) -> float:
    """Frames per second; a rate within 0.001 of a whole number is that number (files write
    1/30 s as 0.0333333)."""
    fps = 1.0 / self.frame_time
    return float(round(fps)) if abs(fps - round(fps)) < 1e-3 else fps

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])

  def local_transforms(self) -> tuple[np.ndarray, np.ndarray]:
    """``(local_rot [T, J, 3, 3], local_trans [T, J, 3])`` for every frame."""
    num_frames, num_joints = self.num_frames, len(self.names)
    rot = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
    trans = np.broadcast_to(self.skeleton.offsets, (num_frames, num_joints, 3)).copy()
    col = 0
    for j, chans in enumerate(self.channels):
      order, angle_cols = "", []
      for c in chans:
        low = c.lower()
        axis = "xyz".index(low[0])
        if low.endswith("position"):
          trans[:, j, axis] = self.frames[:, col]
        else:
          order += low[0]
          angle_cols.append(col)
        col += 1
      if order:
        rot[:, j] = rotations_np.euler_to_matrix(order, self.frames[:, angle_cols])
    return rot, trans


class _Tokens:
  """Whitespace tokens of the hierarchy with their line numbers, for error messages."""

  def __init__(self, path: str, lines: list[str]):
    self.path = path
    self.items = [(tok, n + 1) for n, line in enumerate(lines) for tok in line.split()]
    self.pos = 0

  def peek(self) -> str:
    return self.items[self.pos][0] if self.pos < len(self.items) else ""

  def next(self, what: str) -> str:
    if self.pos >= len(self.items):
      raise ValueError(f"{self.path}: unexpected end of file, expected {what}")
    tok = self.items[self.pos][0]
    self.pos += 1
    return tok

  def line(self) -> int:
    return self.items[min(self.pos, len(self.items) - 1)][1]

  def expect(self, word: str) -> None:
    tok = self.next(repr(word))
    if tok.lower() != word.lower():
      raise ValueError(f"{self.path}:{self.items[self.pos - 1][1]}: expected {word!r}, found "
                       f"{tok!r}")

  def number(self, what: str) -> float:
    tok = self.next(what)
    try:
      return float(tok)
    except ValueError:
      raise ValueError(f"{self.path}:{self.items[self.pos - 1][1]}: expected a number for "
                       f"{what}, found {tok!r}") from None


class FrameCountWarning(UserWarning):
  """A BVH file whose ``Frames:`` header disagrees with its rows (the rows were read)."""


def read_bvh(path: str, unit_scale: float = 1.0) -> Bvh:
  """Parses a BVH file.

  Args:
    path: the ``.bvh`` file.
    unit_scale: multiplies offsets and position channels (e.g. 0.01 for a file in
      centimetres, to get metres).

  Raises:
    ValueError: malformed hierarchy, unknown or missing channels, or frames whose value count
      does not match the channels (the message names the file, the line or frame, and the
      joint).
  """
  path = os.fspath(path)
  with open(path) as f:
    text = f.read()
  lines = text.splitlines()
  motion_line = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"),
                     None)
  if motion_line is None:
    raise ValueError(f"{path}: no MOTION section")
  toks = _Tokens(path, lines[:motion_line])
  toks.expect("HIERARCHY")

  names, parents, offsets, channels, end_site = [], [], [], [], []

  def parse_joint(parent: int, is_end: bool, name: str) -> None:
    index = len(names)
    names.append(name)
    parents.append(parent)
    end_site.append(is_end)
    toks.expect("{")
    toks.expect("OFFSET")
    offsets.append([toks.number(f"joint '{name}' OFFSET") for _ in range(3)])
    chans = ()
    if not is_end:
      if toks.peek().upper() != "CHANNELS":
        raise ValueError(f"{path}:{toks.line()}: joint '{name}' has no CHANNELS line")
      toks.next("CHANNELS")
      count_tok = toks.next(f"joint '{name}' channel count")
      if not count_tok.isdigit():
        raise ValueError(f"{path}:{toks.line()}: joint '{name}': CHANNELS count must be an "
                         f"integer, found {count_tok!r}")
      listed = []
      while toks.peek().lower() in _CHANNELS:
        listed.append(toks.next("channel"))
      if len(listed) != int(count_tok):
        raise ValueError(f"{path}:{toks.line()}: joint '{name}': CHANNELS declares "
                         f"{count_tok} channels but lists {len(listed)} {listed} (next token "
                         f"{toks.peek()!r}); a channel is missing or misspelt")
      if len({c.lower() for c in listed}) != len(listed):
        raise ValueError(f"{path}: joint '{name}' lists a channel twice: {listed}")
      chans = tuple(listed)
    channels.append(chans)
    while True:
      tok = toks.next(f"'}}' closing joint '{name}'")
      up = tok.upper()
      if tok == "}":
        return
      if up == "JOINT":
        parse_joint(index, False, toks.next("joint name"))
      elif up == "END":
        toks.expect("Site")
        parse_joint(index, True, f"{name}_end")
      else:
        raise ValueError(f"{path}:{toks.items[toks.pos - 1][1]}: unexpected {tok!r} in joint "
                         f"'{name}'")

  while toks.peek():
    toks.expect("ROOT")
    parse_joint(-1, False, toks.next("root name"))
  if not names:
    raise ValueError(f"{path}: the HIERARCHY has no ROOT joint")
  dup = {n for n in names if names.count(n) > 1}
  if dup:
    raise ValueError(f"{path}: duplicate joint names {sorted(dup)}")

  # MOTION section.
  rest = [line for line in lines[motion_line + 1:] if line.strip()]
  if len(rest) < 2 or not rest[0].strip().lower().startswith("frames:"):
    raise ValueError(f"{path}: MOTION must start with 'Frames: N' and 'Frame Time: dt'")
  try:
    num_frames = int(rest[0].split(":", 1)[1])
    frame_time = float(rest[1].split(":", 1)[1])
  except (ValueError, IndexError):
    raise ValueError(f"{path}: cannot read 'Frames:' / 'Frame Time:' from {rest[:2]}") from None
  if not rest[1].strip().lower().startswith("frame time:") or not frame_time > 0:
    raise ValueError(f"{path}: 'Frame Time' must be a positive number of seconds, found "
                     f"{rest[1].strip()!r}")
  data_lines = rest[2:]
  num_channels = sum(len(c) for c in channels)
  if len(data_lines) != num_frames:
    # Real exporters write off-by-one counts and files get cut short: read every complete
    # row (a row cut short at the end is dropped) and say so. With a matching count, a short
    # row stays an error below.
    dropped = ""
    if data_lines and len(data_lines[-1].split()) < num_channels:
      data_lines = data_lines[:-1]
      dropped = "; the incomplete last row was dropped"
    warnings.warn(FrameCountWarning(
        f"{path}: header says Frames: {num_frames} but {len(data_lines)} complete frame rows "
        f"follow; reading the {len(data_lines)} rows{dropped}"), stacklevel=2)
    num_frames = len(data_lines)
    if num_frames == 0:
      raise ValueError(f"{path}: no complete frame rows after 'Frame Time'")
  owner = [j for j, c in enumerate(channels) for _ in c]
  frames = np.empty((num_frames, num_channels))
  for i, line in enumerate(data_lines):
    values = line.split()
    if len(values) != num_channels:
      joint = names[owner[min(len(values), num_channels - 1)]]
      raise ValueError(
          f"{path}: frame {i} has {len(values)} values, the hierarchy declares {num_channels} "
          f"channels; the values run out at joint '{joint}'" if len(values) < num_channels else
          f"{path}: frame {i} has {len(values)} values, the hierarchy declares {num_channels} "
          "channels (extra values after the last joint)")
    try:
      frames[i] = [float(v) for v in values]
    except ValueError:
      bad = next(k for k, v in enumerate(values) if not _is_float(v))
      raise ValueError(f"{path}: frame {i}: value {values[bad]!r} of joint "
                       f"'{names[owner[bad]]}' is not a number") from None
  finite = np.isfinite(frames)
  if not np.all(finite):
    i, c = np.argwhere(~finite)[0]
    raise ValueError(f"{path}: frame {i}: non-finite value for joint '{names[owner[c]]}' "
                     f"channel {channels[owner[c]][c - owner.index(owner[c])]}")
  offsets = np.asarray(offsets, np.float64) * unit_scale
  for c, j in enumerate(owner):
    local = c - owner.index(j)
    if channels[j][local].lower().endswith("position"):
      frames[:, c] *= unit_scale
  skel = retargeting.SourceSkeleton(names=tuple(names), parents=tuple(parents), offsets=offsets)
  return Bvh(path=path, skeleton=skel, channels=tuple(channels), frame_time=frame_time,
             frames=frames, end_site=tuple(end_site))


def _is_float(s: str) -> bool:
  try:
    float(s)
    return True
  except ValueError:
    return False


# Unit guesses from the rest skeleton's height (the vertical extent of its joints, end sites
# included): (name, metres per unit, plausible height range in file units).
_UNITS = (("m", 1.0, (0.8, 2.6)), ("dm", 0.1, (8.0, 26.0)), ("inch", 0.0254, (31.0, 100.0)),
          ("cm", 0.01, (100.0, 260.0)), ("mm", 0.001, (800.0, 2600.0)))


def detect_units(bvh: Bvh) -> tuple[str, float] | None:
  """Guesses the file's length unit from the height of its rest skeleton.

  Returns:
    ``(name, metres_per_unit)`` for the first unit in which the skeleton is between 0.8 and
    2.6 m tall, or None when no unit fits. The guess assumes an adult-sized figure and the
    rest pose standing; a cm-scale file and an inch-scale file of one skeleton cannot both be
    recognised when the figure is between 1.0 and 2.6 m in both readings (cm wins over inch
    only above 100 units).
  """
  pos = bvh.skeleton.rest_positions()
  height = float(np.ptp(pos, axis=0).max())
  for name, metres, (lo, hi) in _UNITS:
    if lo <= height < hi:
      return name, metres
  return None


def retarget_bvh(bvh, joint_map="auto", scale=None, *, axes=None, rest="auto",
                 name: str | None = None, unit_scale: float = 1.0, trunk: str = "align",
                 twist: float | None = None, placement: str = "auto") -> motion_lib.Motion:
  """Retargets a BVH motion onto SMPL.

  Args:
    bvh: a :class:`Bvh` or a path (read with ``unit_scale``).
    joint_map: ``"auto"`` (the best-matching preset), a preset name (``"cmu"``, ``"mixamo"``,
      ``"motionbuilder"``, ``"blender"``, ``"smpl"``) or ``{smpl_joint_name: bvh_joint_name}``.
      Unmapped BVH joints are folded into their neighbours, unmapped SMPL joints keep the
      identity (spine and neck chains share the next mapped joint's rotation); see
      :mod:`hsjax.motion.retargeting`.
    scale: metres per file unit for the root path: None scales by the ratio of SMPL's to the
      skeleton's leg length (strides match the SMPL legs; units do not matter), ``"units"``
      uses :func:`detect_units`, a number is used as is.
    axes: [3, 3] file -> SMPL coordinates; None detects it from the rest pose.
    rest: target rest skeleton (see :mod:`hsjax.motion.skeleton`).
    name: clip name (default: the file name).
    unit_scale: passed to :func:`read_bvh` when ``bvh`` is a path.
    trunk, twist, placement: see :func:`hsjax.motion.retarget` (defaults: the trunk follows
      the source's segments, half the wrist twist goes into the elbow, the motion is placed on
      the floor by the source's foot contacts; a file on SMPL's own skeleton is read as is).
  """
  if not isinstance(bvh, Bvh):
    bvh = read_bvh(bvh, unit_scale=unit_scale)
  if isinstance(scale, str):
    if scale != "units":
      raise ValueError(f"{bvh.path}: scale must be None, 'units' or a number, found {scale!r}")
    units = detect_units(bvh)
    if units is None:
      raise ValueError(f"{bvh.path}: cannot tell the file's units from its skeleton height; "
                       "pass scale=<metres per unit>")
    scale = units[1]
  local_rot, local_trans = bvh.local_transforms()
  motion, _ = retargeting.retarget(
      bvh.skeleton, local_rot, local_trans, bvh.fps, joint_map, axes=axes, scale=scale,
      rest=rest, trunk=trunk, twist=twist, placement=placement,
      name=name or os.path.splitext(os.path.basename(bvh.path))[0], source=bvh.path)
  return motion


# Small offsets for the End Sites written after SMPL's leaf joints (metres).
_END_SITES = {10: (0.0, 0.0, 0.05), 11: (0.0, 0.0, 0.05), 15: (0.0, 0.1, 0.0),
              22: (0.08, 0.0, 0.0), 23: (-0.08, 0.0, 0.0)}


def write_bvh(path: str, motion: motion_lib.Motion, *, rest="auto", unit_scale: float = 1.0,
              order: str = "ZYX") -> None:
  """Writes ``motion`` as a BVH file on SMPL's skeleton.

  Joints carry SMPL's names (so :func:`retarget_bvh` maps them back with the ``"smpl"``
  preset); the root (``pelvis``) has 6 channels (its world position ``rest[0] + transl``,
  then rotation), every other joint 3 rotation channels. The rest pose is SMPL's T-pose with
  the offsets of ``rest``.

  Args:
    path: output file.
    motion: the clip.
    rest: rest skeleton for the offsets: a name for :func:`hsjax.motion.skeleton.rest_joints`
      or [24, 3].
    unit_scale: file units per metre (e.g. 100 for centimetres).
    order: Euler order of the rotation channels, e.g. ``"ZYX"`` or ``"ZXY"``.
  """
  motion = motion_lib.validate_motion(motion, str(path))
  order = order.upper()
  if sorted(order) != ["X", "Y", "Z"]:
    raise ValueError(f"write_bvh: order must be a permutation of 'XYZ', found {order!r}")
  joints = skeleton.rest_joints(rest) if isinstance(rest, str) else np.asarray(rest, float)
  rot_chans = " ".join(f"{a}rotation" for a in order)
  children = {k: [c for c, p in enumerate(skeleton.SMPL_PARENTS) if p == k] for k in range(24)}
  out = ["HIERARCHY"]

  def fmt(v):
    return " ".join(f"{x:.6f}" for x in v)

  def emit(k: int, depth: int) -> None:
    pad = "  " * depth
    parent = skeleton.SMPL_PARENTS[k]
    offset = joints[k] if parent < 0 else joints[k] - joints[parent]
    head = "ROOT" if parent < 0 else "JOINT"
    out.append(f"{pad}{head} {skeleton.SMPL_JOINT_NAMES[k]}")
    out.append(f"{pad}{{")
    out.append(f"{pad}  OFFSET {fmt(offset * unit_scale)}")
    if parent < 0:
      out.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_chans}")
    else:
      out.append(f"{pad}  CHANNELS 3 {rot_chans}")
    for c in children[k]:
      emit(c, depth + 1)
    if not children[k]:
      out.append(f"{pad}  End Site")
      out.append(f"{pad}  {{")
      out.append(f"{pad}    OFFSET {fmt(np.asarray(_END_SITES[k]) * unit_scale)}")
      out.append(f"{pad}  }}")
    out.append(f"{pad}}}")

  emit(0, 0)
  euler = rotations_np.matrix_to_euler(order, rotations_np.axis_angle_to_matrix(motion.full_pose))  # [T,24,3]
  root = (joints[0] + np.asarray(motion.transl, np.float64)) * unit_scale
  file_order = []

  def walk(k: int) -> None:
    file_order.append(k)
    for c in children[k]:
      walk(c)

  walk(0)
  out += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
  for t in range(motion.num_frames):
    values = [root[t]] + [euler[t, k] for k in file_order]
    out.append(" ".join(f"{x:.6f}" for x in np.concatenate(values)))
  with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
