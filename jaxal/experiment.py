"""Experiments: strategies × seeds × rounds → learning curves, tables, plots; resumable.

``run`` is what ``jaxal run`` calls and ``report`` what ``jaxal report`` calls.
"""

from jaxal._src.experiment.checkpoint import CheckpointError
from jaxal._src.experiment.config import Config
from jaxal._src.experiment.config import ConfigMismatchError
from jaxal._src.experiment.config import ExperimentError
from jaxal._src.experiment.config import labels_per_round
from jaxal._src.experiment.config import load_data
from jaxal._src.experiment.report import area_under_curve
from jaxal._src.experiment.report import format_penalty
from jaxal._src.experiment.report import format_summary
from jaxal._src.experiment.report import format_table
from jaxal._src.experiment.report import format_vs_random
from jaxal._src.experiment.report import interval
from jaxal._src.experiment.report import labels_to_reach
from jaxal._src.experiment.report import load_results
from jaxal._src.experiment.report import pairwise_penalty
from jaxal._src.experiment.report import plot_curves
from jaxal._src.experiment.report import report
from jaxal._src.experiment.report import report_many
from jaxal._src.experiment.report import save_figure
from jaxal._src.experiment.report import summarize
from jaxal._src.experiment.report import t_critical
from jaxal._src.experiment.runner import run
from jaxal._src.experiment.runner import run_one

__all__ = (
  "CheckpointError",
  "Config",
  "ConfigMismatchError",
  "ExperimentError",
  "area_under_curve",
  "format_penalty",
  "format_summary",
  "format_table",
  "format_vs_random",
  "interval",
  "labels_per_round",
  "labels_to_reach",
  "load_data",
  "load_results",
  "pairwise_penalty",
  "plot_curves",
  "report",
  "report_many",
  "run",
  "run_one",
  "save_figure",
  "summarize",
  "t_critical",
)
