"""What a run shows a person: the run directory, tables, figures and videos.

:mod:`~hsjax.report.run_dir` writes a run directory (:func:`write_run`),
:mod:`~hsjax.report.tables` the Markdown tables, :mod:`~hsjax.report.figures` the pictures
and :mod:`~hsjax.report.video` the MP4s.
"""

from hsjax.report.run_dir import write_json
from hsjax.report.run_dir import write_run
from hsjax.report.tables import ablation_table
from hsjax.report.tables import results_markdown

__all__ = [
    "ablation_table",
    "results_markdown",
    "write_json",
    "write_run",
]
