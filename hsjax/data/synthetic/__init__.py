"""The synthetic benchmark: the default body in real motion, rendered by a mesh z-buffer
renderer that shares no code with the Gaussian rasteriser, with simulated HMR estimates.

:mod:`~hsjax.data.synthetic.generator` builds (and caches) sequences,
:mod:`~hsjax.data.synthetic.render` is the mesh renderer, and
:mod:`~hsjax.data.synthetic.appearance` the procedural clothing.
"""

from hsjax.data.synthetic.generator import DEPTH_MODES
from hsjax.data.synthetic.generator import GENERATOR_VERSION
from hsjax.data.synthetic.generator import PLAIN_BACKGROUND
from hsjax.data.synthetic.generator import PRESETS
from hsjax.data.synthetic.generator import SyntheticConfig
from hsjax.data.synthetic.generator import default_cache_dir
from hsjax.data.synthetic.generator import synthetic_sequence
from hsjax.data.synthetic.render import render_mesh
from hsjax.data.synthetic.render import smooth_normals

__all__ = [
    "DEPTH_MODES",
    "GENERATOR_VERSION",
    "PLAIN_BACKGROUND",
    "PRESETS",
    "SyntheticConfig",
    "default_cache_dir",
    "render_mesh",
    "smooth_normals",
    "synthetic_sequence",
]
