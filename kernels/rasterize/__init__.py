"""Tile-based differentiable 3D Gaussian rasteriser.

Pipeline (each stage a pure function of arrays):

1. :func:`project` (``projection.py``): EWA projection of 3D Gaussians to screen space with
   gsplat semantics (0.3 px low-pass, near/far culling, per-axis 3.33 sigma box, conics).
2. :func:`bin_gaussians` (``binning.py``): 16x16 tiles, per-tile depth-sorted id lists of a
   static capacity, overflow counted.
3. a composite backend (``xla.py``, ``pallas.py``; ``reference.py`` for tests): front-to-back
   alpha compositing with the 3DGS rules, each wrapped in a ``jax.custom_vjp``.

:func:`rasterize` (``api.py``) chains the three and picks the backend.
"""

from kernels.rasterize.api import RenderOutput
from kernels.rasterize.api import available_backends
from kernels.rasterize.api import get_composite
from kernels.rasterize.api import rasterize
from kernels.rasterize.binning import TileLists
from kernels.rasterize.binning import bin_gaussians
from kernels.rasterize.projection import Projected
from kernels.rasterize.projection import project
from kernels.rasterize.sh import eval_sh

__all__ = [
    "Projected",
    "RenderOutput",
    "TileLists",
    "available_backends",
    "bin_gaussians",
    "eval_sh",
    "get_composite",
    "project",
    "rasterize",
]
