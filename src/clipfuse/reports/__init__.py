"""Figures (scikit-learn-style Display objects) and Markdown/HTML reports of a results directory."""

from clipfuse.reports.displays import (
    AccuracyDisplay,
    AgreementDisplay,
    BudgetCurveDisplay,
    CKADisplay,
    ClassTemperatureDisplay,
    ComputeDisplay,
    DiversityGainDisplay,
    IntersectionDisplay,
    RobustnessDisplay,
    TemperatureDisplay,
)
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
    "AccuracyDisplay",
    "AgreementDisplay",
    "BudgetCurveDisplay",
    "CKADisplay",
    "ClassTemperatureDisplay",
    "ComputeDisplay",
    "DiversityGainDisplay",
    "IntersectionDisplay",
    "ReportFiles",
    "Results",
    "RobustnessDisplay",
    "TemperatureDisplay",
    "load_results",
    "save_analysis",
    "save_evaluation",
    "save_robustness",
    "save_temperatures",
    "write_report",
]
