"""Front door of the rasteriser and the registry of composite backends.

``rasterize`` = :func:`~kernels.rasterize.projection.project` ->
:func:`~kernels.rasterize.binning.bin_gaussians` -> a composite backend -> background and
depth normalisation. Backends (all implement the composite contract of ``xla.py``):

* ``"xla"``: pure JAX, hand-written backward; the CPU default.
* ``"pallas"``: Pallas kernels (Mosaic GPU / TPU; interpret mode elsewhere); the GPU/TPU default.
* ``"reference"``: brute force over all Gaussians by plain autodiff, for tests (no tiles,
  so ``tile_capacity`` is ignored and ``overflow`` is 0).
* ``"auto"``: ``"pallas"`` on GPU/TPU if it imports, else ``"xla"``.

An unavailable backend raises ``ValueError`` naming it and why.
"""

from __future__ import annotations

import importlib
import math
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from kernels.rasterize import binning
from kernels.rasterize import common
from kernels.rasterize import projection
from kernels.rasterize import reference
from kernels.rasterize import sh as sh_lib

# Per-tile list length K. The avatar workload (scenes.py, ~40% of the frame) needs at most
# 540 (512^2, 50k Gaussians) and 750 (1024^2, 200k) per tile, so 1024 renders it exactly.
# Overflow is not benign: a tile that straddles two surfaces keeps only the nearest K
# Gaussians of the whole tile, so pixels of the farther surface can lose everything (K = 256
# left 3% of the pixels of the 512^2 / 50k avatar visibly wrong). Composite time follows
# the lists' actual lengths; binning time and memory grow with n_tiles * K.
DEFAULT_TILE_CAPACITY = 1024

BACKENDS = ("auto", "xla", "pallas", "reference")
# How a Gaussian is matched to tiles (see bin_gaussians): its screen box (3DGS, gsplat) or
# its alpha >= 1/255 ellipse (fewer pairs, the same image unless a tile overflows).
TILE_OVERLAPS = ("box", "ellipse")
_ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


@flax.struct.dataclass(kw_only=True)
class RenderOutput:
  """What one camera sees of a set of Gaussians."""

  rgb: jax.Array  # [H, W, C] composited colour over the background.
  alpha: jax.Array  # [H, W] accumulated opacity 1 - T_final (for the mask loss).
  depth: jax.Array  # [H, W] expected camera depth sum(w z) / alpha, metres; 0 where alpha <= 1e-4.
  overflow: jax.Array  # [] int32 (Gaussian, tile) intersections dropped by the tile capacity.
  radii: jax.Array  # [N] int32 screen radius, pixels; 0 = culled (3DGS ``radii``).
  means2d: jax.Array  # [N, 2] projected centres incl. screen_offsets, pixels.
  visible: jax.Array  # [N] bool radii > 0.


def _load_pallas() -> Callable:
  module = importlib.import_module("kernels.rasterize.pallas")
  fn = getattr(module, "composite_pallas", None)
  if fn is None:
    raise ImportError("kernels.rasterize.pallas defines no composite_pallas")
  return fn


def _load_xla() -> Callable:
  return importlib.import_module("kernels.rasterize.xla").composite_xla


def available_backends() -> dict[str, str | None]:
  """Maps each concrete backend to ``None`` (usable) or the reason it is not."""
  out = {}
  for name, loader in (("xla", _load_xla), ("pallas", _load_pallas)):
    try:
      loader()
      out[name] = None
    except Exception as e:  # pylint: disable=broad-except
      out[name] = f"{type(e).__name__}: {e}"
  out["reference"] = None
  return out


def resolve_backend(backend: str) -> str:
  """The concrete backend ``"auto"`` (or a named one) stands for on the default device."""
  if backend not in BACKENDS:
    raise ValueError(f"backend: expected one of {BACKENDS}, found {backend!r}")
  if backend != "auto":
    return backend
  if jax.default_backend() in _ACCELERATORS:
    reasons = available_backends()
    if reasons["pallas"] is None:
      return "pallas"
  return "xla"


def get_composite(backend: str) -> Callable:
  """The composite function ``(ids, means2d, conics, opacities, features, *, width, height,
  tile_size) -> (features_acc [H, W, F], alpha [H, W])`` of a backend."""
  name = resolve_backend(backend)
  if name == "reference":
    return reference.composite_reference
  loader = {"xla": _load_xla, "pallas": _load_pallas}[name]
  try:
    return loader()
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"backend {name!r} is unavailable: {type(e).__name__}: {e}") from e


def rasterize(means, quats, scales, opacities, colors, K, world_to_cam, *, width: int,
              height: int, background=None, backend: str = "auto",
              tile_capacity: int = DEFAULT_TILE_CAPACITY, tile_size: int = common.TILE_SIZE,
              near: float = 0.01, far: float = 1e10, eps2d: float = 0.3,
              antialiased: bool = False, tight_radius: bool = True, screen_offsets=None,
              max_intersections: int | None = None, sh=None,
              sh_degree: int | None = None, tile_overlap: str = "ellipse") -> RenderOutput:
  """Renders N Gaussians with per-Gaussian features into one camera.

  Args:
    means: [N, 3] world centres, metres. quats: [N, 4] (w, x, y, z). scales: [N, 3] metres.
    opacities: [N] in [0, 1]. colors: [N, C] any C, or None when ``sh`` is given.
    K: [3, 3] intrinsics, pixels. world_to_cam: [4, 4] OpenCV extrinsics.
    width, height: image size, pixels (static).
    background: [C] colour behind the Gaussians (default zeros).
    backend: ``"auto" | "xla" | "pallas" | "reference"``.
    tile_capacity: K, Gaussians kept per 16x16 tile (static); see ``overflow``.
    tile_size: tile edge, pixels (the Pallas kernels assume 16).
    near, far, eps2d, antialiased, tight_radius: see :func:`project`.
    screen_offsets: [N, 2] pixels added to the projected means. Its gradient is the
      screen-space (view-space positional) gradient dL/dmeans2d that 3DGS density control
      accumulates (its norm, averaged over views where visible, drives densification).
    max_intersections: pair buffer size, see :func:`bin_gaussians`.
    sh: [N, (d+1)^2, C] spherical-harmonic coefficients (3DGS order) instead of ``colors``;
      evaluated for the direction from the camera centre to each mean (:func:`eval_sh`).
    sh_degree: degree of ``sh`` used (static); default all coefficients.
    tile_overlap: ``"box"`` lists a Gaussian in every tile its screen box touches;
      ``"ellipse"`` only in those its ``alpha >= 1/255`` ellipse reaches (exact test). The
      pairs left out cannot draw a pixel, so the image is the same unless a tile overflows,
      where the K nearest *drawing* Gaussians are kept instead of the K nearest boxes.

  Returns:
    :class:`RenderOutput`.
  """
  if tile_overlap not in TILE_OVERLAPS:
    raise ValueError(f"tile_overlap: expected one of {TILE_OVERLAPS}, found {tile_overlap!r}")
  proj = projection.project(means, quats, scales, opacities, K, world_to_cam, width=width,
                            height=height, near=near, far=far, eps2d=eps2d,
                            antialiased=antialiased, tight_radius=tight_radius)
  if (colors is None) == (sh is None):
    raise ValueError("rasterize: expected exactly one of `colors` [N, C] and `sh` "
                     "[N, (d+1)^2, C]")
  if sh is not None:
    degree = math.isqrt(sh.shape[-2]) - 1 if sh_degree is None else sh_degree
    rot = world_to_cam[:3, :3]
    centre = -rot.T @ world_to_cam[:3, 3]
    colors = sh_lib.eval_sh(degree, sh, means - centre)
  means2d = proj.means2d
  if screen_offsets is not None:
    means2d = means2d + screen_offsets
  n_channels = colors.shape[-1]
  features = jnp.concatenate([colors, proj.depths[:, None].astype(colors.dtype)], axis=-1)
  name = resolve_backend(backend)
  if name == "reference":
    acc, alpha = reference.rasterize_reference(means2d, proj.conics, proj.opacities, features,
                                               proj.depths, proj.radii_xy, width=width,
                                               height=height)
    overflow = jnp.zeros((), jnp.int32)
  else:
    ellipse = tile_overlap == "ellipse"
    tiles = binning.bin_gaussians(means2d, proj.radii_xy, proj.depths, width=width,
                                  height=height, tile_size=tile_size, capacity=tile_capacity,
                                  max_intersections=max_intersections,
                                  conics=proj.conics if ellipse else None,
                                  opacities=proj.opacities if ellipse else None)
    composite = get_composite(name)
    acc, alpha = composite(tiles.ids, means2d, proj.conics, proj.opacities, features,
                           width=width, height=height, tile_size=tile_size)
    overflow = tiles.overflow
  if background is None:
    background = jnp.zeros((n_channels,), acc.dtype)
  rgb = acc[..., :n_channels] + (1.0 - alpha)[..., None] * background
  # Expected depth; where almost nothing was hit the ratio is meaningless: report 0.
  hit = alpha > common.T_MIN
  depth = jnp.where(hit, acc[..., n_channels] / jnp.where(hit, alpha, 1.0), 0.0)
  return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, overflow=overflow, radii=proj.radii,
                      means2d=means2d, visible=proj.radii > 0)
