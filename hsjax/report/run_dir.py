"""The files of a run directory: metrics, tables, parameters, the avatar, pictures and videos.

:func:`write_run` writes, next to the ``flags.txt`` / ``config.json`` of the script::

  metrics.json          evaluation (hsjax.evaluation.evaluate_run) + fit summary
  table.md              the results as Markdown tables
  history.json          the fit's loss curves
  smpl_refined.npz      refined SMPL parameters, smplx naming (hsjax.io.smpl_npz)
  smpl_hmr.npz          the HMR initialisation, same layout
  avatar.npz            the avatar, every field (exact reload: hsjax.io.load_avatar)
  avatar.ply            the canonical avatar as a 3DGS .ply with skinning attributes
  panels/frame_XXXX.png input | render | error | mask overlay | HMR vs refined mesh
  train_view.mp4        input | render of every training frame
  orbit.mp4             the avatar in the refined poses from a camera circling the subject
  pose_error.png        per-frame MPJPE, PA-MPJPE and root error, HMR vs refined
"""

from __future__ import annotations

import json
import os
from typing import Any

import imageio.v3 as iio
import jax
import numpy as np
import tqdm

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import evaluation
from hsjax.camera import Camera
from hsjax.camera import image_up_sign
from hsjax.io.avatar_npz import save_avatar
from hsjax.io.ply import save_avatar_ply
from hsjax.io.smpl_npz import save_smpl_npz
from hsjax.report.figures import frame_panel
from hsjax.report.figures import hstack_tiles
from hsjax.report.figures import plot_pose_errors
from hsjax.report.figures import to_uint8
from hsjax.report.tables import results_markdown
from hsjax.report.video import orbit_cameras
from hsjax.report.video import write_video


def write_json(path: str, obj: Any) -> None:
  """Writes JSON (numpy / jax values converted) with sorted keys."""

  def default(x):
    if isinstance(x, (np.generic,)):
      return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
      return np.asarray(x).tolist()
    return str(x)

  with open(path, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=default)


def orbit_views(body_model: body_lib.BodyModel, poses: body_lib.SMPLParams, cameras: Camera,
                num_frames: int, *, pelvis: np.ndarray | None = None
                ) -> tuple[Camera, body_lib.SMPLParams]:
  """The cameras and poses of the orbit video: the motion replayed while a camera circles it.

  The orbit turns about the world's +y at the first camera's distance and height. A video
  fit's world is the camera's own frame (y down): it is first stood upright on the body's mean
  up axis (:func:`hsjax.body.upright_transform`), and the poses returned are in that world.

  Args:
    body_model: the fit's body model.
    poses: the refined poses, T frames.
    cameras: the sequence's cameras (T frames; the first sets distance and height).
    num_frames: orbit frames (the motion loops when longer than T).
    pelvis: [T, 3] the posed pelvis joints, when already known.

  Returns:
    ``(cameras, poses)`` of ``num_frames`` frames.
  """
  if pelvis is None:
    pelvis = body_lib.pose_frames_host(body_model, poses)[1][:, 0]
  world = (np.eye(4) if image_up_sign(cameras.world_to_cam[0]) > 0
           else body_lib.upright_transform(poses))
  centre = (world @ np.asarray(cameras.cam_to_world[0], np.float64))[:3, 3]
  targets = pelvis @ world[:3, :3].T + world[:3, 3]
  distance = float(np.linalg.norm((centre - targets[0])[[0, 2]]))
  idx = np.arange(num_frames) % len(pelvis)
  orbit = orbit_cameras(targets[idx], np.asarray(cameras.K[0]), cameras.width, cameras.height,
                        distance=max(distance, 1.0), camera_height=float(centre[1]))
  upright = body_lib.transform_params(body_model, poses, world)
  return orbit, body_lib.SMPLParams(betas=upright.betas, body_pose=upright.body_pose[idx],
                                    global_orient=upright.global_orient[idx],
                                    transl=upright.transl[idx])


def write_run(run_dir: str, *, body_model: body_lib.BodyModel, sequence,
              avatar: avatar_lib.Avatar, poses: body_lib.SMPLParams,
              evaluation_result: dict[str, Any] | None = None, history: dict | None = None,
              fit_summary: dict | None = None, background=(0.0, 0.0, 0.0),
              backend: str = "auto", tile_capacity: int = 128, num_panels: int = 4,
              orbit_frames: int = 90, videos: bool = True, progress: bool = False,
              title: str = "Results") -> dict[str, str]:
  """Writes every output of a run (see the module docstring) into ``run_dir``.

  Args:
    run_dir: created if missing.
    body_model: the fit's body model.
    sequence: the fitted ``hsjax.data.Sequence``.
    avatar: the fitted avatar.
    poses: the refined poses (T frames).
    evaluation_result: :func:`hsjax.evaluation.evaluate_run`'s dict (metrics.json / table.md;
      the pose plot needs its ``"pose"`` entry).
    history: the fit's history (history.json).
    fit_summary: stored under ``"fit"`` in metrics.json (steps, time, final loss).
    background, backend, tile_capacity: rendering settings (the fit's).
    num_panels: frames shown as PNG panels (evenly spaced).
    orbit_frames: length of the orbit video.
    videos: write the MP4s.
    progress: show progress bars.
    title: heading of table.md.

  Returns:
    ``{output name: path}`` of the files written.
  """
  os.makedirs(run_dir, exist_ok=True)
  written: dict[str, str] = {}

  def path(name):
    written[name] = os.path.join(run_dir, name)
    return written[name]

  num_frames = len(sequence)
  result = dict(evaluation_result or {})
  if fit_summary is not None:
    result["fit"] = fit_summary
  write_json(path("metrics.json"), result)
  with open(path("table.md"), "w") as f:
    f.write(results_markdown(result, title))
  if history is not None:
    write_json(path("history.json"), history)
  save_smpl_npz(path("smpl_refined.npz"), poses, fps=sequence.fps)
  save_smpl_npz(path("smpl_hmr.npz"), sequence.hmr, fps=sequence.fps)
  save_avatar(path("avatar.npz"), avatar)
  if "pose" in result:
    plot_pose_errors(path("pose_error.png"), result["pose"]["per_frame"])

  renders = evaluation.render_frames(avatar, body_model, poses, sequence.cameras,
                                     background=background, backend=backend,
                                     tile_capacity=tile_capacity, progress=progress,
                                     desc="training view")
  refined_verts, refined_joints = body_lib.pose_frames_host(body_model, poses)
  hmr_verts, _ = body_lib.pose_frames_host(body_model, sequence.hmr)
  pelvis = refined_joints[:, 0]
  faces = np.asarray(body_model.faces)
  os.makedirs(os.path.join(run_dir, "panels"), exist_ok=True)
  panel_frames = np.unique(np.linspace(0, num_frames - 1, max(num_panels, 1)).round()
                           ).astype(int)
  for t in tqdm.tqdm(panel_frames, desc="panels", disable=not progress, leave=False):
    image = np.asarray(sequence.images[t], np.float32)
    mask = np.asarray(sequence.masks[t], np.float32)
    cam = Camera(K=np.asarray(sequence.cameras.K[t]),
                 world_to_cam=np.asarray(sequence.cameras.world_to_cam[t]),
                 width=sequence.cameras.width, height=sequence.cameras.height)
    panel = frame_panel(image, evaluation.composite_target(image, mask, background),
                        renders["rgb"][t], renders["alpha"][t], mask, cam, faces,
                        hmr_verts[t], refined_verts[t], title=f"frame {t}")
    iio.imwrite(path(f"panels/frame_{t:04d}.png"), panel)

  if videos:
    train = (hstack_tiles([to_uint8(sequence.images[t]), to_uint8(renders["rgb"][t])])
             for t in range(num_frames))
    write_video(path("train_view.mp4"), train, sequence.fps)
    orbit, orbit_poses = orbit_views(body_model, poses, sequence.cameras, orbit_frames,
                                     pelvis=pelvis)
    bg = np.asarray(background, np.float32)
    orbit_renders = evaluation.render_frames(avatar, body_model, orbit_poses, orbit,
                                             background=bg, backend=backend,
                                             tile_capacity=tile_capacity, progress=progress,
                                             desc="orbit")
    write_video(path("orbit.mp4"), orbit_renders["rgb"], sequence.fps)
  save_avatar_ply(path("avatar.ply"), avatar)
  return written
