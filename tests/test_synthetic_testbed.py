"""NLC on a test bed where the right answer is known: backbones competent in different regions.

Fitted on a few labelled shots per class, scored on a separate, larger synthetic test split
(nothing is tuned on it).
"""

from __future__ import annotations

import pytest
import torch
from synthetic import SyntheticWorld, torch_threads

from clipfuse.combiners import NLC, make_combiner, oracle_accuracy

STATIC_AND_SUPER = [
    "best_single",
    "mean_logits",
    "mean_proba",
    "majority_vote",
    "max_confidence",
    "calibrated_mean",
    "super_learner",
]


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100 * float((pred == y).float().mean())


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


def test_ground_truth_of_the_test_bed() -> None:
    world = SyntheticWorld(num_backbones=3, num_classes=10, seed=0)
    split = world.sample(n=3000, seed=0)
    correct = split.logits.argmax(-1) == split.y  # (B, N)
    for b in range(3):
        own = split.region == b
        assert correct[b, own].float().mean() > 0.7  # competent in its own region
        assert correct[b, ~own].float().mean() < 0.05  # confidently wrong elsewhere
    assert correct[split.competent].float().mean() > 0.75  # the recorded ground truth holds
    assert correct[~split.competent].float().mean() < 0.02
    # The region is readable from every backbone's features (nearest region centre).
    for b, feats in enumerate(split.features):
        centres = world.region_centres()[b]
        assert (feats @ centres.T).argmax(-1).eq(split.region).float().mean() > 0.95
    # Same world + same seed -> same split; different seed -> different split.
    again = world.sample(n=3000, seed=0)
    assert torch.equal(again.logits, split.logits)
    assert not torch.equal(world.sample(n=3000, seed=1).logits, split.logits)


@pytest.mark.parametrize(("shots", "world_seed"), [(1, 0), (2, 1), (4, 2)])
def test_nlc_beats_static_ensembles_and_super_learner(shots: int, world_seed: int) -> None:
    world = SyntheticWorld(num_backbones=3, num_classes=10, seed=world_seed)
    train, test = world.sample(shots, seed=0), world.sample(200, seed=1)
    scores = {
        name: accuracy(
            make_combiner(name)
            .fit(train.features, train.logits, train.y)
            .predict(test.features, test.logits),
            test.y,
        )
        for name in [*STATIC_AND_SUPER, "nlc"]
    }
    best_other = max(v for k, v in scores.items() if k != "nlc")
    assert scores["nlc"] >= best_other + 5, scores
    assert scores["nlc"] <= oracle_accuracy(test.logits, test.y) * 100 + 1e-6


def test_nlc_temperatures_follow_the_known_competence() -> None:
    world = SyntheticWorld(num_backbones=3, num_classes=10, seed=0)
    train, test = world.sample(4, seed=0), world.sample(100, seed=1)
    nlc = NLC().fit(train.features, train.logits, train.y)
    t = nlc.predict_temperatures(test.features)
    for region in range(3):
        # The competent backbone of each region gets the lowest mean temperature there.
        assert int(t[test.region == region].mean(0).argmin()) == region


@pytest.mark.parametrize("num_backbones", [2, 4])
def test_nlc_does_no_harm_with_identical_backbones(num_backbones: int) -> None:
    world = SyntheticWorld(
        num_backbones=num_backbones,
        p_competent_in_region=0.7,
        p_competent_elsewhere=0.7,
        identical=True,
        seed=5,
    )
    train, test = world.sample(2, seed=0), world.sample(200, seed=1)
    single = accuracy(test.logits[0].argmax(-1), test.y)
    nlc = NLC().fit(train.features, train.logits, train.y)
    assert abs(accuracy(nlc.predict(test.features, test.logits), test.y) - single) <= 1.0
