"""transclip: transductive refinement over the evaluated batch, flagged wherever it is reported."""

from __future__ import annotations

import pytest
import torch

from clipfuse.combiners import make_combiner
from clipfuse.errors import FitError
from clipfuse.evaluation.tables import format_markdown


def _clustered(n: int, seed: int):
    """Features that cluster by class (2 backbones), zero-shot logits that barely see it."""
    g = torch.Generator().manual_seed(seed)
    c, d = 4, 16
    centres = [3.0 * torch.randn(c, d, generator=g) for _ in range(2)]
    y = torch.arange(n) % c
    feats = [m[y] + torch.randn(n, d, generator=g) for m in centres]
    onehot = torch.nn.functional.one_hot(y, c).float()
    z = torch.stack([0.6 * onehot + torch.randn(n, c, generator=g) for _ in range(2)])
    return feats, z, y


def test_refinement_uses_the_batch_structure_and_one_image_gets_the_base() -> None:
    feats, z, y = _clustered(400, 0)
    hold = torch.arange(8)  # 2 labelled rows per class
    comb = make_combiner("transclip", strength=3.0)
    comb.fit([f[hold] for f in feats], z[:, hold], y[hold])
    base = torch.einsum("b,bnc->nc", comb.weights_, z)
    refined = comb.predict_logits(feats, z)
    acc_base = float((base.argmax(-1) == y).float().mean())
    acc_refined = float((refined.argmax(-1) == y).float().mean())
    assert acc_refined > acc_base + 0.1
    one = comb.predict_logits([f[:1] for f in feats], z[:, :1])
    assert torch.allclose(one, base[:1])  # nothing to refine with: the inductive base
    assert comb.score(feats, z, y) == pytest.approx(acc_refined)  # scored on the whole set
    assert comb.fit_notes() == {"transductive": True} and type(comb).transductive


def test_saved_state_rebuilds_the_same_refinement() -> None:
    feats, z, y = _clustered(200, 1)
    comb = make_combiner("transclip").fit(feats, z, y)
    rebuilt = type(comb).from_state(comb.config(), comb.state_dict())
    assert torch.allclose(rebuilt.predict_logits(feats, z), comb.predict_logits(feats, z))
    assert rebuilt.anchor_means_.shape == (4, 32)


def test_bad_input_is_one_line() -> None:
    feats, z, y = _clustered(40, 2)
    with pytest.raises(FitError, match="reads the backbones' features"):
        make_combiner("transclip").fit(None, z, y)
    with pytest.raises(FitError, match="strength must be >= 0"):
        make_combiner("transclip", strength=-1.0).fit(feats, z, y)
    with pytest.raises(FitError, match="iterations must be >= 1"):
        make_combiner("transclip", iterations=0).fit(feats, z, y)


def test_tables_flag_transductive_rows() -> None:
    row = {"method": "transclip", "budget": "1-shot", "labels": 10, "n_seeds": 1,
           "mean": 0.5, "std": 0.0, "gain": None, "gain_relative": None,
           "worst_delta": None, "fit_s": 0.1, "predict_s": 0.1, "transductive": True}  # fmt: skip
    assert "| transclip (transductive) | 1-shot |" in format_markdown([row])
    assert "(transductive)" not in format_markdown([{**row, "transductive": False}])
