"""The labelled hold-out the combiners learn from: k shots per class, or a fraction of train.

Always drawn from the train split with a seed, and stored as content-hashed JSON next to the
results so every number can be traced to the exact examples it used (the Dassl/CoOp protocol).
The test split never enters here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from clipfuse.errors import DataError, FitError
from clipfuse.hashing import value_hash


@dataclass
class HoldoutDraw:
    """Which train-view positions were labelled for one (budget, seed): the exact rows a
    combiner learnt from, with per-class counts, saved as content-hashed JSON (``save`` /
    ``load`` refuse an edited file)."""

    view: str
    seed: int
    shots: int | None
    fraction: float | None
    positions: list[int]  # positions in the train view (ViewBundle.indices values)
    per_class: list[int]
    clamped_classes: list[int] = field(default_factory=list)  # classes with fewer than k examples

    @property
    def budget(self) -> str:
        # 10 significant digits: 0.12 and 0.125 must not share a label (rows are grouped by it)
        return f"{self.shots}-shot" if self.shots is not None else f"{100 * self.fraction:.10g}%"

    @property
    def num_labels(self) -> int:
        return len(self.positions)

    @property
    def content_hash(self) -> str:
        return value_hash(asdict(self), 16)

    def save(self, directory: str | Path) -> Path:
        """Write `holdout-<budget>-seed<S>-<hash>.json` (idempotent: same draw, same file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = (
            directory
            / f"holdout-{self.budget.replace('%', 'pct')}-seed{self.seed}-{self.content_hash[:10]}.json"
        )
        path.write_text(json.dumps({**asdict(self), "content_sha256": self.content_hash}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> HoldoutDraw:
        """Read a saved draw; a file whose content no longer matches its recorded hash is refused."""
        try:
            data = json.loads(Path(path).read_text())
            recorded = data.pop("content_sha256", None)
            draw = cls(**data)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"{str(path)!r} is not a hold-out file ({exc})") from None
        if recorded is not None and recorded != draw.content_hash:
            raise DataError(
                f"{str(path)!r} was modified: its content hash is {draw.content_hash}, "
                f"the file records {recorded}"
            )
        return draw


def draw_holdout(
    labels: np.ndarray,
    positions: np.ndarray,
    num_classes: int,
    *,
    view: str,
    seed: int,
    shots: int | None = None,
    fraction: float | None = None,
    clamp: bool = False,
) -> HoldoutDraw:
    """Stratified draw: k per class (`shots`) or round(fraction·n_c), at least 1, per class.

    A class with fewer than k examples is an error unless `clamp=True`, which takes all of them
    and records the class in `clamped_classes` (the report shows it).
    """
    if (shots is None) == (fraction is None):
        raise FitError("give exactly one of shots or fraction for the hold-out")
    if shots is not None and shots < 1:
        raise FitError(f"shots must be >= 1, got {shots}")
    if fraction is not None and not 0 < fraction <= 1:
        raise FitError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    per_class: list[int] = []
    clamped: list[int] = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        want = shots if shots is not None else max(1, round(fraction * len(pool)))
        if len(pool) < want:
            if not clamp:
                raise FitError(
                    f"class {c} has {len(pool)} train example(s), fewer than the {want} requested; "
                    "lower --shots or pass --clamp-shots"
                )
            clamped.append(c)
            want = len(pool)
        take = rng.permutation(pool)[:want]
        chosen.extend(int(positions[t]) for t in take)
        per_class.append(int(want))
    return HoldoutDraw(view, seed, shots, fraction, sorted(chosen), per_class, clamped)


def parse_budgets(
    shots: str | None, fractions: str | None
) -> list[tuple[int | None, float | None]]:
    """'1,4' and/or '0.1' -> [(1, None), (4, None), (None, 0.1)]."""
    budgets: list[tuple[int | None, float | None]] = []
    for part in (shots or "").split(","):
        if part.strip():
            try:
                budgets.append((int(part), None))
            except ValueError:
                raise FitError(f"--shots takes integers like 1,4,16; got {part!r}") from None
    for part in (fractions or "").split(","):
        if part.strip():
            try:
                budgets.append((None, float(part)))
            except ValueError:
                raise FitError(f"--fraction takes numbers like 0.1; got {part!r}") from None
    if not budgets:
        raise FitError("give a label budget: --shots K[,K...] and/or --fraction F")
    return list(dict.fromkeys(budgets))  # a repeated budget would double its rows' seeds
