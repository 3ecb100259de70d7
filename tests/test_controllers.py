"""nlc_residual (residual on a static start) and backbone_dropout on ControllerCombiners."""

from __future__ import annotations

import pytest
import torch
from synthetic import SyntheticWorld

from clipfuse.combiners.gating import MixtureOfExperts
from clipfuse.combiners.nlc import NLC
from clipfuse.combiners.nlc_residual import NLCResidual
from clipfuse.combiners.static import CalibratedMean
from clipfuse.combiners.weights import fit_mix
from clipfuse.errors import FitError

WORLD = SyntheticWorld(num_backbones=3, num_classes=10, seed=0)


@pytest.fixture(scope="module")
def holdout():
    return WORLD.sample(4, seed=0)


def test_starts_exactly_at_shrunk_mix(holdout) -> None:
    """With a vanishing learning rate the fused logits are the static shrunk_mix fusion."""
    c = NLCResidual(steps=1, lr=1e-12).fit(holdout.features, holdout.logits, holdout.y)
    w0, _ = fit_mix(holdout.logits, holdout.y, 1.0, 100)
    torch.testing.assert_close(c.w0_, w0)
    expected = torch.einsum("b,bnc->nc", w0, holdout.logits)
    torch.testing.assert_close(c.predict_logits(holdout.features, holdout.logits), expected)


def test_calibration_start_and_std_norm(holdout) -> None:
    c = NLCResidual(start="calibration", logit_norm="std", steps=1, lr=1e-12)
    c.fit(holdout.features, holdout.logits, holdout.y)
    zn = holdout.logits / holdout.logits.std(dim=-1, keepdim=True)
    cal = CalibratedMean()
    cal._fit(None, zn, holdout.y)
    torch.testing.assert_close(c.w0_, 1.0 / (3 * cal.temperatures_))
    assert c.fit_notes()["start"] == "calibration" and c.fit_notes()["logit_norm"] == "std"


def test_residual_learns_routing_and_penalty_pulls_to_start(holdout) -> None:
    """Synthetic regions: the residual beats its static start on fresh inputs; a huge penalty
    keeps the weights at the start."""
    test = WORLD.sample(n=2000, seed=1)
    free = NLCResidual(residual_penalty=0.0, lr=1e-2, steps=300)
    free.fit(holdout.features, holdout.logits, holdout.y)
    static = torch.einsum("b,bnc->nc", free.w0_, test.logits).argmax(-1)
    acc = lambda pred: float((pred == test.y).float().mean())  # noqa: E731
    assert acc(free.predict(test.features, test.logits)) > acc(static) + 0.05
    tied = NLCResidual(residual_penalty=1e4, lr=1e-2, steps=300)
    tied.fit(holdout.features, holdout.logits, holdout.y)
    w = tied._weights(test.features)
    assert float((w / tied.w0_ - 1).abs().max()) < 0.05


@pytest.mark.parametrize("cls", [NLC, MixtureOfExperts, NLCResidual])
def test_backbone_dropout_is_seeded_and_changes_fit(cls, holdout) -> None:
    args = (holdout.features, holdout.logits, holdout.y)
    a = cls(steps=50, lr=1e-2, backbone_dropout=0.3).fit(*args).predict_logits(*args[:2])
    b = cls(steps=50, lr=1e-2, backbone_dropout=0.3).fit(*args).predict_logits(*args[:2])
    c = cls(steps=50, lr=1e-2).fit(*args).predict_logits(*args[:2])
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_dropout_mask_drops_whole_backbones_with_expected_scale_one() -> None:
    c = NLC(backbone_dropout=0.25)
    m = c._dropout_mask((20000, 4), torch.Generator().manual_seed(0))
    values = torch.unique(m).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1.0 / 0.75)
    assert abs(float(m.mean()) - 1.0) < 0.02


@pytest.mark.parametrize(
    "kwargs", [{"start": "oracle"}, {"logit_norm": "l2"}, {"backbone_dropout": 1.0}]
)
def test_bad_options_raise_one_clear_error(kwargs, holdout) -> None:
    with pytest.raises(FitError):
        NLCResidual(**kwargs).fit(holdout.features, holdout.logits, holdout.y)
