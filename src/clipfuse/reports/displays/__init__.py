"""Figures as scikit-learn-style Display objects.

Each ``XxxDisplay`` stores the numbers to draw; a ``from_...`` classmethod computes them from
clipfuse results and calls :meth:`plot`; ``plot(ax=None)`` draws (on a new Agg figure when no
axes is given) and sets ``figure_`` and ``ax_`` plus the artists it made, so that a figure can
be restyled or tested after the fact. Accuracies are fractions and drawn as percent.
"""

from clipfuse.reports.displays.budgets import BudgetCurveDisplay
from clipfuse.reports.displays.complementarity import (
    AccuracyDisplay,
    AgreementDisplay,
    CKADisplay,
    IntersectionDisplay,
)
from clipfuse.reports.displays.compute import ComputeDisplay
from clipfuse.reports.displays.robustness import DiversityGainDisplay, RobustnessDisplay
from clipfuse.reports.displays.temperatures import ClassTemperatureDisplay, TemperatureDisplay

__all__ = [
    "AccuracyDisplay",
    "AgreementDisplay",
    "BudgetCurveDisplay",
    "CKADisplay",
    "ClassTemperatureDisplay",
    "ComputeDisplay",
    "DiversityGainDisplay",
    "IntersectionDisplay",
    "RobustnessDisplay",
    "TemperatureDisplay",
]
