"""The hold-out protocol, re-exported where evaluation code has always found it.

The draw itself lives in ``clipfuse.data.holdout`` (it samples rows of a train split), so that
``ViewBundle.holdout`` can use it without the logits layer importing the evaluation layer.
"""

from clipfuse.data.holdout import HoldoutDraw, draw_holdout, parse_budgets

__all__ = ["HoldoutDraw", "draw_holdout", "parse_budgets"]
