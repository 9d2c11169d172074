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
frames of synthetic sequences (clips and seeds other than the video benchmark's), against
the projected ground-truth SMPL joints, by least squares with the sum-to-one constraint and a
ridge towards the naive weights. That script prints the systematic offsets before and after.
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


def _weights_from(table: dict[int, dict[str, float]]) -> np.ndarray:
  w = np.zeros((24, len(LANDMARK_NAMES)), np.float32)
  for j, row in table.items():
    for name, value in row.items():
      w[j, _L[name]] = value
  return w


NAIVE_WEIGHTS = _weights_from({j: naive for j, (_, naive) in SUPPORT.items()})

# Fitted by experiments/video_landmark_offsets.py (see the module docstring); None until then.
_CALIBRATED: dict[int, dict[str, float]] | None = None
CALIBRATED_WEIGHTS = NAIVE_WEIGHTS if _CALIBRATED is None else _weights_from(_CALIBRATED)


def support_mask() -> np.ndarray:
  """[24, 33] bool: which landmarks each SMPL joint may combine."""
  m = np.zeros((24, len(LANDMARK_NAMES)), bool)
  for j, (names, _) in SUPPORT.items():
    m[j, [_L[n] for n in names]] = True
  return m


def smpl_keypoints(landmarks: np.ndarray, weights: np.ndarray = CALIBRATED_WEIGHTS,
                   ) -> np.ndarray:
  """2D landmarks [..., 33, 3] (x, y, visibility) -> SMPL keypoints [..., 24, 3].

  A joint's confidence is the smallest visibility among the landmarks it uses (times
  :data:`DERIVED_CONFIDENCE` for the spine and collars).
  """
  landmarks = np.asarray(landmarks, np.float32)
  xy = np.einsum("jk,...kd->...jd", weights, landmarks[..., :2])
  used = np.abs(weights) > 1e-6
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
