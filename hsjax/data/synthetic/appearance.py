"""Procedural "clothing" for the synthetic subject: body-part colours and surface patterns.

Every body vertex gets a clothing region from the joint that dominates its skinning weights
(the default body has no UV map, and these regions only need to look like clothes):

===========  ==============================================================================
region       SMPL joints whose skinning weight dominates
===========  ==============================================================================
skin         neck, head, forearm (elbow joint), wrists, hands
hair         head vertices above the head joint or behind it (canonical position)
shirt        spine1-3, collars, upper arms (shoulder joints)
trousers     pelvis, thighs (hips), shins (knees)
shoes        ankles, feet
===========  ==============================================================================

The colour at a surface point is ``base[region] * pattern(x)`` with ``x`` the point's
*canonical* (rest-pose) position, so the pattern is fixed to the body as it moves: stripes on
the shirt, a check on the trousers, and smooth value noise (three octaves, 1-8 cm) on every
region, so that the photometric loss has a gradient everywhere on the body. Everything is
deterministic from ``seed``; different seeds vary colours and pattern scales.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hsjax import body as body_lib

REGIONS = ("skin", "hair", "shirt", "trousers", "shoes")
SKIN, HAIR, SHIRT, TROUSERS, SHOES = range(5)

# Dominant SMPL joint -> region (hair is carved out of the head afterwards).
_JOINT_REGION = {
    0: TROUSERS, 1: TROUSERS, 2: TROUSERS, 3: SHIRT, 4: TROUSERS, 5: TROUSERS, 6: SHIRT,
    7: SHOES, 8: SHOES, 9: SHIRT, 10: SHOES, 11: SHOES, 12: SKIN, 13: SHIRT, 14: SHIRT,
    15: SKIN, 16: SHIRT, 17: SHIRT, 18: SKIN, 19: SKIN, 20: SKIN, 21: SKIN, 22: SKIN, 23: SKIN}

_SKIN_TONES = np.array([[0.93, 0.76, 0.64], [0.80, 0.60, 0.46], [0.62, 0.44, 0.32],
                        [0.45, 0.31, 0.22]])
_HAIR = np.array([[0.12, 0.08, 0.06], [0.35, 0.22, 0.12], [0.05, 0.05, 0.05]])
_SHIRTS = np.array([[0.80, 0.20, 0.18], [0.18, 0.45, 0.80], [0.20, 0.62, 0.35],
                    [0.92, 0.72, 0.20], [0.55, 0.30, 0.70]])
_TROUSERS = np.array([[0.15, 0.20, 0.40], [0.25, 0.25, 0.28], [0.45, 0.35, 0.22],
                      [0.10, 0.30, 0.25]])
_SHOES = np.array([[0.10, 0.10, 0.10], [0.85, 0.85, 0.82], [0.40, 0.20, 0.10]])


@dataclasses.dataclass(frozen=True)
class Appearance:
  """A subject's clothing: per-vertex regions plus the pattern parameters."""

  regions: np.ndarray  # [V] int region index (see REGIONS) of each body vertex.
  base_colors: np.ndarray  # [5, 3] RGB in [0, 1] of each region.
  accent_colors: np.ndarray  # [5, 3] RGB of the second colour of stripes / checks.
  stripe_period: float  # metres, shirt stripes (along canonical y).
  check_size: float  # metres, trouser check cell.
  noise_amplitude: float  # relative brightness modulation of the value noise.
  seed: int

  def texture(self, coords: np.ndarray, nearest_vertex: np.ndarray) -> np.ndarray:
    """Colour of surface points: coords [N, 3] canonical positions (m), nearest_vertex [N]."""
    return shade(self, coords, self.regions[nearest_vertex])


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
  """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
  h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (
      iz.astype(np.int64) * 83492791) ^ (seed * 2654435761)
  h = (h ^ (h >> 13)) * 1274126177
  h = h ^ (h >> 16)
  return (h & 0xFFFF).astype(np.float64) / 65536.0


def value_noise(points: np.ndarray, cell: float, seed: int) -> np.ndarray:
  """Smooth 3D value noise in [0, 1]: points [N, 3] metres, lattice spacing ``cell`` metres."""
  p = np.asarray(points, np.float64) / cell
  base = np.floor(p)
  f = p - base
  f = f * f * (3.0 - 2.0 * f)  # smoothstep: C1 across lattice cells
  i = base.astype(np.int64)
  out = np.zeros(len(p))
  for dx in (0, 1):
    for dy in (0, 1):
      for dz in (0, 1):
        w = ((f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
             * (f[:, 2] if dz else 1 - f[:, 2]))
        out += w * _hash01(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
  return out


def make_appearance(model: body_lib.BodyModel, seed: int = 0) -> Appearance:
  """Clothing regions and colours for ``model``; colours and pattern scales vary with seed."""
  rng = np.random.default_rng(seed)
  weights = np.asarray(model.lbs_weights)
  dominant = np.argmax(weights, axis=1)
  regions = np.array([_JOINT_REGION[int(j)] for j in range(24)])[dominant]
  rest = np.asarray(model.v_template, np.float64)
  joints = np.asarray(model.J_regressor, np.float64) @ rest
  head = joints[15]
  is_head = dominant == 15
  # Hair: the top and back of the head (the face, +z, stays skin).
  hair = is_head & ((rest[:, 1] > head[1] + 0.07) | (rest[:, 2] < head[2] - 0.03))
  regions = np.where(hair, HAIR, regions)
  base = np.stack([
      _SKIN_TONES[rng.integers(len(_SKIN_TONES))], _HAIR[rng.integers(len(_HAIR))],
      _SHIRTS[rng.integers(len(_SHIRTS))], _TROUSERS[rng.integers(len(_TROUSERS))],
      _SHOES[rng.integers(len(_SHOES))]])
  # Accent: a clearly different brightness so stripes and checks carry photometric signal.
  accent = np.where(base.mean(1, keepdims=True) > 0.5, base * 0.45, 0.35 + base * 0.8)
  return Appearance(regions=regions.astype(np.int32), base_colors=base,
                    accent_colors=np.clip(accent, 0, 1),
                    stripe_period=float(rng.uniform(0.04, 0.07)),
                    check_size=float(rng.uniform(0.03, 0.05)),
                    noise_amplitude=0.25, seed=int(seed))


def shade(appearance: Appearance, coords: np.ndarray, regions: np.ndarray) -> np.ndarray:
  """Albedo of surface points.

  Args:
    appearance: the subject's clothing.
    coords: [N, 3] canonical (rest-pose) positions, metres.
    regions: [N] region index of each point.

  Returns:
    [N, 3] RGB in [0, 1].
  """
  coords = np.asarray(coords, np.float64)
  regions = np.asarray(regions)
  seed = appearance.seed
  # Value noise, three octaves: 8, 3 and 1 cm.
  noise = (0.5 * value_noise(coords, 0.08, seed) + 0.3 * value_noise(coords, 0.03, seed + 1)
           + 0.2 * value_noise(coords, 0.01, seed + 2))
  mix = np.zeros(len(coords))
  y = coords[:, 1]
  stripes = (np.floor(y / appearance.stripe_period) % 2).astype(np.float64)
  mix = np.where(regions == SHIRT, stripes, mix)
  c = appearance.check_size
  checks = ((np.floor(y / c) + np.floor((coords[:, 0] + coords[:, 2]) / c)) % 2).astype(float)
  mix = np.where(regions == TROUSERS, checks * 0.6, mix)
  # Shoes: a light sole band and laces-like stripes near the toes.
  mix = np.where(regions == SHOES, (np.floor(coords[:, 2] / 0.025) % 2) * 0.5, mix)
  color = ((1.0 - mix)[:, None] * appearance.base_colors[regions]
           + mix[:, None] * appearance.accent_colors[regions])
  gain = 1.0 + appearance.noise_amplitude * (2.0 * noise - 1.0)
  return np.clip(color * gain[:, None], 0.0, 1.0)


def textured_background(camera, seed: int = 0, floor_height: float = 0.0,
                        wall_distance: float = 2.5) -> np.ndarray:
  """A textured backdrop seen by ``camera``: a checked floor and a noisy back wall.

  The floor is the plane ``y = floor_height`` and the wall the plane ``z = -wall_distance``
  (world frame, the subject near the origin facing +z); pixel rays that hit neither get a
  plain grey. Geometry is exact per pixel centre, so the backdrop is consistent between
  views (it carries no depth: depth maps describe the person only).

  Args:
    camera: one camera (``K [3, 3]``, ``world_to_cam [4, 4]``).
    seed: pattern seed.
    floor_height: metres.
    wall_distance: metres behind the origin.

  Returns:
    [H, W, 3] RGB in [0, 1].
  """
  k = np.asarray(camera.K, np.float64)
  w2c = np.asarray(camera.world_to_cam, np.float64)
  rot, t = w2c[:3, :3], w2c[:3, 3]
  center = -rot.T @ t
  v, u = np.mgrid[0:camera.height, 0:camera.width] + 0.5
  rays_cam = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(k).T
  rays = rays_cam @ rot  # world directions (R^T d, written as d R)
  out = np.full((len(rays), 3), 0.55)
  with np.errstate(divide="ignore", invalid="ignore"):
    t_floor = (floor_height - center[1]) / rays[:, 1]
    t_wall = (-wall_distance - center[2]) / rays[:, 2]
  t_floor = np.where(t_floor > 0, t_floor, np.inf)
  t_wall = np.where(t_wall > 0, t_wall, np.inf)
  hit_floor = t_floor < t_wall
  hit_wall = ~hit_floor & np.isfinite(t_wall)
  hit_floor &= np.isfinite(t_floor)
  p = center + rays * np.where(hit_floor, t_floor, np.where(hit_wall, t_wall, 0.0))[:, None]
  checks = (np.floor(p[:, 0] / 0.5) + np.floor(p[:, 2] / 0.5)) % 2
  floor_rgb = (0.45 + 0.2 * checks)[:, None] * np.array([0.9, 0.85, 0.75])
  floor_rgb *= (0.85 + 0.3 * value_noise(p, 0.1, seed))[:, None]
  wall_rgb = (0.6 + 0.35 * value_noise(p, 0.25, seed + 7))[:, None] * np.array([0.75, 0.8, 0.85])
  out = np.where(hit_floor[:, None], floor_rgb, out)
  out = np.where(hit_wall[:, None], wall_rgb, out)
  return np.clip(out, 0, 1).reshape(camera.height, camera.width, 3)
