"""hsjax: HumanSplatHMR in JAX.

Joint learning of an LBS-skinned 3D Gaussian avatar and refinement of per-frame SMPL poses
from monocular video, by differentiable tile-based Gaussian splatting.

The chain is named in :mod:`hsjax.forward` (pose -> deform -> render); the loss terms live
in :mod:`hsjax.losses`, the optimisation in :mod:`hsjax.fit` (a package that is also callable
as the fit itself: ``hsjax.fit(sequence, config, key=...)``), files in :mod:`hsjax.io` and run
directories in :mod:`hsjax.report`.
"""

from hsjax import density
from hsjax import fit
from hsjax import forward
from hsjax import losses
from hsjax import nonrigid
from hsjax.avatar import Avatar
from hsjax.avatar import deform
from hsjax.avatar import init_avatar
from hsjax.body import BodyModel
from hsjax.body import BodyOutput
from hsjax.body import SMPLParams
from hsjax.body import body_forward
from hsjax.body import load_body_model
from hsjax.camera import Camera
from hsjax.fit import FitConfig
from hsjax.fit import FitResult
from hsjax.fit import fit_many
from hsjax.gaussians import Gaussians
from hsjax.io import load_avatar_ply
from hsjax.io import load_ply
from hsjax.io import save_avatar_ply
from hsjax.io import save_ply
from hsjax.rendering import RenderOutput
from hsjax.rendering import render

__all__ = [
    "Avatar",
    "BodyModel",
    "BodyOutput",
    "Camera",
    "FitConfig",
    "FitResult",
    "Gaussians",
    "RenderOutput",
    "SMPLParams",
    "body_forward",
    "deform",
    "density",
    "fit",
    "fit_many",
    "forward",
    "init_avatar",
    "load_avatar_ply",
    "load_body_model",
    "load_ply",
    "losses",
    "nonrigid",
    "render",
    "save_avatar_ply",
    "save_ply",
]

__version__ = "0.1.0"
