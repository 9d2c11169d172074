"""Rendering front end: ``render(gaussians, camera) -> RenderOutput``.

A thin layer over :mod:`kernels.rasterize` (projection, tile binning, a composite backend):
it evaluates spherical harmonics for the view direction, appends depth as a feature channel,
composites over the background and normalises depth.

Outputs, per camera (``jax.vmap`` over cameras and/or Gaussians renders batches):

* ``rgb [H, W, C]``: ``sum_i w_i c_i + (1 - alpha) background``.
* ``alpha [H, W]``: accumulated opacity ``1 - T_final``; differentiable (mask losses).
* ``depth [H, W]``: expected camera depth ``sum_i w_i z_i / alpha`` in metres where
  ``alpha > 1e-4``, and 0 elsewhere (there is no surface to speak of; a depth loss should be
  masked by ``alpha`` or the target mask).
* ``overflow []``: (Gaussian, tile) intersections dropped because a tile held more than
  ``tile_capacity`` Gaussians (each tile keeps its nearest ones). 0 means the image is exact.
* ``radii [N]``, ``visible [N]``, ``means2d [N, 2]``: per-Gaussian screen data for density
  control.

Choosing ``tile_capacity`` (K): it bounds how many Gaussians one 16x16 tile can composite.
Render a representative frame and read ``overflow``; keep it at 0 by raising K. Overflow is
not benign: a tile keeps its nearest K Gaussians, so where it straddles two surfaces the
farther one can vanish from that tile. The default (1024) renders a 1024x1024 avatar of 200k
Gaussians exactly. Compositing time depends on the Gaussians actually present; binning time
and memory grow with ``n_tiles * K``.

Density control: pass ``screen_offsets = jnp.zeros([N, 2])`` and differentiate with respect to
it; that gradient is dL/dmeans2d, the view-space positional gradient whose norm 3DGS
accumulates (over visible views) to decide where to densify.
"""

from __future__ import annotations

import math


from hsjax.camera import Camera
from hsjax.gaussians import Gaussians
from kernels.rasterize import api
from kernels.rasterize import sh as sh_lib
from kernels.rasterize.api import DEFAULT_TILE_CAPACITY
from kernels.rasterize.api import RenderOutput

__all__ = ["DEFAULT_TILE_CAPACITY", "RenderOutput", "render", "gaussian_colors"]


def gaussian_colors(gaussians: Gaussians, camera: Camera, sh_degree: int | None = None):
  """[N, C] colours: ``gaussians.colors``, or its SH evaluated for ``camera``'s view.

  Args:
    gaussians: with exactly one of ``colors`` [N, C] and ``sh`` [N, M, C].
    camera: one (unbatched) camera; its centre gives the view directions.
    sh_degree: SH degree to use (static); default the full degree ``sqrt(M) - 1``.
  """
  if (gaussians.colors is None) == (gaussians.sh is None):
    raise ValueError("gaussians: expected exactly one of `colors` and `sh` to be set, found "
                     f"colors={'set' if gaussians.colors is not None else None}, "
                     f"sh={'set' if gaussians.sh is not None else None}")
  if gaussians.colors is not None:
    return gaussians.colors
  m = gaussians.sh.shape[-2]
  full = math.isqrt(m) - 1
  if (full + 1) ** 2 != m or full > 3:
    raise ValueError(f"gaussians.sh: expected [N, (d+1)^2, C] with d <= 3, found shape "
                     f"{gaussians.sh.shape}")
  degree = full if sh_degree is None else sh_degree
  if not 0 <= degree <= full:
    raise ValueError(f"sh_degree: expected 0..{full} for sh of shape {gaussians.sh.shape}, "
                     f"found {sh_degree}")
  return sh_lib.eval_sh(degree, gaussians.sh, gaussians.means - camera.center)


def render(gaussians: Gaussians, camera: Camera, *, background=None, backend: str = "auto",
           tile_capacity: int = DEFAULT_TILE_CAPACITY, sh_degree: int | None = None,
           antialiased: bool = False, near: float = 0.01, far: float = 1e10,
           eps2d: float = 0.3, screen_offsets=None,
           max_intersections: int | None = None,
           tile_overlap: str = "ellipse") -> RenderOutput:
  """Renders Gaussians into one camera (use ``jax.vmap`` for several).

  Differentiable with respect to every array of ``gaussians``, the camera's ``world_to_cam``
  and ``K``, ``background`` and ``screen_offsets``; works under ``jit``, ``vmap`` and ``grad``.

  Args:
    gaussians: N Gaussians, :class:`hsjax.Gaussians` (means [N, 3], quats [N, 4],
      scales [N, 3], opacities [N], colors [N, C] or sh [N, (d+1)^2, C]).
    camera: :class:`hsjax.Camera` with K [3, 3], world_to_cam [4, 4] (OpenCV).
    background: [C] colour behind the Gaussians; default zeros.
    backend: ``"auto"`` (Pallas on GPU/TPU, XLA on CPU), ``"xla"``, ``"pallas"`` or
      ``"reference"`` (brute force, tests only).
    tile_capacity: static K, Gaussians kept per 16x16 tile; see the module docstring.
    sh_degree: SH degree used when ``gaussians.sh`` is set (default: all coefficients).
    antialiased: gsplat's ``rasterize_mode="antialiased"`` opacity compensation.
    near, far: depth range kept, metres. eps2d: 2D low-pass, pixels^2 (0.3 as 3DGS).
    screen_offsets: [N, 2] pixels added to the projected means (zeros: no effect); its
      gradient is the screen-space positional gradient used by density control.
    max_intersections: static size of the (Gaussian, tile) pair buffer; default
      ``n_tiles * min(tile_capacity, 256)``; pairs beyond it are dropped farthest first and
      counted in ``overflow``.
    tile_overlap: ``"box"`` or ``"ellipse"``: which tiles a Gaussian is listed in (see
      :func:`kernels.rasterize.rasterize`; the image differs only where tiles overflow).

  Returns:
    :class:`RenderOutput` (rgb [H, W, C], alpha [H, W], depth [H, W], overflow [],
    radii [N], means2d [N, 2], visible [N]).
  """
  if gaussians.means.ndim != 2 or camera.K.ndim != 2:
    raise ValueError(
        "render: expected one camera (K [3, 3]) and unbatched Gaussians (means [N, 3]), "
        f"found K {camera.K.shape} and means {gaussians.means.shape}; use jax.vmap over the "
        "batch axis")
  colors = gaussian_colors(gaussians, camera, sh_degree)
  return api.rasterize(gaussians.means, gaussians.quats, gaussians.scales,
                       gaussians.opacities, colors, camera.K, camera.world_to_cam,
                       width=camera.width, height=camera.height, background=background,
                       backend=backend, tile_capacity=tile_capacity, near=near, far=far,
                       eps2d=eps2d, antialiased=antialiased, screen_offsets=screen_offsets,
                       max_intersections=max_intersections, tile_overlap=tile_overlap)
