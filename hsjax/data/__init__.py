"""Human video data: sequences, the synthetic benchmark, simulated HMR, and importers.

See ``hsjax/data/README.md`` for the on-disk layouts and every assumption about external
formats.
"""

from hsjax.data.depth_noise import DEPTH_NOISE_PRESETS
from hsjax.data.depth_noise import DepthNoise
from hsjax.data.depth_noise import degrade_depth
from hsjax.data.depth_noise import depth_intrinsics
from hsjax.data.hmr_noise import HMR_NOISE_PRESETS
from hsjax.data.hmr_noise import HMRNoise
from hsjax.data.hmr_noise import simulate_hmr
from hsjax.data.io import save_sequence
from hsjax.data.loaders import load_sequence
from hsjax.data.motions import PARAMETRIC_MOTIONS
from hsjax.data.motions import get_motion
from hsjax.data.synthetic import render_mesh
from hsjax.data.sequence import LazyFrames
from hsjax.data.sequence import Sequence
from hsjax.data.sequence import validate_sequence
from hsjax.data.synthetic import PRESETS
from hsjax.data.synthetic import SyntheticConfig
from hsjax.data.synthetic import synthetic_sequence

__all__ = [
    "DEPTH_NOISE_PRESETS",
    "DepthNoise",
    "HMRNoise",
    "HMR_NOISE_PRESETS",
    "LazyFrames",
    "PARAMETRIC_MOTIONS",
    "PRESETS",
    "Sequence",
    "SyntheticConfig",
    "degrade_depth",
    "depth_intrinsics",
    "get_motion",
    "load_sequence",
    "render_mesh",
    "save_sequence",
    "simulate_hmr",
    "synthetic_sequence",
    "validate_sequence",
]
