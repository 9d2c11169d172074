"""hsjax: HumanSplatHMR in JAX.

Joint learning of an LBS-skinned 3D Gaussian avatar and refinement of per-frame SMPL poses
from monocular video, by differentiable tile-based Gaussian splatting.

Note: the functions ``hsjax.render`` and ``hsjax.fit`` shadow the modules of the same name as
package attributes; import from the modules explicitly (``from hsjax.render import
RenderOutput``), never ``from hsjax import render as module``.
"""

from hsjax import density
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
from hsjax.gaussians import Gaussians
from hsjax.ply import load_avatar_ply
from hsjax.ply import load_ply
from hsjax.ply import save_avatar_ply
from hsjax.ply import save_ply
from hsjax.render import RenderOutput
from hsjax.render import render

__all__ = [
    "Avatar",
    "BodyModel",
    "BodyOutput",
    "Camera",
    "Gaussians",
    "RenderOutput",
    "SMPLParams",
    "body_forward",
    "deform",
    "density",
    "init_avatar",
    "load_avatar_ply",
    "load_body_model",
    "load_ply",
    "nonrigid",
    "render",
    "save_avatar_ply",
    "save_ply",
]

__version__ = "0.1.0"
