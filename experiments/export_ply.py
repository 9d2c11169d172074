r"""Exports a fitted avatar as a 3DGS ``.ply`` for splat viewers: canonical, or posed at a frame.

  python experiments/export_ply.py --run_dir=runs/default --frame=12 --output=frame12.ply

``--frame=N`` poses the avatar with frame N of the run's refined poses
(``smpl_refined.npz``; ``--poses=hmr`` takes the HMR input instead), in the world frame of the
sequence; ``--frame=-1`` (default) writes the canonical avatar with its skinning attributes
(``avatar.ply`` of the run). Rotations are written as unit quaternions.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory of fit.py / demo.py.")
_FRAME = flags.DEFINE_integer("frame", -1, "Frame whose pose the avatar takes (-1: canonical).")
_POSES = flags.DEFINE_enum("poses", "refined", ["refined", "hmr"],
                           "Poses of --frame: the run's refined ones or the HMR input.")
_OUTPUT = flags.DEFINE_string("output", None, "Output .ply (default <run_dir>/avatar_frame<N>.ply "
                              "or <run_dir>/avatar_canonical.ply).")
_OVERWRITE = common.define_overwrite_flag()
flags.mark_flag_as_required("run_dir")


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.io import ply  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  run_dir = _RUN_DIR.value
  config = common.read_config(run_dir)
  frame = _FRAME.value
  name = "avatar_canonical.ply" if frame < 0 else f"avatar_frame{frame:04d}.ply"
  output = _OUTPUT.value or os.path.join(run_dir, name)
  if not output.endswith(".ply"):
    raise common.InputError(f"--output: expected a .ply path, found {output}")
  if os.path.exists(output) and not _OVERWRITE.value:
    raise common.InputError(f"--output: {output} exists; pass --overwrite to replace it")
  if os.path.isdir(output):
    raise common.InputError(f"--output: {output} is a directory, expected a .ply file path")
  try:
    avatar = io_lib.load_avatar(os.path.join(run_dir, "avatar.npz"))
    poses_file = "smpl_refined.npz" if _POSES.value == "refined" else "smpl_hmr.npz"
    poses = io_lib.load_smpl_npz(os.path.join(run_dir, poses_file)) if frame >= 0 else None
  except (FileNotFoundError, ValueError) as e:
    raise common.InputError(str(e)) from e
  if frame < 0:
    ply.save_avatar_ply(output, avatar)
    print(f"canonical avatar -> {output}")
    return
  body_model = common.load_body_model(config.get("fit_config", {}).get("body_model", "default"))
  num = int(poses.body_pose.shape[0])
  if frame >= num:
    raise common.InputError(f"--frame: {frame} out of range, {os.path.join(run_dir, poses_file)} "
                            f"has {num} frames (expected 0..{num - 1})")
  ply.save_posed_ply(output, avatar, body_model, poses, frame)
  print(f"avatar posed at frame {frame} ({_POSES.value} poses) -> {output}")


if __name__ == "__main__":
  common.run(main)
