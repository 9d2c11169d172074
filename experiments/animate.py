r"""Renders a fitted avatar in any motion: MP4 and PNG frames.

  python experiments/animate.py --run_dir=outputs/demo --motion=walk --view=orbit

The avatar comes from a run directory (``avatar.npz``, with the fitted shape from
``smpl_refined.npz``), from an ``avatar.npz`` file (``--avatar``), or from an avatar ``.ply``
written by hsjax (``--avatar=model.ply``; it keeps the skinning attributes; the shape is then
``--betas_from`` or zero). The motion is a clip shipped with hsjax (``--motion=walk``; see
``hsjax.motion.builtin_motions()``) or a file: ``.bvh`` (any skeleton, retargeted to SMPL),
``.npz`` (hsjax or AMASS) or a DeepMimic ``.txt`` / ``.json``.

The clip is resampled to ``--fps`` and placed for the avatar's body: its lowest vertex over the
clip touches the floor ``y = 0`` and its first frame's pelvis stands above the origin. The
camera looks at the pelvis (following it horizontally with ``--follow``) from ``--distance``
metres at ``--camera_height``: in front (``--view=front``, azimuth 0 faces the body's rest
front, +z), from its left side, from the back, or circling once over the clip
(``--view=orbit``); ``--azimuth`` adds degrees. Output: ``<output_dir>/<motion>.mp4`` and
``<output_dir>/frames/*.png``, plus ``flags.txt`` / ``config.json``.

Runtime (shared 2-core machine, the demo's 3000-Gaussian avatar, 256 px): 49 s wall for the
39-frame ``walk`` clip, of which about 25 s start-up and compilation, then 10 frames per
second. A tile-overflow count is printed when ``--tile_capacity`` drops Gaussians.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_RUN_DIR = flags.DEFINE_string("run_dir", "", "Run directory of fit.py / demo.py (avatar.npz "
                               "and smpl_refined.npz).")
_AVATAR = flags.DEFINE_string("avatar", "", "An avatar file instead of --run_dir: hsjax's "
                              "avatar.npz or an avatar .ply with skinning attributes.")
_BETAS_FROM = flags.DEFINE_string("betas_from", "", "SMPL .npz whose betas shape the body "
                                  "(default: the run's smpl_refined.npz; zero for --avatar).")
_MOTION = flags.DEFINE_string("motion", "walk", "A built-in clip name or a motion file "
                              "(.bvh, .npz, DeepMimic .txt/.json).")
_FPS = flags.DEFINE_float("fps", 30.0, "Frame rate the clip is resampled to (and of the MP4).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Render at most this many frames (0: all).")
_VIEW = flags.DEFINE_enum("view", "front", ["front", "side", "back", "orbit"],
                          "Camera placement around the body.")
_AZIMUTH = flags.DEFINE_float("azimuth", 0.0, "Degrees added to the view's azimuth (about +y).")
_DISTANCE = flags.DEFINE_float("distance", 3.5, "Horizontal camera distance to the pelvis, m.")
_CAMERA_HEIGHT = flags.DEFINE_float("camera_height", 1.0, "Camera height above the floor, m.")
_FOLLOW = flags.DEFINE_bool("follow", True, "Camera follows the pelvis horizontally.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 256, "Square image size, pixels.")
_FIELD_OF_VIEW = flags.DEFINE_float("view_height", 2.4, "Metres spanned by the image height at "
                                    "the camera distance (sets the focal length).")
_BACKGROUND = flags.DEFINE_list("background", ["1", "1", "1"], "Background RGB in [0, 1].")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/animate", "Output folder (created).")
_OVERWRITE = common.define_overwrite_flag()
_PNG = flags.DEFINE_bool("png", True, "Write every frame as a PNG too.")
_BODY_MODEL = common.define_body_model_flag()
_BACKEND = flags.DEFINE_enum("backend", "auto", list(common.BACKENDS), "Rasteriser backend.")
_TILE_CAPACITY = flags.DEFINE_integer("tile_capacity", 256, "Gaussians kept per 16x16 tile.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")

_VIEW_AZIMUTH = {"front": 0.0, "side": 90.0, "back": 180.0, "orbit": 0.0}
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def load_avatar_and_betas(body_model):
  """``(avatar, betas [B])`` from ``--run_dir`` / ``--avatar`` / ``--betas_from``."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import io as io_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if bool(_RUN_DIR.value) == bool(_AVATAR.value):
    raise common.InputError("give exactly one of --run_dir and --avatar")
  betas_path = _BETAS_FROM.value
  if _RUN_DIR.value:
    if not os.path.isdir(_RUN_DIR.value):
      raise common.InputError(f"--run_dir: directory not found: {_RUN_DIR.value}")
    path = os.path.join(_RUN_DIR.value, "avatar.npz")
    betas_path = betas_path or os.path.join(_RUN_DIR.value, "smpl_refined.npz")
  else:
    path = _AVATAR.value
  if not os.path.exists(path):
    raise common.InputError(f"avatar file not found: {path}")
  try:
    if path.lower().endswith(".ply"):
      avatar = io_lib.load_avatar_ply(path)
    elif path.lower().endswith(".npz"):
      avatar = io_lib.load_avatar(path)
    else:
      raise common.InputError(f"{path}: unknown avatar format; expected hsjax's avatar.npz or "
                              "an avatar .ply")
    if betas_path:
      betas = np.asarray(io_lib.load_smpl_npz(betas_path).betas, np.float32)
    else:
      betas = np.zeros(body_model.num_betas, np.float32)
  except (FileNotFoundError, ValueError) as e:
    raise common.InputError(str(e)) from e
  if betas.shape != (body_model.num_betas,):
    raise common.InputError(f"{betas_path}: betas has {betas.shape[0]} components, the body "
                            f"model {body_model.num_betas}")
  return avatar, betas


def load_motion(value: str, fps: float):
  """A built-in clip by name or a motion file, resampled to ``fps``."""
  from hsjax import motion  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  looks_like_path = os.path.sep in value or os.path.splitext(value)[1] != ""
  try:
    if looks_like_path:
      if not os.path.exists(value):
        raise common.InputError(f"--motion: motion file not found: {value}")
      return motion.load_motion(value, target_fps=fps)
    return motion.builtin_motion(value, target_fps=fps)
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise common.InputError(f"--motion={value}: {e}") from e


def place_motion(body_model, betas, clip):
  """``(transl [T, 3], pelvis [T, 3])`` putting the clip on the floor for this body."""
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  transl = np.asarray(clip.transl, np.float32).copy()
  out = jax.jit(body_lib.body_forward)(body_model, jnp.asarray(betas),
                                       jnp.asarray(clip.body_pose, jnp.float32),
                                       jnp.asarray(clip.global_orient, jnp.float32),
                                       jnp.asarray(transl))
  lowest = float(np.min(np.asarray(out.vertices)[..., 1]))
  pelvis = np.asarray(out.joints[:, 0])
  shift = np.array([-pelvis[0, 0], -lowest, -pelvis[0, 2]], np.float32)
  return transl + shift, pelvis + shift


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.report import figures  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.report import video as video_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.camera import intrinsics  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  try:
    background = [float(c) for c in _BACKGROUND.value]
  except ValueError:
    raise common.InputError(f"--background: expected 3 numbers, found {_BACKGROUND.value}"
                            ) from None
  if len(background) != 3:
    raise common.InputError(f"--background: expected 3 numbers (RGB), found {len(background)}")
  if _FPS.value <= 0 or _IMAGE_SIZE.value < 16:
    raise common.InputError(f"--fps must be > 0 and --image_size >= 16, found {_FPS.value} and "
                            f"{_IMAGE_SIZE.value}")
  clip = load_motion(_MOTION.value, _FPS.value)  # cheap checks first
  body_model = common.load_body_model(_BODY_MODEL.value)
  avatar, betas = load_avatar_and_betas(body_model)
  if _MAX_FRAMES.value > 0:
    clip = clip.slice(0, _MAX_FRAMES.value)
  transl, pelvis = place_motion(body_model, betas, clip)
  num_frames = len(transl)
  size = _IMAGE_SIZE.value
  k = intrinsics(size * _DISTANCE.value / _FIELD_OF_VIEW.value, size, size)
  targets = pelvis.copy() if _FOLLOW.value else np.repeat(pelvis[:1], num_frames, 0)
  targets[:, 1] = _CAMERA_HEIGHT.value * 0.9  # look slightly down at the body's middle
  cameras = video_lib.orbit_cameras(targets, k, size, size, distance=_DISTANCE.value,
                                  camera_height=_CAMERA_HEIGHT.value,
                                  start_azimuth_deg=_VIEW_AZIMUTH[_VIEW.value] + _AZIMUTH.value,
                                  turns=1.0 if _VIEW.value == "orbit" else 0.0)
  poses = body_lib.SMPLParams(betas=betas, body_pose=np.asarray(clip.body_pose, np.float32),
                              global_orient=np.asarray(clip.global_orient, np.float32),
                              transl=transl)
  out_dir = _OUTPUT_DIR.value
  common.open_run_dir(out_dir, "animate", overwrite=_OVERWRITE.value,
                      motion={"name": clip.name, "frames": num_frames, "fps": _FPS.value,
                              "source": os.path.abspath(_MOTION.value)})
  renders = evaluation.render_frames(avatar, body_model, poses, cameras, background=background,
                                     backend=_BACKEND.value, tile_capacity=_TILE_CAPACITY.value,
                                     progress=_PROGRESS.value, desc="animate")
  name = os.path.splitext(os.path.basename(_MOTION.value))[0]
  video = os.path.join(out_dir, f"{name}.mp4")
  video_lib.write_video(video, renders["rgb"], _FPS.value)
  if _PNG.value:
    import imageio.v3 as iio  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    os.makedirs(os.path.join(out_dir, "frames"), exist_ok=True)
    for t, rgb in enumerate(renders["rgb"]):
      iio.imwrite(os.path.join(out_dir, "frames", f"{t:06d}.png"), figures.to_uint8(rgb))
  overflow = int(renders["overflow"].sum())
  print(f"{num_frames} frames of '{clip.name}' -> {video}"
        + (f" (tile overflow {overflow}: raise --tile_capacity)" if overflow else ""))


if __name__ == "__main__":
  common.run(main)
