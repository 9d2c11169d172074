"""hsjax: HumanSplatHMR in JAX.

Joint learning of an LBS-skinned 3D Gaussian avatar and refinement of per-frame SMPL poses
from monocular video, by differentiable tile-based Gaussian splatting.
"""

from hsjax.body import BodyModel
from hsjax.body import BodyOutput
from hsjax.body import SMPLParams
from hsjax.body import body_forward
from hsjax.body import load_body_model
from hsjax.camera import Camera
from hsjax.gaussians import Gaussians

__all__ = [
    "BodyModel",
    "BodyOutput",
    "Camera",
    "Gaussians",
    "SMPLParams",
    "body_forward",
    "load_body_model",
]

__version__ = "0.1.0"
