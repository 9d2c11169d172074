"""BlazePose's 33 landmarks -> the 24 SMPL joints.

BlazePose's shoulders, hips, heels and toes are surface / anatomical landmarks, not SMPL's
joint centres (its hips sit wider and higher than SMPL's hip joints; SMPL's foot joint is at
the ball of the foot, between heel and toe; SMPL's neck and head joints are inside the body).
Each SMPL joint is therefore an *affine combination* of a few nearby landmarks,

    J_j = Σ_k W_jk L_k,   Σ_k W_jk = 1,   W_jk = 0 outside joint j's support,

which is equivariant under rotations, translations and scaling: the same weights map 2D
landmarks (pixels) and 3D world landmarks (metres), at any distance and in any pose, and a
constant offset along a limb (e.g. "the hip joint lies 30 % of the way from BlazePose's hip
towards the other hip and a little towards the knee") is exactly representable. SMPL's own
joint regressor is the same construction over mesh vertices.

:data:`NAIVE_WEIGHTS` is the one-to-one correspondence (hip -> hip, heel/toe midpoint ->
foot, ear midpoint -> head, ...). :data:`CALIBRATED_WEIGHTS` was fitted by
``experiments/video_landmark_offsets.py`` with :func:`fit_weights`: MediaPipe run on rendered
frames of synthetic sequences (clips and seeds other than the video benchmark's, and their
mirror images, so that left and right get the same weights), against the projected
ground-truth SMPL joints, by least squares with the sum-to-one constraint and a ridge towards
the naive weights. That script prints the systematic offsets before and after. Measured
there (image offsets of the naive mapping, in torso lengths): SMPL's neck joint lies ~0.15
above BlazePose's shoulder midpoint, its spine3 ~0.18 below the naive hip/shoulder
interpolation, its pelvis and hip joints ~0.05-0.07 above BlazePose's hips; the fitted weights
move each hip joint ~6 % of the hip width outwards and 7 % of the thigh upwards, the neck
towards the ears, the foot towards the toes (0.79 toe, 0.23 heel).
Spine joints (3, 6, 9) and the collars (13, 14) are observed only through the torso's
corners, so they get confidence :data:`DERIVED_CONFIDENCE`.
"""

from __future__ import annotations

import numpy as np

from hsjax.video.observations import LANDMARK_NAMES

_L = {name: i for i, name in enumerate(LANDMARK_NAMES)}

# SMPL joint -> landmarks it is combined from; the first entries carry the naive weights.
SUPPORT: dict[int, tuple[tuple[str, ...], dict[str, float]]] = {
    0: (("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
        {"left_hip": 0.5, "right_hip": 0.5}),
    1: (("left_hip", "right_hip", "left_knee"), {"left_hip": 1.0}),
    2: (("right_hip", "left_hip", "right_knee"), {"right_hip": 1.0}),
    3: (("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
        {"left_hip": 0.375, "right_hip": 0.375, "left_shoulder": 0.125, "right_shoulder": 0.125}),
    4: (("left_knee", "left_hip", "left_ankle"), {"left_knee": 1.0}),
    5: (("right_knee", "right_hip", "right_ankle"), {"right_knee": 1.0}),
    6: (("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
        {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25}),
    7: (("left_ankle", "left_heel", "left_foot_index", "left_knee"), {"left_ankle": 1.0}),
    8: (("right_ankle", "right_heel", "right_foot_index", "right_knee"), {"right_ankle": 1.0}),
    9: (("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
        {"left_hip": 0.125, "right_hip": 0.125, "left_shoulder": 0.375, "right_shoulder": 0.375}),
    10: (("left_heel", "left_foot_index", "left_ankle"),
         {"left_heel": 0.5, "left_foot_index": 0.5}),
    11: (("right_heel", "right_foot_index", "right_ankle"),
         {"right_heel": 0.5, "right_foot_index": 0.5}),
    12: (("left_shoulder", "right_shoulder", "left_ear", "right_ear", "left_hip", "right_hip"),
         {"left_shoulder": 0.5, "right_shoulder": 0.5}),
    13: (("left_shoulder", "right_shoulder", "left_ear", "left_hip"),
         {"left_shoulder": 0.5, "right_shoulder": 0.5}),
    14: (("right_shoulder", "left_shoulder", "right_ear", "right_hip"),
         {"left_shoulder": 0.5, "right_shoulder": 0.5}),
    15: (("left_ear", "right_ear", "nose", "left_shoulder", "right_shoulder"),
         {"left_ear": 0.5, "right_ear": 0.5}),
    16: (("left_shoulder", "right_shoulder", "left_elbow", "left_hip"), {"left_shoulder": 1.0}),
    17: (("right_shoulder", "left_shoulder", "right_elbow", "right_hip"),
         {"right_shoulder": 1.0}),
    18: (("left_elbow", "left_shoulder", "left_wrist"), {"left_elbow": 1.0}),
    19: (("right_elbow", "right_shoulder", "right_wrist"), {"right_elbow": 1.0}),
    20: (("left_wrist", "left_elbow", "left_pinky", "left_index"), {"left_wrist": 1.0}),
    21: (("right_wrist", "right_elbow", "right_pinky", "right_index"), {"right_wrist": 1.0}),
    22: (("left_pinky", "left_index", "left_wrist", "left_thumb"),
         {"left_pinky": 0.25, "left_index": 0.25, "left_wrist": 0.5}),
    23: (("right_pinky", "right_index", "right_wrist", "right_thumb"),
         {"right_pinky": 0.25, "right_index": 0.25, "right_wrist": 0.5}),
}
DERIVED_JOINTS = (3, 6, 9, 13, 14)  # spine and collars: not directly observed.
DERIVED_CONFIDENCE = 0.3
CONFIDENCE_MIN_WEIGHT = 0.1  # landmarks weighted less do not set a joint's confidence.


def _weights_from(table: dict[int, dict[str, float]]) -> np.ndarray:
  w = np.zeros((24, len(LANDMARK_NAMES)), np.float32)
  for j, row in table.items():
    for name, value in row.items():
      w[j, _L[name]] = value
  return w


NAIVE_WEIGHTS = _weights_from({j: naive for j, (_, naive) in SUPPORT.items()})

# Fitted by
#   python experiments/video_landmark_offsets.py --sequences=dance_a:1,punch:2,jump:5 \
#     --holdout=default:0,kick:3,spin:4
# (MediaPipe on 179 rendered frames of the calibration clips plus their mirror images; ridge 1
# chosen by leave-one-sequence-out). Mean 2D error at the SMPL joints on the holdout clips,
# which were not used: 8.1 px naive -> 6.9 px (0.168 -> 0.146 torso lengths); spine3 12.5 -> 4.8,
# neck 9.1 -> 4.8, spine2 8.4 -> 4.4 px; world landmarks mapped alike, root-relative 3D error
# 154 -> 145 mm. Knees and elbows stay within 0.3 px of the naive mapping.
_CALIBRATED: dict[int, dict[str, float]] = {
    0: {"left_hip": 0.4563, "right_hip": 0.4738, "left_shoulder": 0.0394, "right_shoulder": 0.0305},
    1: {"left_hip": 1.1363, "right_hip": -0.0615, "left_knee": -0.0748},
    2: {"right_hip": 1.1363, "left_hip": -0.0615, "right_knee": -0.0748},
    3: {"left_hip": 0.3742, "right_hip": 0.3744, "left_shoulder": 0.1258, "right_shoulder": 0.1256},
    4: {"left_knee": 1.0118, "left_hip": -0.007, "left_ankle": -0.0048},
    5: {"right_knee": 1.0118, "right_hip": -0.007, "right_ankle": -0.0048},
    6: {"left_hip": 0.3216, "right_hip": 0.293, "left_shoulder": 0.1854, "right_shoulder": 0.2},
    7: {"left_ankle": 1.1783, "left_heel": -0.0728, "left_foot_index": -0.0399,
        "left_knee": -0.0656},
    8: {"right_ankle": 1.1783, "right_heel": -0.0728, "right_foot_index": -0.0399,
        "right_knee": -0.0656},
    9: {"left_hip": 0.2535, "right_hip": 0.2022, "left_shoulder": 0.259, "right_shoulder": 0.2853},
    10: {"left_heel": 0.2341, "left_foot_index": 0.7914, "left_ankle": -0.0255},
    11: {"right_heel": 0.2341, "right_foot_index": 0.7914, "right_ankle": -0.0255},
    12: {"left_shoulder": 0.5128, "right_shoulder": 0.5109, "left_ear": 0.0479, "right_ear": 0.0499,
         "left_hip": -0.062, "right_hip": -0.0595},
    13: {"left_shoulder": 0.5431, "right_shoulder": 0.4165, "left_ear": 0.0211, "left_hip": 0.0193},
    14: {"right_shoulder": 0.5431, "left_shoulder": 0.4165, "right_ear": 0.0211,
         "right_hip": 0.0193},
    15: {"left_ear": 0.6115, "right_ear": 0.5346, "nose": -0.2695, "left_shoulder": 0.0522,
         "right_shoulder": 0.0712},
    16: {"left_shoulder": 1.0438, "right_shoulder": -0.0672, "left_elbow": -0.0431,
         "left_hip": 0.0665},
    17: {"right_shoulder": 1.0438, "left_shoulder": -0.0672, "right_elbow": -0.0431,
         "right_hip": 0.0665},
    18: {"left_elbow": 0.8504, "left_shoulder": 0.092, "left_wrist": 0.0576},
    19: {"right_elbow": 0.8504, "right_shoulder": 0.092, "right_wrist": 0.0576},
    20: {"left_wrist": 1.3782, "left_elbow": -0.0379, "left_pinky": -0.2421, "left_index": -0.0982},
    21: {"right_wrist": 1.3782, "right_elbow": -0.0379, "right_pinky": -0.2421,
         "right_index": -0.0982},
    22: {"left_pinky": 0.3722, "left_index": 0.8204, "left_wrist": 0.1669, "left_thumb": -0.3595},
    23: {"right_pinky": 0.3722, "right_index": 0.8204, "right_wrist": 0.1669,
         "right_thumb": -0.3595},
}
CALIBRATED_WEIGHTS = _weights_from(_CALIBRATED)


def support_mask() -> np.ndarray:
  """[24, 33] bool: which landmarks each SMPL joint may combine."""
  m = np.zeros((24, len(LANDMARK_NAMES)), bool)
  for j, (names, _) in SUPPORT.items():
    m[j, [_L[n] for n in names]] = True
  return m


def smpl_keypoints(landmarks: np.ndarray, weights: np.ndarray = CALIBRATED_WEIGHTS,
                   ) -> np.ndarray:
  """2D landmarks [..., 33, 3] (x, y, visibility) -> SMPL keypoints [..., 24, 3].

  A joint's confidence is the smallest visibility among the landmarks it leans on, those with
  a weight of magnitude >= :data:`CONFIDENCE_MIN_WEIGHT` (times :data:`DERIVED_CONFIDENCE`
  for the spine and collars): a small correction towards a hidden neighbour does not make the
  joint unobserved.
  """
  landmarks = np.asarray(landmarks, np.float32)
  xy = np.einsum("jk,...kd->...jd", weights, landmarks[..., :2])
  used = np.abs(weights) >= CONFIDENCE_MIN_WEIGHT
  vis = np.where(used, landmarks[..., None, :, 2], np.inf).min(axis=-1)
  vis = np.where(np.isfinite(vis), vis, 0.0)
  scale = np.ones(24, np.float32)
  scale[list(DERIVED_JOINTS)] = DERIVED_CONFIDENCE
  return np.concatenate([xy, (vis * scale)[..., None]], axis=-1).astype(np.float32)


def smpl_world_joints(world_landmarks: np.ndarray, weights: np.ndarray = CALIBRATED_WEIGHTS
                      ) -> np.ndarray:
  """3D world landmarks [..., 33, 3] -> SMPL joints [..., 24, 3] (same weights: equivariant)."""
  return np.einsum("jk,...kd->...jd", weights, np.asarray(world_landmarks, np.float32))


def fit_weights(landmarks: np.ndarray, joints: np.ndarray, confidence: np.ndarray, *,
                ridge: float = 1.0) -> np.ndarray:
  """Least-squares affine-combination weights, one row per SMPL joint.

  Args:
    landmarks: [N, 33, D] landmark positions (D = 2 pixels or 3), normalised per sample to a
      common scale (e.g. divided by the torso length) so every sample counts alike.
    joints: [N, 24, D] the true SMPL joints in the same units.
    confidence: [N] sample weights (e.g. the smallest visibility of the support).
    ridge: pull towards :data:`NAIVE_WEIGHTS` (in the normalised units squared).

  Returns:
    [24, 33] weights, zero outside :data:`SUPPORT`, each row summing to 1. Solved exactly:
    minimise ``Σ_n c_n |Σ_k w_k (L_nk - L_n0) - (J_n - L_n0)|² + ridge |w - w_naive|²`` over
    the support minus its first landmark, whose weight is ``1 - Σ others``.
  """
  out = np.zeros((24, landmarks.shape[1]), np.float64)
  c = np.sqrt(np.asarray(confidence, np.float64))
  for j, (names, _) in SUPPORT.items():
    ids = [_L[n] for n in names]
    base, rest = ids[0], ids[1:]
    a = (landmarks[:, rest] - landmarks[:, base, None]).transpose(0, 2, 1)  # [N, D, K-1]
    b = joints[:, j] - landmarks[:, base]  # [N, D]
    a = (a * c[:, None, None]).reshape(-1, len(rest))
    b = (b * c[:, None]).reshape(-1)
    prior = NAIVE_WEIGHTS[j, rest].astype(np.float64)
    lhs = a.T @ a + ridge * np.eye(len(rest))
    rhs = a.T @ b + ridge * prior
    w_rest = np.linalg.solve(lhs, rhs)
    out[j, rest] = w_rest
    out[j, base] = 1.0 - w_rest.sum()
  return out.astype(np.float32)
