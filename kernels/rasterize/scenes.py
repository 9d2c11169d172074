"""Named, seeded workloads shared by the tests and the benchmarks.

* ``"random"``: Gaussians in and around the view frustum, with the awkward cases mixed in:
  some behind the camera or at the near plane, some partly or fully off screen, very thin
  (one scale 1e-4 of the others), very large (covering much of the image), a few zero-size
  scales and zero opacities.
* ``"avatar"``: a human-shaped cloud (ellipsoid body parts in an A-pose, 1.75 m tall) of
  surface Gaussians of avatar-like size (about ``sqrt(body area / N)``), filling about 40%
  of a square frame from the front (knees to head in view), as in a typical video crop.
* ``"overflow"``: ``n`` small Gaussians stacked in depth over the centre of one tile; each
  touches exactly that tile, so with capacity K the overflow is exactly ``n - K``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

SCENE_NAMES = ("random", "avatar", "overflow")


def _intrinsics(focal, width, height):
  """[3, 3] pinhole intrinsics, principal point at the image centre (as hsjax.camera)."""
  return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def _look_at(eye, target, up=(0.0, 1.0, 0.0)):
  """[4, 4] OpenCV world_to_cam looking from ``eye`` at ``target`` (as hsjax.camera.look_at);
  kept here so that kernels/ does not depend on hsjax."""
  eye = np.asarray(eye, np.float64)
  forward = np.asarray(target, np.float64) - eye
  forward /= np.linalg.norm(forward)
  right = np.cross(forward, np.asarray(up, np.float64))
  right /= np.linalg.norm(right)
  rot = np.stack([right, np.cross(forward, right), forward])
  out = np.eye(4)
  out[:3, :3] = rot
  out[:3, 3] = -rot @ eye
  return out


@flax.struct.dataclass(kw_only=True)
class Scene:
  """Gaussians and one camera."""

  means: jax.Array  # [N, 3] metres, world.
  quats: jax.Array  # [N, 4] (w, x, y, z).
  scales: jax.Array  # [N, 3] metres.
  opacities: jax.Array  # [N].
  colors: jax.Array  # [N, C].
  K: jax.Array  # [3, 3] pixels.
  world_to_cam: jax.Array  # [4, 4].
  width: int = flax.struct.field(pytree_node=False)
  height: int = flax.struct.field(pytree_node=False)


def _random_quats(rng, n):
  q = rng.normal(size=(n, 4))
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _random(rng, n, width, height, channels):
  f = 0.8 * max(width, height)
  k = _intrinsics(f, width, height)
  # Half-extent of the view at depth z is about z * width / (2 f); spread 30% beyond it.
  z = rng.uniform(0.5, 6.0, n)
  half_x, half_y = 1.3 * z * width / (2 * f), 1.3 * z * height / (2 * f)
  means = np.stack([rng.uniform(-half_x, half_x), rng.uniform(-half_y, half_y), z], -1)
  scales = np.exp(rng.uniform(np.log(0.005), np.log(0.15), (n, 3)))
  opacities = rng.uniform(0.05, 1.0, n)
  idx = rng.permutation(n)
  cut = np.array_split(idx, 10)
  means[cut[0], 2] = rng.uniform(-2.0, 0.01, len(cut[0]))  # behind / at the near plane
  means[cut[1], 2] = 0.01 + rng.uniform(0.0, 1e-3, len(cut[1]))  # just in front of near
  means[cut[1], :2] *= 1e-2
  scales[cut[2], rng.integers(0, 3, len(cut[2]))] *= 1e-4  # very thin
  scales[cut[3]] = rng.uniform(0.5, 2.0, (len(cut[3]), 1))  # very large
  means[cut[4], 0] += np.sign(rng.normal(size=len(cut[4]))) * half_x[cut[4]]  # off screen
  scales[cut[5][:3]] = 0.0  # zero size
  opacities[cut[6][:3]] = 0.0  # fully transparent
  colors = rng.uniform(0, 1, (n, channels))
  return means, _random_quats(rng, n), scales, opacities, colors, k, np.eye(4)


# (centre xyz, semi-axes xyz) in metres, SMPL-like frame (y up, facing +z), A-pose.
_BODY = (
    ((0.0, 0.30, 0.0), (0.17, 0.26, 0.11)),  # chest
    ((0.0, -0.02, 0.0), (0.16, 0.14, 0.11)),  # pelvis
    ((0.0, 0.70, 0.01), (0.09, 0.12, 0.10)),  # head
    ((0.0, 0.56, 0.0), (0.05, 0.06, 0.05)),  # neck
    ((0.27, 0.37, 0.0), (0.14, 0.05, 0.05)),  # upper arms
    ((-0.27, 0.37, 0.0), (0.14, 0.05, 0.05)),
    ((0.52, 0.26, 0.0), (0.14, 0.04, 0.04)),  # forearms
    ((-0.52, 0.26, 0.0), (0.14, 0.04, 0.04)),
    ((0.09, -0.38, 0.0), (0.08, 0.24, 0.08)),  # thighs
    ((-0.09, -0.38, 0.0), (0.08, 0.24, 0.08)),
    ((0.10, -0.80, 0.0), (0.055, 0.21, 0.055)),  # shins
    ((-0.10, -0.80, 0.0), (0.055, 0.21, 0.055)),
)


def _ellipsoid_area(axes):
  a, b, c = axes
  p = 1.6075  # Knud Thomsen's approximation, error < 1.1%.
  return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def _avatar(rng, n, width, height, channels):
  areas = np.array([_ellipsoid_area(ax) for _, ax in _BODY])
  part = rng.choice(len(_BODY), size=n, p=areas / areas.sum())
  centres = np.array([c for c, _ in _BODY])[part]
  axes = np.array([a for _, a in _BODY])[part]
  d = rng.normal(size=(n, 3))
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  means = centres + d * axes
  size = np.sqrt(areas.sum() / n)  # one Gaussian per size x size patch of skin
  scales = size * 0.6 * np.exp(rng.normal(0, 0.3, (n, 3)))
  scales[np.arange(n), rng.integers(0, 3, n)] *= 0.2  # flat, like fitted surface splats
  opacities = rng.uniform(0.6, 1.0, n)
  colors = rng.uniform(0, 1, (n, channels))
  # Front view framing 0.9 m at the body (knees to head): the silhouette (~0.5 m^2 from the
  # front) then covers ~40% of a square frame's pixels.
  distance = 3.0
  f = min(width, height) * distance / 0.9
  k = _intrinsics(f, width, height)
  w2c = _look_at((0.0, 0.2, distance), (0.0, 0.2, 0.0))
  return means, _random_quats(rng, n), scales, opacities, colors, k, w2c


def _overflow(rng, n, width, height, channels):
  f = float(max(width, height))
  k = _intrinsics(f, width, height)
  # Centre of the tile that holds the image centre; 1 px sigma -> box of 4 px, inside it.
  tx, ty = (width // 2) // 16, (height // 2) // 16
  u, v = tx * 16 + 8.0, ty * 16 + 8.0
  z = 2.0 + np.arange(n) * 0.01
  means = np.stack([(u - k[0, 2]) * z / f, (v - k[1, 2]) * z / f, z], -1)
  scales = np.repeat((z / f)[:, None], 3, axis=1)  # 1 px standard deviation
  opacities = rng.uniform(0.1, 0.5, n)
  colors = rng.uniform(0, 1, (n, channels))
  return means, _random_quats(rng, n), scales, opacities, colors, k, np.eye(4)


_MAKERS = {"random": _random, "avatar": _avatar, "overflow": _overflow}


def make_scene(name: str, *, n: int, width: int, height: int, seed: int = 0,
               channels: int = 3, dtype=jnp.float32) -> Scene:
  """Builds the named workload (see module docstring) with ``n`` Gaussians, seeded."""
  if name not in _MAKERS:
    raise ValueError(f"scene name: expected one of {SCENE_NAMES}, found {name!r}")
  rng = np.random.default_rng(seed)
  arrays = _MAKERS[name](rng, n, width, height, channels)
  means, quats, scales, opacities, colors, k, w2c = (jnp.asarray(a, dtype) for a in arrays)
  return Scene(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
               K=k, world_to_cam=w2c, width=width, height=height)
