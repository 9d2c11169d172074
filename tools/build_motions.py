r"""Builds hsjax's shipped SMPL motion clips from DeepMimic's humanoid3d motion capture.

The input is PyPI's ``pybullet`` wheel (zlib licence), which ships DeepMimic's 15 humanoid3d
clips under ``pybullet_data/data/motions/humanoid3d_*.txt`` and the character they are played
on under ``pybullet_data/humanoid/humanoid.urdf``. Both are read straight out of the wheel with
``zipfile``; pybullet is neither installed nor imported.

Usage (from the repository root)::

  pip download --no-deps pybullet==3.2.7 -d /tmp/pybullet_wheel
  python3 tools/build_motions.py --wheel /tmp/pybullet_wheel/pybullet-3.2.7-*.whl \
      --out hsjax/assets/motions

Without ``--wheel`` the script runs that ``pip download`` itself into a temporary directory
(PyPI only). About 2 minutes on 2 CPU cores; the arrays written are deterministic.

Per clip:

1. Check the character's rest offsets in the wheel's URDF against
   :data:`hsjax.motion.deepmimic.DM_OFFSETS` (the importer's copy); stop on a mismatch.
2. Retarget onto the default body's rest skeleton (:func:`hsjax.motion.load_deepmimic`) and
   resample to ``--fps`` (quaternion slerp).
3. Heading: rotate about the vertical so that the first frame faces +z; centre the first
   frame's root at x = z = 0.
4. Ground: shift vertically so that the lowest vertex of the default body (betas = 0), hands
   excepted, over the whole clip lies on ``y = 0`` (the character's wrists are rigid, so
   SMPL's straight hands would dig into the floor wherever it leans on a wrist). The shift
   relative to the character's own ground (its y = 0, scaled) is recorded: it measures how
   well the two skeletons' shapes agree.
5. Write ``<name>.npz`` (hsjax layout, with provenance in ``meta``) and, once for all clips,
   ``README.md`` with the provenance, the conventions and the retargeting-quality table
   (``experiments/retarget_quality.py`` prints the same numbers) and ``preview.png``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hsjax.motion import deepmimic  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax.motion import motion as motion_lib  # pylint: disable=wrong-import-position
from hsjax.motion import retargeting  # pylint: disable=g-import-not-at-top,wrong-import-position
from hsjax.motion import skeleton  # pylint: disable=g-import-not-at-top,wrong-import-position

PYBULLET_VERSION = "3.2.7"
# sha256 of pybullet-3.2.7-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl; the
# data files are the same in every platform's wheel, so other wheels are accepted with a note.
PYBULLET_SHA256 = "5d858abf7c12a21ef3ed351cf81dac1b5e486ec25c9ab59bfc84beb89034edff"
MOTION_DIR = "pybullet_data/data/motions/"
URDF = "pybullet_data/humanoid/humanoid.urdf"

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  # argparse rather than absl flags: tests import this module.
  parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--wheel", default=None, help="pybullet wheel; downloaded if omitted")
  parser.add_argument("--out", default=os.path.join("hsjax", "assets", "motions"))
  parser.add_argument("--fps", type=float, default=30.0, help="output frame rate")
  parser.add_argument("--rest", default="default", choices=("default", "generic"),
                      help="rest skeleton the clips are placed for")
  parser.add_argument("--clips", default="", help="comma-separated subset (default: all)")
  parser.add_argument("--preview", default="walk,run,kick,cartwheel,backflip,getup_faceup",
                      help="clips drawn in preview.png (6 frames each; empty: none)")
  return parser.parse_args(argv)


def fetch_wheel(folder: str) -> str:
  subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder,
                  f"pybullet=={PYBULLET_VERSION}"], check=True)
  found = glob.glob(os.path.join(folder, "pybullet-*.whl"))
  if not found:
    raise FileNotFoundError(f"pip download left no pybullet wheel in {folder}")
  return found[0]


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_urdf(urdf_text: str) -> None:
  """Compares the URDF's joint origins (x 0.25) with the importer's DM_OFFSETS."""
  # A regular expression rather than an XML parser: the shipped file has trailing bytes after
  # </robot> that ElementTree rejects.
  origins = {}
  for block in re.findall(r"<joint\b.*?</joint>", urdf_text, flags=re.S):
    name = re.search(r'name\s*=\s*"([^"]+)"', block).group(1)
    xyz = re.search(r'<origin\b[^>]*xyz\s*=\s*"([^"]+)"', block).group(1).split()
    origins[name] = np.array([float(v) for v in xyz]) * 0.25
  for j, name in enumerate(deepmimic.DM_NAMES):
    if name == "head_end":
      continue
    expected = np.zeros(3) if name == "root" else origins[name]
    if not np.allclose(deepmimic.DM_OFFSETS[j], expected, atol=1e-9):
      raise ValueError(f"{URDF}: joint '{name}' origin x 0.25 is {expected}, the importer has "
                       f"{deepmimic.DM_OFFSETS[j]}")


def lowest_vertex_heights(motion: motion_lib.Motion) -> tuple[np.ndarray, np.ndarray]:
  """Per frame, the heights [T] of the default body's (betas = 0) lowest vertex without the
  hands, and of the hands' lowest vertex.

  The hands are kept apart: the character's wrists are rigid, so SMPL's hands continue the
  forearm straight, and where the character leans on a wrist (push-ups, getting up,
  cartwheels) the fingers would dig into the floor and, if counted, lift the whole body.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hsjax import body  # pylint: disable=g-import-not-at-top

  model = body.load_body_model("default")
  hand = np.asarray(model.lbs_weights)[:, 20:24].sum(1) >= 0.5
  betas = jnp.zeros((model.num_betas,), jnp.float32)
  out, out_hand = [], []
  for start in range(0, motion.num_frames, 32):
    sl = slice(start, start + 32)
    verts = body.body_forward(model, betas, jnp.asarray(motion.body_pose[sl]),
                              jnp.asarray(motion.global_orient[sl]),
                              jnp.asarray(motion.transl[sl])).vertices
    out.append(np.asarray(verts[..., ~hand, 1].min(axis=-1)))
    out_hand.append(np.asarray(verts[..., hand, 1].min(axis=-1)))
  return np.concatenate(out), np.concatenate(out_hand)


def write_preview(out: str, names: list[str]) -> None:
  """preview.png: 6 evenly spaced frames of each clip on the default body, left side blue."""
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hsjax import body  # pylint: disable=g-import-not-at-top
  from hsjax import camera as camera_lib  # pylint: disable=g-import-not-at-top
  from hsjax.data import render  # pylint: disable=g-import-not-at-top

  model = body.load_body_model("default")
  faces = np.asarray(model.faces)
  weights = np.asarray(model.lbs_weights)
  left = weights[:, [i for i, n in enumerate(skeleton.SMPL_JOINT_NAMES)
                     if n.startswith("left_")]].sum(1) > 0.5
  colors = np.where(left[:, None], [0.30, 0.42, 0.90], [0.82, 0.62, 0.50])
  width, height = 200, 240
  rows = []
  for name in names:
    motion = motion_lib.load_hsjax_npz(os.path.join(out, name + ".npz"))
    idx = np.linspace(0, motion.num_frames - 1, 6).round().astype(int)
    verts = np.asarray(body.body_forward(
        model, jnp.zeros(model.num_betas), jnp.asarray(motion.body_pose[idx]),
        jnp.asarray(motion.global_orient[idx]), jnp.asarray(motion.transl[idx])).vertices)
    tiles = []
    for v in verts:
      centre = np.array([v[:, 0].mean(), max(v[:, 1].mean(), 0.5), v[:, 2].mean()])
      cam = camera_lib.Camera(
          K=jnp.asarray(camera_lib.intrinsics(270.0, width, height)),
          world_to_cam=jnp.asarray(camera_lib.look_at(centre + [3.0, 0.6, 3.0], centre)),
          width=width, height=height)
      rgb = render.render_mesh(v, faces, cam, vertex_colors=colors)[0]
      tiles.append((np.clip(np.asarray(rgb), 0, 1) * 255).astype(np.uint8))
    rows.append(np.concatenate(tiles, 1))
  iio.imwrite(os.path.join(out, "preview.png"), np.concatenate(rows, 0))


def build_clip(path: str, args, provenance: dict) -> tuple[motion_lib.Motion, dict]:
  native, info, times = deepmimic.retarget_deepmimic(path, rest=args.rest)
  errors = retargeting.bone_direction_errors(native, info)
  native_fps = native.fps
  count = int(np.floor(times[-1] * args.fps + 1e-6)) + 1
  motion = motion_lib.resample_at(native, times, np.arange(count) / args.fps, args.fps)
  motion = motion_lib.normalize(motion, heading=True, ground=False, center=True)
  if args.rest == "default":
    lowest, lowest_hand = lowest_vertex_heights(motion)
  else:
    joints = skeleton.forward_joints(skeleton.rest_joints("generic"), motion.full_pose,
                                     motion.transl)
    lowest = joints[..., :20, 1].min(-1) - skeleton.sole_offset("generic")
    lowest_hand = joints[..., 20:, 1].min(-1)
  shift = -float(lowest.min())
  hand_depth = max(0.0, -float(lowest_hand.min() + shift))
  motion = motion.replace(transl=motion.transl + np.array([0.0, shift, 0.0], np.float32))
  chest = next(k for k, v in info.joint_map.items() if v == "chest")
  meta = dict(provenance, source_file=MOTION_DIR + os.path.basename(path),
              native_fps=native_fps, fps=args.fps, rest_skeleton=args.rest,
              chest_joint=chest, root_scale=info.scale, ground_shift_m=shift,
              rest_pelvis=[float(v) for v in info.rest[0]],
              rest_pelvis_height=skeleton.pelvis_height(args.rest),
              ground="y = 0 is the lowest point of the default body (hands excepted) over the clip",
              )
  path_xz = motion.transl[:, [0, 2]]
  stats = {
      "travel_m": float(np.linalg.norm(path_xz[-1] - path_xz[0])),
      "pelvis_height_m": [float(motion.transl[:, 1].min() + info.rest[0, 1]),
                          float(motion.transl[:, 1].max() + info.rest[0, 1])],
      "frames": motion.num_frames, "seconds": motion.duration, "native_fps": native_fps,
      "loop": motion.loop, "ground_shift_m": shift, "hand_below_ground_m": hand_depth,
      "bone_error_deg": {k: {"mean": float(v.mean()), "max": float(v.max())}
                         for k, v in errors.items()},
  }
  return motion, dict(meta=meta, stats=stats)


def quality_table(stats: dict) -> str:
  bones = ("thigh", "shin", "upper_arm", "forearm", "spine")  # spine: pelvis to neck
  lines = ["| clip | frames @30 fps | loop | " + " | ".join(bones) +
           " | limbs mean / max | ground shift | hands below ground |",
           "|---|---|---|" + "---|" * len(bones) + "---|---|---|"]
  for name, st in stats.items():
    err = st["bone_error_deg"]
    cells = []
    for b in bones:
      keys = [k for k in err if k in (b, f"left_{b}", f"right_{b}")]
      cells.append(f"{np.mean([err[k]['mean'] for k in keys]):.2f}")
    limbs = [err[k] for k in retargeting.LIMB_BONES]
    cells.append(f"{np.mean([e['mean'] for e in limbs]):.2f} / "
                 f"{max(e['max'] for e in limbs):.2f}")
    lines.append(f"| {name} | {st['frames']} | {'yes' if st['loop'] else 'no'} | "
                 + " | ".join(cells) + f" | {100 * st['ground_shift_m']:+.1f} cm | "
                 f"{100 * st['hand_below_ground_m']:.1f} cm |")
  return "\n".join(lines)


def write_readme(out: str, stats: dict, provenance: dict, args) -> None:
  rows = "\n".join(f"| `{n}` | {st['frames']} | {st['seconds']:.2f} s | "
                   f"{st['native_fps']:g} | {st['travel_m']:.2f} m | "
                   f"{st['pelvis_height_m'][0]:.2f}-{st['pelvis_height_m'][1]:.2f} m |"
                   for n, st in stats.items())
  text = f"""# Shipped motion clips

SMPL motion clips for animation and for the synthetic benchmark, read with
`hsjax.motion.builtin_motion(name)` (names: `hsjax.motion.builtin_motions()`).

## Provenance and licence

* Source: the 15 DeepMimic humanoid3d motion-capture clips
  (`{MOTION_DIR}humanoid3d_*.txt`) in PyPI's `pybullet=={PYBULLET_VERSION}` wheel,
  `{provenance['wheel']}`,
  sha256 `{provenance['wheel_sha256']}`. DeepMimic (Peng, Abbeel, Levine and van de Panne,
  SIGGRAPH 2018) prepared them from motion capture for its humanoid character.
* Licence: the pybullet wheel is distributed under the **zlib licence** (Bullet Physics
  SDK; copyright Erwin Coumans and contributors): "Permission is granted to anyone to use this
  software for any purpose, including commercial applications, and to alter it and
  redistribute it freely", provided the origin is not misrepresented and altered versions are
  marked as such. These `.npz` files are **altered versions**: retargeted from the DeepMimic
  character onto SMPL's joint tree, resampled and re-placed by hsjax.
* Built by `tools/build_motions.py` (reads the wheel with `zipfile`; pybullet is never
  installed or imported). Each file's `meta` field records its source file, native frame rate,
  the rest skeleton, the root scale and the ground shift.

Measured per clip (after retargeting): the start-to-end distance of the root on the ground
and the range of the pelvis joint's height above the ground.

| clip | frames | duration | native fps | root travel | pelvis height |
|---|---|---|---|---|---|
{rows}

![six frames each of walk, run, kick, cartwheel, backflip and getup_faceup on the default
body; the subject's left side in blue](preview.png)

## Conventions

* hsjax motion `.npz` layout (`hsjax.motion.save_motion`): `body_pose [T,23,3]`,
  `global_orient [T,3]` (axis-angle, radians), `transl [T,3]` (metres), `fps`, `name`,
  `loop`, `meta`; all clips at {args.fps:g} fps (resampled with quaternion slerp).
* SMPL frame: y up, metres. The first frame faces +z and its root is at x = z = 0.
* **Ground: the plane y = 0**, for the {args.rest} rest skeleton (hsjax's default body at
  betas = 0): over each clip, the lowest vertex of that body, hands excepted, touches y = 0
  (the feet in stance for walk and run; knees, back or head for crawl, roll and the getups).
  The hands are excepted because the character's wrists are rigid: SMPL's hands continue the
  forearm straight, and where the character leans on a wrist the fingers dip below the floor
  (by the amount in the "hands below ground" column of the quality table). SMPL's own
  template has its pelvis near the origin and its soles about 1.1-1.2 m below it, so a
  standing frame has `transl[1]` of about +1.1 m. On a body with other proportions call
  `hsjax.motion.normalize(m, heading=False, center=False, ground=True, rest_joints=...)`.
* "loop: yes" clips are marked by DeepMimic as cycles ("Loop": "wrap"), meant to be played
  over and over; the capture is not seamless (the last frame's joints differ from the first's
  by up to about 30° in some clips); `hsjax.motion.loop_motion(m, num_frames)` spreads that
  mismatch over the cycle and chains cycles without a seam.

## Retargeting (`hsjax.motion.load_deepmimic`)

The character's joints map onto their SMPL namesakes (root to pelvis, hips, knees, ankles,
shoulders, elbows, wrists, neck; its head centre to SMPL's head); its chest joint maps onto
the SMPL spine joint nearest its height (here `{provenance.get('chest_joint', 'spine3')}`).
Each SMPL limb joint gets its source joint's world rotation times a constant rest correction
(the character rests with its arms hanging down, SMPL in a T-pose); trunk joints take none
(both rest poses stand upright). SMPL joints that the character lacks keep the identity local
rotation: the other two spine joints, the collars (the whole shoulder motion is at the
shoulder joint), the hands (the character's wrists are rigid, so the hands continue the
forearms) and the toes (its feet are rigid boxes). The root path is scaled by the ratio of
the pelvis heights above the soles.

## Retargeting quality (measured)

Angle, in degrees, between each bone of the character and the same bone of the retargeted
SMPL skeleton, both posed by their own forward kinematics, averaged over the clip's native
frames (thigh, shin, upper arm and forearm: mean of left and right; spine: pelvis to neck).
"ground shift" is how far the body had to be moved up (+) or down (-) from the character's own
ground for its lowest vertex (hands excepted) to touch y = 0. Reproduce with
`python3 experiments/retarget_quality.py`.

{quality_table(stats)}

The limb bones match to numerical precision because each SMPL limb bone is aligned with its
source bone in every frame (rest correction plus folding, `hsjax/motion/retargeting.py`). The
trunk is not forced: SMPL's spine keeps its own rest curvature (the character's trunk is
straight), and the character bends its trunk at one chest joint halfway up while SMPL bends at
`{provenance.get('chest_joint', 'spine3')}`; the spine column is the resulting difference in
the pelvis-to-neck direction.
"""
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(text)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    wheel = args.wheel or fetch_wheel(tmp)
    digest = sha256(wheel)
    if digest != PYBULLET_SHA256:
      print(f"note: {os.path.basename(wheel)} has sha256 {digest}, not the reference wheel's")
    provenance = dict(wheel=os.path.basename(wheel), wheel_sha256=digest,
                      licence="zlib (pybullet / Bullet Physics SDK)",
                      builder="tools/build_motions.py")
    with zipfile.ZipFile(wheel) as zf:
      check_urdf(zf.read(URDF).decode())
      members = sorted(n for n in zf.namelist()
                       if n.startswith(MOTION_DIR + "humanoid3d_") and n.endswith(".txt"))
      wanted = set(filter(None, args.clips.split(",")))
      os.makedirs(args.out, exist_ok=True)
      stats = {}
      for member in members:
        name = os.path.basename(member)[len("humanoid3d_"):-len(".txt")]
        if wanted and name not in wanted:
          continue
        local = os.path.join(tmp, os.path.basename(member))
        with open(local, "wb") as f:
          f.write(zf.read(member))
        motion, extra = build_clip(local, args, provenance)
        motion_lib.save_motion(os.path.join(args.out, name + ".npz"), motion, extra["meta"])
        stats[name] = extra["stats"]
        provenance["chest_joint"] = extra["meta"]["chest_joint"]
        st = extra["stats"]
        limb = np.mean([st["bone_error_deg"][k]["mean"] for k in retargeting.LIMB_BONES])
        print(f"{name:16s} {st['frames']:4d} frames  ground shift {st['ground_shift_m']:+.3f} m"
              f"  limb error {limb:.3f} deg")
  if not wanted:
    write_readme(args.out, stats, provenance, args)
  if args.preview and args.rest == "default":
    write_preview(args.out, [n for n in args.preview.split(",") if n])


if __name__ == "__main__":
  main()
