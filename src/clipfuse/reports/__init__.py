"""Figures (scikit-learn-style Display objects) and Markdown/HTML reports of a results directory."""

from clipfuse.reports import displays
from clipfuse.reports.displays import *  # noqa: F403 -- every Display, listed in displays.__all__
from clipfuse.reports.report import ReportFiles, write_report
from clipfuse.reports.results import (
    Results,
    load_results,
    save_analysis,
    save_evaluation,
    save_robustness,
    save_temperatures,
)

__all__ = [
    *displays.__all__,
    "ReportFiles",
    "Results",
    "load_results",
    "save_analysis",
    "save_evaluation",
    "save_robustness",
    "save_temperatures",
    "write_report",
]
