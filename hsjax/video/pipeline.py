"""From a decoded video and its observations to a ``hsjax.data.Sequence`` the fit takes.

Camera: a pinhole with the principal point at the image centre and the focal length from a
field-of-view prior (or given); the world frame *is* the camera frame (identity extrinsics,
as PHALP / 4D-Humans write their outputs). A static camera is then exact; with a panning or
moving camera the recovered motion is relative to the camera (the body turns when the camera
pans), since nothing in a monocular clip without a scene model separates the two.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hsjax import body as body_lib
from hsjax import metrics
from hsjax.camera import Camera
from hsjax.camera import intrinsics
from hsjax.camera import project_points
from hsjax.data.sequence import Sequence
from hsjax.fit.config import FORMER_POSE_WEIGHTS
from hsjax.fit.config import FitConfig
from hsjax.rendering import DEFAULT_TILE_CAPACITY
from hsjax.video import correspondence
from hsjax.video import init as init_lib
from hsjax.video.observations import Observations
from hsjax.video.observations import describe_frames

# Diagonal field of view of the default prior: focal = the image diagonal (53.1°), the prior
# CLIFF and later HMR methods use for uncalibrated images; phone main cameras (~26 mm
# equivalent) have about 75° diagonal, so pass --focal or --fov for wide-angle clips.
DEFAULT_DIAGONAL_FOV_DEG = 2.0 * math.degrees(math.atan(0.5))

# Loss weights a video fit overrides (FitConfig.loss_weights): the 2D keypoint term on; depth
# terms have no depth to read and cost nothing. Chosen with the schedule below on the
# calibration clips dance_a:1, punch:2 and jump:5 (`experiments/video_synthetic.py
# --sequences=dance_a:1,punch:2,jump:5 --keypoints_weight=W --steps=S --warmup_steps=S/6`),
# from the landmark initialisation of InitConfig's defaults. Mean improvement of the joint fit
# over that initialisation, MPJPE / PA-MPJPE (negative: worse), and the refined render's mask
# IoU, at 300 steps: W = 1.0 -3.5 / -0.5 % (0.838), 0.3 +0.2 / +2.5 % (0.857), 0.1 +1.7 /
# +3.3 % (0.868), 0 -0.4 / +0.7 % (0.869); with W = 0.1 at 600 steps +2.1 / +5.3 % (0.880)
# and at 900 +0.7 / +4.1 % (0.883). Once the initialisation reads depth from BlazePose's bone
# directions, the 2D landmarks (~7 px off) mostly pull the body away from the silhouette, so
# they get a light weight. The pose prior stays at 0.001 (`--pose_prior_weight=0.1` gave
# +1.9 / +3.4 % at 300 steps; the library's 1, chosen for HMR starts, held an earlier, poorer
# landmark start in place). Joint smoothness and CAMEL point-to-mesh stay at the weights these
# were chosen with (the library's until 2026-12-05).
#
# The mask weight is 10 (the library's 2) with the frames fitted as decoded (VIDEO_DOWNSAMPLE
# below), chosen on all five calibration clips (dance_a:1, punch:2, jump:5, spin:6, kick:7;
# BENCHMARKS.md, "Video front end") by the rule: the highest mean IoU of the refined render
# against the true masks whose mean MPJPE and PA-MPJPE stay within 1 mm of the settings before.
# Mean IoU / MPJPE / PA-MPJPE of the joint fit: before (factor 2, mask 2) 0.855 / 108.8 /
# 84.5 mm; factor 1, mask 10: 0.902 / 109.7 / 84.9; also with joint smoothness 3: 0.903 /
# 109.9 / 85.0. On kick:7 and spin:6, factor 2 with mask 20 gave +0.007 IoU only, and factor 1
# with mask 2 or 30: 0.863 or 0.881 (mask 10: 0.879).
#
# The anchor tether (the library's 30 since 2026-12-05) is off: these were chosen without it.
VIDEO_LOSS_WEIGHTS = tuple({**dict(FORMER_POSE_WEIGHTS), "keypoints_2d": 0.1,
                            "pose_prior": 0.001, "mask": 10.0, "anchor_tether": 0.0}.items())
# A video fit's schedule (steps, warm-up), chosen above; --steps or --preset replace it.
VIDEO_SCHEDULE = (600, 100)
# The step after which the avatar's sides the camera never faced take the seen side's colour
# (FitConfig.fill_unseen_at): 100 steps before the end, as the quality preset. A person filmed
# from the front otherwise shows a grey back in the orbit video. It recolours only what the
# camera did not see: on the evaluation sequences the poses and the mask IoU match the fit
# without it to 0.1 mm and 0.001 (BENCHMARKS.md, "Video front end").
VIDEO_FILL_UNSEEN_AT = 500
# Whether a video fit refines the shape of the landmark initialisation (FitConfig.train_betas;
# --train_betas or --preset replace it). The settings above were chosen with it fixed; refined
# at the library's rate it changed nothing that matters on the same clips: improvement over
# the initialisation +1.6 / +5.0 % MPJPE / PA-MPJPE (fixed: +2.1 / +5.3 %), mask IoU 0.880
# (0.880).
VIDEO_TRAIN_BETAS = False
# The factor by which a video fit reduces its frames (FitConfig.downsample; --downsample or
# --preset replace it): 1, the decoded frames as they are (the video command decodes to a
# long side of 512 px). A person in a video is small (~5k pixels at 256²): at the library's
# factor 2 the silhouette is fitted on pixels of twice the size, and a 1-pixel band of edge
# costs ~0.05 IoU. Chosen with the mask weight above on the calibration clips: BENCHMARKS.md,
# "Video front end".
VIDEO_DOWNSAMPLE = 1
# Whether a video fit fits windows around the person instead of whole frames
# (FitConfig.person_crop; --person_crop or --preset replace it). Chosen on the five
# calibration clips by the mask weight's rule above: mean IoU 0.902 (whole frames 0.901), MPJPE
# / PA-MPJPE 110.1 / 84.7 mm (109.6 / 84.9), fits 11 % shorter (BENCHMARKS.md, "Video front
# end").
VIDEO_PERSON_CROP = True
# The SH degree of a video fit's avatar colour (FitConfig.sh_degree; --sh_degree or --preset
# replace it): 0, a view-independent colour, as the quality preset. One camera sees most body
# parts from one side, and a view-dependent part fitted there shows as wrong colour from
# elsewhere. Chosen on the five calibration clips by the highest mean novel-view PSNR of the
# refined avatar, rigidly aligned (held-out views of the synthetic sequences), whose mean
# MPJPE and PA-MPJPE stay within 1 mm and mean IoU within 0.002 of degree 1: 19.51 -> 19.72
# dB (every clip +0.18 to +0.24), MPJPE 99.5 -> 99.7 mm, PA-MPJPE 76.3 -> 76.3, IoU 0.906 ->
# 0.904 (BENCHMARKS.md, "Video front end").
VIDEO_SH_DEGREE = 0


def video_fit_config(**overrides) -> FitConfig:
  """The configuration of a video fit: ``FitConfig``'s defaults with the video's settings above.

  Those are the loss weights (:data:`VIDEO_LOSS_WEIGHTS`), the schedule
  (:data:`VIDEO_SCHEDULE`), the shape kept (:data:`VIDEO_TRAIN_BETAS`), the frames as decoded
  (:data:`VIDEO_DOWNSAMPLE`) and windowed (:data:`VIDEO_PERSON_CROP`), the colour's SH degree
  (:data:`VIDEO_SH_DEGREE`) and the unseen sides coloured at :data:`VIDEO_FILL_UNSEEN_AT`.
  ``overrides`` (any ``FitConfig`` field) replace them; with fewer ``steps`` the warm-up and
  the colouring step are kept within the schedule unless given.
  """
  default_steps, default_warmup = VIDEO_SCHEDULE
  steps = overrides.get("steps", default_steps)
  fields = {"steps": steps, "warmup_steps": min(default_warmup, steps),
            "fill_unseen_at": min(VIDEO_FILL_UNSEEN_AT, steps),
            "loss_weights": VIDEO_LOSS_WEIGHTS, "train_betas": VIDEO_TRAIN_BETAS,
            "downsample": VIDEO_DOWNSAMPLE, "person_crop": VIDEO_PERSON_CROP,
            "sh_degree": VIDEO_SH_DEGREE}
  return FitConfig(**{**fields, **overrides})


def focal_from_fov(width: int, height: int, diagonal_fov_deg: float) -> float:
  """Focal length in pixels whose diagonal field of view is ``diagonal_fov_deg``."""
  if not 1.0 < diagonal_fov_deg < 179.0:
    raise ValueError(f"field of view must lie in (1, 179) degrees, found {diagonal_fov_deg}")
  return 0.5 * math.hypot(width, height) / math.tan(math.radians(diagonal_fov_deg) / 2.0)


def video_cameras(width: int, height: int, num_frames: int, *, focal: float | None = None,
                  diagonal_fov_deg: float = DEFAULT_DIAGONAL_FOV_DEG) -> Camera:
  """Static pinhole cameras with identity extrinsics: K [T, 3, 3], world_to_cam [T, 4, 4]."""
  f = focal if focal else focal_from_fov(width, height, diagonal_fov_deg)
  if f <= 0:
    raise ValueError(f"focal length must be > 0 pixels, found {f}")
  k = np.broadcast_to(intrinsics(f, width, height), (num_frames, 3, 3)).copy()
  w2c = np.broadcast_to(np.eye(4, dtype=np.float32), (num_frames, 4, 4)).copy()
  return Camera(K=k, world_to_cam=w2c, width=width, height=height)


def usable_frames(observations: Observations, *, min_visible: int = 8) -> np.ndarray:
  """[T] bool: frames with a detection, at least ``min_visible`` landmarks of visibility
  >= 0.5, and a non-empty mask."""
  vis = np.sum(observations.landmarks[..., 2] >= 0.5, axis=-1)
  has_mask = observations.masks.reshape(len(observations), -1).max(axis=-1) > 0.5
  return observations.detected & (vis >= min_visible) & has_mask


def initialise(body_model: body_lib.BodyModel, observations: Observations, cameras: Camera,
               config: init_lib.InitConfig = init_lib.InitConfig(),
               weights: np.ndarray = correspondence.CALIBRATED_WEIGHTS):
  """Landmark initialisation of the usable frames of ``observations``.

  Returns:
    ``(params, keypoints [T, 24, 3], report)`` over the *usable* frames only (see
    :func:`usable_frames`), in the camera frame.
  """
  keep = usable_frames(observations)
  obs = observations.select(keep)
  keypoints = correspondence.smpl_keypoints(obs.landmarks, weights)
  world = correspondence.smpl_world_joints(obs.world_landmarks, weights)
  k = np.asarray(cameras.K)[keep] if np.asarray(cameras.K).ndim == 3 else cameras.K
  params, report = init_lib.fit_landmarks(body_model, keypoints, world, k, config=config)
  return params, keypoints, report


def build_sequence(name: str, frames: np.ndarray, observations: Observations, cameras: Camera,
                   init: body_lib.SMPLParams, keypoints: np.ndarray, *, fps: float,
                   gt: body_lib.SMPLParams | None = None) -> tuple[Sequence, dict]:
  """The ``Sequence`` of the usable frames (others leave the fit and are listed).

  Args:
    name: sequence name.
    frames: [T, H, W, 3] uint8 (all decoded frames).
    observations: their observations (T frames).
    cameras: T cameras.
    init: the landmark initialisation of the usable frames (:func:`initialise`).
    keypoints: [U, 24, 3] the usable frames' SMPL keypoints.
    fps: frames per second of ``frames``.
    gt: ground truth of the *usable* frames (synthetic benchmarks only; scoring).

  Returns:
    ``(sequence, info)`` with ``info = {"used": [U] source frame numbers, "dropped": [...],
    "message": one line or ""}``.

  Raises:
    ValueError: when no frame is usable (naming how many frames were looked at).
  """
  keep = usable_frames(observations)
  if not np.any(keep):
    raise ValueError(f"no person found in any of the {len(observations)} frames "
                     f"(source frames {describe_frames(observations.frame_indices)})")
  dropped = observations.frame_indices[~keep]
  message = ""
  if len(dropped):
    message = (f"no usable person in {len(dropped)} of {len(keep)} frames (source frames "
               f"{describe_frames(dropped)}): those frames leave the fit")
  images = frames[keep].astype(np.float32) / 255.0
  masks = observations.masks[keep].astype(np.float32)
  cams = Camera(K=np.asarray(cameras.K)[keep], world_to_cam=np.asarray(cameras.world_to_cam)[keep],
                width=cameras.width, height=cameras.height)
  seq = Sequence(name=name, images=images, masks=masks, depth=None, depth_kind=None,
                 cameras=cams, hmr=init, gt=gt, fps=fps, keypoints_2d=keypoints,
                 metadata={"source": "hsjax.video", "frame_indices":
                           observations.frame_indices[keep].tolist(),
                           "per_frame": ["frame_indices"], "backend": observations.backend,
                           "notes": list(observations.notes), "dropped_frames": dropped.tolist()})
  info = {"used": observations.frame_indices[keep].tolist(), "dropped": dropped.tolist(),
          "message": message}
  return seq, info


def agreement_with_observations(body_model: body_lib.BodyModel, avatar, sequence: Sequence,
                                poses: body_lib.SMPLParams, *, backend: str = "auto",
                                tile_capacity: int = DEFAULT_TILE_CAPACITY) -> dict[str, float]:
  """How well poses and avatar agree with what the detector saw (a real clip has no truth).

  Args:
    body_model: the fit's body model.
    avatar: the fitted avatar.
    sequence: the video sequence (:func:`build_sequence`: masks and ``keypoints_2d [T, 24,
      3]`` are the observations).
    poses: T frames to score (the landmark initialisation or the refined poses).
    backend, tile_capacity: rendering settings (the fit's).

  Returns:
    ``{"mask_iou": mean IoU of the avatar's silhouette (alpha > 0.5) with the observed masks,
    "keypoint_px_median": median distance in pixels of the projected SMPL joints to the
    mapped landmarks of confidence > 0.5}``.
  """
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  renders = evaluation.render_frames(avatar, body_model, poses, sequence.cameras,
                                     backend=backend, tile_capacity=tile_capacity)
  iou = metrics.mask_iou(renders["alpha"], sequence.masks)
  _, joints = body_lib.pose_frames_host(body_model, poses)
  uv, _ = jax.vmap(project_points)(sequence.cameras, jnp.asarray(joints))
  keypoints = np.asarray(sequence.keypoints_2d)
  confident = keypoints[..., 2] > 0.5
  error = np.linalg.norm(np.asarray(uv) - keypoints[..., :2], axis=-1)[confident]
  return {"mask_iou": float(np.mean(iou)),
          "keypoint_px_median": float(np.median(error)) if error.size else float("nan")}
