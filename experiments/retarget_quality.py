r"""Measures how faithfully motion capture is retargeted onto SMPL.

For each clip, both skeletons are posed by their own forward kinematics (the source from the
file, SMPL from the retargeted parameters on the target rest skeleton) and the angle between
each source bone and the SMPL bone it maps to is reported per frame: thighs, shins, upper
arms, forearms, and the spine (pelvis to neck; also split into its lower and upper parts at
the joint that takes the source's chest). Printed as a table (mean and max degrees per bone
group, over the clip's native frames) and written as JSON.

Commands::

  # the shipped clips' numbers (hsjax/assets/motions/README.md): DeepMimic clips read from
  # the pybullet wheel
  pip download --no-deps pybullet==3.2.7 -d /tmp/pybullet_wheel
  python3 experiments/retarget_quality.py --wheel=/tmp/pybullet_wheel/pybullet-3.2.7-*.whl

  # any files of your own (BVH with a preset or auto joint map, DeepMimic .txt/.json)
  python3 experiments/retarget_quality.py --inputs=a.bvh,b.bvh --joint_map=cmu

About 5 s for the 15 DeepMimic clips on 2 CPU cores. Expected on the default body: limbs
0.00° (each SMPL limb bone is aligned with its source bone in every frame); spine (pelvis to
neck) 0.4-5.5° mean per clip (the character bends its trunk at one chest joint, SMPL at
spine3); lower and upper spine a constant 6.5° and 4.1° (SMPL's trunk keeps its rest curve,
the character's is straight).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import zipfile

from absl import app
from absl import flags
import numpy as np

from hsjax.motion import bvh as bvh_lib
from hsjax.motion import deepmimic
from hsjax.motion import retargeting

_WHEEL = flags.DEFINE_string("wheel", None, "pybullet wheel whose DeepMimic clips to measure "
                             "(a glob is expanded).")
_INPUTS = flags.DEFINE_list("inputs", [], "Motion files (.bvh, DeepMimic .txt/.json).")
_JOINT_MAP = flags.DEFINE_string("joint_map", "auto", "BVH joint map: 'auto' or a preset "
                                 f"({', '.join(retargeting.PRESETS)}).")
_UNIT_SCALE = flags.DEFINE_float("unit_scale", 1.0, "BVH units -> metres.")
_REST = flags.DEFINE_enum("rest", "auto", ["auto", "default", "generic"],
                          "Target rest skeleton (hsjax.motion.skeleton).")
_OUT = flags.DEFINE_string("out", "retarget_quality.json", "JSON output path.")

GROUPS = ("thigh", "shin", "upper_arm", "forearm", "spine", "lower_spine", "upper_spine")
MOTION_DIR = "pybullet_data/data/motions/"


def measure(path: str) -> dict:
  """Per-bone error statistics (degrees) of one file's retarget."""
  if path.lower().endswith(".bvh"):
    bvh = bvh_lib.read_bvh(path, unit_scale=_UNIT_SCALE.value)
    motion, info = retargeting.retarget(bvh.skeleton, *bvh.local_transforms(), bvh.fps,
                                        _JOINT_MAP.value, rest=_REST.value, source=path)
  else:
    motion, info, _ = deepmimic.retarget_deepmimic(path, rest=_REST.value)
  errors = retargeting.bone_direction_errors(motion, info)
  out = {"frames": motion.num_frames, "bones": {}}
  for group in GROUPS:
    keys = [k for k in errors if k == group or k in (f"left_{group}", f"right_{group}")]
    if keys:
      values = np.concatenate([errors[k] for k in keys])
      out["bones"][group] = {"mean": float(values.mean()), "max": float(values.max())}
  limbs = [errors[k] for k in retargeting.LIMB_BONES if k in errors]
  if limbs:
    values = np.concatenate(limbs)
    out["limbs"] = {"mean": float(values.mean()), "max": float(values.max())}
  return out


def wheel_clips(pattern: str, folder: str) -> list[str]:
  """Extracts the humanoid3d clips of the pybullet wheel into ``folder``."""
  found = sorted(glob.glob(pattern))
  if not found:
    raise FileNotFoundError(f"--wheel: no file matches {pattern}")
  paths = []
  with zipfile.ZipFile(found[0]) as zf:
    for member in sorted(zf.namelist()):
      base = os.path.basename(member)
      if member.startswith(MOTION_DIR + "humanoid3d_") and base.endswith(".txt"):
        path = os.path.join(folder, base)
        with open(path, "wb") as f:
          f.write(zf.read(member))
        paths.append(path)
  return paths


def main(argv):
  del argv
  if not _WHEEL.value and not _INPUTS.value:
    raise app.UsageError("give --wheel (pybullet wheel) and/or --inputs (motion files)")
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    paths = list(_INPUTS.value) + (wheel_clips(_WHEEL.value, tmp) if _WHEEL.value else [])
    for path in paths:
      name = os.path.splitext(os.path.basename(path))[0].removeprefix("humanoid3d_")
      results[name] = measure(path)
  header = f"{'clip':16s} {'frames':>6s} " + " ".join(f"{g:>17s}" for g in GROUPS) + \
      f" {'limbs':>17s}"
  print("angle between source and SMPL bones, degrees: mean / max")
  print(header)
  for name, res in results.items():
    cells = []
    for g in GROUPS + ("limbs",):
      st = res["bones"].get(g) if g != "limbs" else res.get("limbs")
      cells.append(f"{st['mean']:7.2f} / {st['max']:6.2f}" if st else f"{'-':>17s}")
    print(f"{name:16s} {res['frames']:6d} " + " ".join(cells))
  limbs = [r["limbs"]["mean"] for r in results.values() if "limbs" in r]
  if limbs:
    print(f"mean over clips, limbs: {np.mean(limbs):.3f} deg (acceptance: <= 5)")
  with open(_OUT.value, "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
