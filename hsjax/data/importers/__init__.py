"""Importers for real capture layouts, one module per format.

Each importer converts at the edge to hsjax conventions (OpenCV cameras, SMPL parameters in
the world frame of the cameras, axis-angle, metres) and returns a validated
:class:`~hsjax.data.Sequence` whose frames load lazily. The exact layouts assumed are in
``hsjax/data/README.md``; every assumption about a format is also stated in the function's
docstring. Pickles are read with a restricted unpickler that accepts only numpy arrays and
plain Python containers (:mod:`hsjax.smpl_pickle`).

Re-rooting ``Rh`` / alignment rotations: several formats rotate the *posed* SMPL mesh about
the origin (``v = R · SMPL(θ, β) + t``), while SMPL's ``global_orient`` rotates about the
pelvis joint ``J0(β)``. They are equal with ``global_orient = R · R_root`` and
``transl = R · J0 + t - J0``, which needs the rest pelvis of the body model that produced the
parameters (``body_model``; default: the embedded default body, so pass the SMPL model the
data was fitted with for exactness).
"""

from hsjax.data.importers.fourdhumans import decode_coco_rle
from hsjax.data.importers.common import read_npy_object
from hsjax.data.importers.common import read_pickle
from hsjax.data.importers.common import reroot
from hsjax.data.importers.fourdhumans import load_4dhumans
from hsjax.data.importers.neuman import load_neuman
from hsjax.data.importers.peoplesnapshot import load_peoplesnapshot
from hsjax.data.importers.zju import load_zju

# Format name (hsjax.data.load_sequence's `format`) -> importer.
IMPORTERS = {
    "4dhumans": load_4dhumans,
    "neuman": load_neuman,
    "peoplesnapshot": load_peoplesnapshot,
    "zju": load_zju,
}
# Formats whose importer re-roots with a body model's rest pelvis (its `body_model` argument).
REROOTING_FORMATS = ("neuman", "peoplesnapshot", "zju")

__all__ = [
    "IMPORTERS",
    "REROOTING_FORMATS",
    "decode_coco_rle",
    "load_4dhumans",
    "load_neuman",
    "load_peoplesnapshot",
    "load_zju",
    "read_npy_object",
    "read_pickle",
    "reroot",
]
