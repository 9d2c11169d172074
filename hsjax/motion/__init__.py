"""Human motion: an SMPL motion container, mocap importers and retargeting onto SMPL.

* :class:`Motion` (``body_pose [T,23,3]``, ``global_orient [T,3]``, ``transl [T,3]``, ``fps``)
  with :func:`save_motion` / :func:`load_motion`, :func:`resample` (slerp) and
  :func:`normalize` (heading, centre, ground);
* importers: BVH from any skeleton (:func:`read_bvh`, :func:`retarget_bvh`, export with
  :func:`write_bvh`), AMASS SMPL-H/SMPL-X ``.npz`` (:func:`load_amass`), DeepMimic clips
  (:func:`load_deepmimic`);
* contact-aware placement of a retargeted motion (:func:`place`, in
  :mod:`hsjax.motion.placement`) and its quality measures (:mod:`hsjax.motion.quality`);
* the shipped clips, real motion capture retargeted to SMPL (:func:`builtin_motions`,
  :func:`builtin_motion`; provenance in ``hsjax/assets/motions/README.md``).
"""

from hsjax.motion.amass import load_amass
from hsjax.motion.bvh import Bvh
from hsjax.motion.bvh import detect_units
from hsjax.motion.bvh import read_bvh
from hsjax.motion.bvh import retarget_bvh
from hsjax.motion.bvh import write_bvh
from hsjax.motion.deepmimic import load_deepmimic
from hsjax.motion.io import builtin_motion
from hsjax.motion.io import builtin_motions
from hsjax.motion.io import load_motion
from hsjax.motion.motion import Motion
from hsjax.motion.motion import concatenate
from hsjax.motion.motion import heading_angle
from hsjax.motion.motion import loop_motion
from hsjax.motion.motion import make_motion
from hsjax.motion.motion import normalize
from hsjax.motion.motion import resample
from hsjax.motion.motion import save_motion
from hsjax.motion.motion import validate_motion
from hsjax.motion.placement import body_points
from hsjax.motion.placement import place
from hsjax.motion.retargeting import PRESETS
from hsjax.motion.retargeting import SourceSkeleton
from hsjax.motion.retargeting import bone_direction_errors
from hsjax.motion.retargeting import retarget
from hsjax.motion.skeleton import forward_joints
from hsjax.motion.skeleton import rest_joints

__all__ = [
    "Bvh",
    "Motion",
    "PRESETS",
    "SourceSkeleton",
    "body_points",
    "bone_direction_errors",
    "builtin_motion",
    "builtin_motions",
    "concatenate",
    "detect_units",
    "forward_joints",
    "heading_angle",
    "load_amass",
    "load_deepmimic",
    "load_motion",
    "loop_motion",
    "make_motion",
    "normalize",
    "place",
    "read_bvh",
    "resample",
    "rest_joints",
    "retarget",
    "retarget_bvh",
    "save_motion",
    "validate_motion",
    "write_bvh",
]
