"""A plain video in: person masks and body landmarks, then an initial SMPL per frame.

Stages (each usable alone): :func:`read_video` decodes; an :class:`Observer` (the MediaPipe
backend :class:`MediaPipeObserver`, from the ``video`` extra) gives :class:`Observations`;
:mod:`~hsjax.video.correspondence` maps BlazePose's 33 landmarks to SMPL's 24 joints;
:func:`fit_landmarks` fits SMPL to them (SMPLify-style, JAX + Optax); :func:`build_sequence`
makes the ``hsjax.data.Sequence`` the joint fit takes, with the landmark fit as its "HMR"
input and :data:`VIDEO_LOSS_WEIGHTS` for the fit's config. ``experiments/video.py`` runs it
all.
"""

from hsjax.body import transform_params
from hsjax.video.correspondence import CALIBRATED_WEIGHTS
from hsjax.video.correspondence import NAIVE_WEIGHTS
from hsjax.video.correspondence import smpl_keypoints
from hsjax.video.correspondence import smpl_world_joints
from hsjax.video.decode import VideoFrames
from hsjax.video.decode import read_video
from hsjax.video.init import InitConfig
from hsjax.video.init import fit_landmarks
from hsjax.video.mediapipe_observer import MediaPipeObserver
from hsjax.video.mediapipe_observer import mediapipe_available
from hsjax.video.observations import LANDMARK_NAMES
from hsjax.video.observations import Observations
from hsjax.video.observations import Observer
from hsjax.video.observations import load_observations
from hsjax.video.pipeline import DEFAULT_DIAGONAL_FOV_DEG
from hsjax.video.pipeline import VIDEO_DOWNSAMPLE
from hsjax.video.pipeline import VIDEO_FILL_UNSEEN_AT
from hsjax.video.pipeline import VIDEO_LOSS_WEIGHTS
from hsjax.video.pipeline import VIDEO_PERSON_CROP
from hsjax.video.pipeline import VIDEO_SCHEDULE
from hsjax.video.pipeline import VIDEO_SH_DEGREE
from hsjax.video.pipeline import VIDEO_TRAIN_BETAS
from hsjax.video.pipeline import agreement_with_observations
from hsjax.video.pipeline import build_sequence
from hsjax.video.pipeline import focal_from_fov
from hsjax.video.pipeline import initialise
from hsjax.video.pipeline import usable_frames
from hsjax.video.pipeline import video_cameras
from hsjax.video.pipeline import video_fit_config

__all__ = [
    "CALIBRATED_WEIGHTS",
    "DEFAULT_DIAGONAL_FOV_DEG",
    "InitConfig",
    "LANDMARK_NAMES",
    "MediaPipeObserver",
    "NAIVE_WEIGHTS",
    "Observations",
    "Observer",
    "VIDEO_DOWNSAMPLE",
    "VIDEO_FILL_UNSEEN_AT",
    "VIDEO_LOSS_WEIGHTS",
    "VIDEO_PERSON_CROP",
    "VIDEO_SCHEDULE",
    "VIDEO_SH_DEGREE",
    "VIDEO_TRAIN_BETAS",
    "VideoFrames",
    "agreement_with_observations",
    "build_sequence",
    "fit_landmarks",
    "focal_from_fov",
    "initialise",
    "load_observations",
    "mediapipe_available",
    "read_video",
    "smpl_keypoints",
    "smpl_world_joints",
    "transform_params",
    "usable_frames",
    "video_cameras",
    "video_fit_config",
]
