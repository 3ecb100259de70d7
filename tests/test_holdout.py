"""The hold-out protocol: stratified, seeded draws from the given train positions only, saved as
content-hashed JSON; budgets parsed from the CLI's strings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from clipfuse.data.holdout import HoldoutDraw, draw_holdout, parse_budgets
from clipfuse.errors import ClipfuseError, DataError, FitError

NUM_CLASSES = 6
COUNTS = [7, 12, 5, 20, 9, 30]  # uneven on purpose: stratification must follow each class


@pytest.fixture(scope="module")
def train_view() -> tuple[np.ndarray, np.ndarray]:
    """(labels, positions): a shuffled train view whose positions are sparse, not 0..N-1."""
    rng = np.random.default_rng(123)
    labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), COUNTS))
    positions = np.sort(rng.choice(10_000, size=len(labels), replace=False))
    return labels, positions


def per_class(draw: HoldoutDraw, labels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """How many drawn positions fall in each class, read back through the view."""
    rows = np.searchsorted(positions, draw.positions)
    assert np.array_equal(positions[rows], draw.positions)  # every drawn position is in the view
    return np.bincount(labels[rows], minlength=NUM_CLASSES)


def draw(train_view, **kwargs) -> HoldoutDraw:
    labels, positions = train_view
    return draw_holdout(labels, positions, NUM_CLASSES, view="v-train", **kwargs)


@pytest.mark.parametrize("shots", [1, 3, 5])
def test_k_shots_per_class_exactly(train_view, shots):
    labels, positions = train_view
    d = draw(train_view, seed=0, shots=shots)
    assert per_class(d, labels, positions).tolist() == [shots] * NUM_CLASSES
    assert d.per_class == [shots] * NUM_CLASSES
    assert d.num_labels == shots * NUM_CLASSES == len(set(d.positions))
    assert d.positions == sorted(d.positions)
    assert d.budget == f"{shots}-shot" and d.clamped_classes == []


def test_deterministic_per_seed_and_seeds_differ(train_view):
    first = [draw(train_view, seed=s, shots=2) for s in range(5)]
    again = [draw(train_view, seed=s, shots=2) for s in range(5)]
    assert first == again
    assert len({tuple(d.positions) for d in first}) == 5
    assert len({d.content_hash for d in first}) == 5


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 1.0])
def test_fraction_is_stratified(train_view, fraction):
    labels, positions = train_view
    d = draw(train_view, seed=1, fraction=fraction)
    expected = [max(1, round(fraction * n)) for n in COUNTS]
    assert per_class(d, labels, positions).tolist() == expected == d.per_class
    assert d.shots is None and d.fraction == fraction
    if fraction == 1.0:
        assert d.positions == positions.tolist()


def test_never_leaves_the_given_positions(train_view):
    """Only positions handed in can be drawn: a sub-view (e.g. the train rows that decoded)."""
    labels, positions = train_view
    keep = np.arange(len(labels)) % 3 != 0
    for seed in range(10):
        d = draw_holdout(
            labels[keep], positions[keep], NUM_CLASSES, view="v", seed=seed, fraction=0.5
        )
        assert set(d.positions) <= set(positions[keep].tolist())
        assert not set(d.positions) & set(positions[~keep].tolist())


def test_fraction_budget_labels_do_not_collide():
    """Rows are grouped by this label, so 12% and 12.5% must stay apart."""
    labels = np.repeat(np.arange(2), 10)
    labels_of = {
        f: draw_holdout(labels, np.arange(20), 2, view="v", seed=0, fraction=f).budget
        for f in (0.1, 0.12, 0.125, 0.005)
    }
    assert labels_of == {0.1: "10%", 0.12: "12%", 0.125: "12.5%", 0.005: "0.5%"}


def test_too_few_examples_is_one_line_fit_error(train_view):
    with pytest.raises(FitError) as info:
        draw(train_view, seed=0, shots=6)  # class 2 has 5
    message = str(info.value)
    assert "\n" not in message and "class 2" in message and "--clamp-shots" in message


def test_clamp_takes_all_and_records_the_classes(train_view):
    labels, positions = train_view
    d = draw(train_view, seed=0, shots=8, clamp=True)
    assert d.clamped_classes == [0, 2]  # 7 and 5 examples
    counts = per_class(d, labels, positions)
    assert counts.tolist() == [7, 8, 5, 8, 8, 8] == d.per_class
    class2 = positions[labels == 2].tolist()
    assert set(class2) <= set(d.positions)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"shots": 1, "fraction": 0.1}, {"shots": 0}, {"shots": -2}, {"fraction": 0.0},
     {"fraction": 1.5}],
)  # fmt: skip
def test_bad_budget_is_fit_error(train_view, kwargs):
    with pytest.raises(FitError):
        draw(train_view, seed=0, **kwargs)


def test_json_round_trip_and_content_hash(train_view, tmp_path):
    d = draw(train_view, seed=3, shots=2, clamp=True)
    path = d.save(tmp_path)
    assert path.parent == tmp_path and d.content_hash[:10] in path.name
    assert path.name.startswith("holdout-2-shot-seed3-")
    saved = json.loads(path.read_text())
    assert saved["content_sha256"] == d.content_hash and saved["positions"] == d.positions
    loaded = HoldoutDraw.load(path)
    assert loaded == d and loaded.content_hash == d.content_hash
    assert d.save(tmp_path) == path and len(list(tmp_path.iterdir())) == 1  # idempotent

    moved = dataclasses.replace(d, positions=[*d.positions[:-1], d.positions[-1] + 1])
    assert moved.content_hash != d.content_hash
    assert moved.save(tmp_path) != path and len(list(tmp_path.iterdir())) == 2
    fraction_path = draw(train_view, seed=0, fraction=0.125).save(tmp_path)
    assert fraction_path.name.startswith("holdout-12.5pct-seed0-")


def test_edited_or_garbage_holdout_file_is_refused(train_view, tmp_path):
    path = draw(train_view, seed=0, shots=1).save(tmp_path)
    data = json.loads(path.read_text())
    data["positions"][0] += 1  # hand-edited: the recorded hash no longer matches
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="modified"):
        HoldoutDraw.load(path)
    for garbage in ("not json", "[1, 2]", json.dumps({"seed": 0})):
        path.write_text(garbage)
        with pytest.raises(ClipfuseError):
            HoldoutDraw.load(path)


def test_parse_budgets():
    assert parse_budgets("1,4", None) == [(1, None), (4, None)]
    assert parse_budgets("16", "0.1, 0.5") == [(16, None), (None, 0.1), (None, 0.5)]
    assert parse_budgets("1,1,2", "0.1,0.10") == [(1, None), (2, None), (None, 0.1)]
    for shots, fraction in [(None, None), ("", " "), ("one", None), (None, "10%")]:
        with pytest.raises(FitError):
            parse_budgets(shots, fraction)
