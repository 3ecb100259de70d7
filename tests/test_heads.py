"""Linear-probe, Tip-Adapter and Tip-Adapter-F heads and the combiners stacked on them.

The test bed here is class-structured (unlike tests/synthetic.py, whose features carry only a
region): every backbone's features scatter around per-class centres, and its zero-shot text
classifier is a noisy copy of those centres -- so labelled shots can beat zero-shot, as with
real CLIP features.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from beds import HEAD_STACK_FAST as FAST
from beds import accuracy, class_world
from safetensors.torch import load_file, save_file
from synthetic import torch_threads

from clipfuse.combiners import combiner_from_state, list_combiners, make_combiner
from clipfuse.combiners.folds import stratified_folds, stratified_split
from clipfuse.errors import FitError
from clipfuse.heads import (
    HEAD_COMBINER_NAMES,
    LinearProbeHeads,
    TipAdapterHeads,
    cache_logits,
    fit_logistic,
    loo_search,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world8():
    return class_world(shots=8, n_test=400, seed=1)


def test_registry_holds_every_head_combiner() -> None:
    names = list_combiners("lp*") + list_combiners("tip*")
    assert sorted(names) == sorted(HEAD_COMBINER_NAMES)
    assert set(HEAD_COMBINER_NAMES) >= {"lp", "lp_mean", "lp_super_learner", "lp_nlc", "tip", "tip_mean",
                                         "tip_super_learner", "tip_nlc", "tipf", "tipf_mean", "tipf_nlc"}  # fmt: skip
    with pytest.raises(FitError, match="linear heads have no parameter"):
        make_combiner("lp_nlc", head_params={"max_iters": 3}).fit(*class_world(2, 1)[0])
    with pytest.raises(FitError, match="protocol must be one of"):
        make_combiner("tip_mean", protocol="both").fit(*class_world(2, 1)[0])


def test_heads_beat_zero_shot_on_the_class_structured_bed(world8) -> None:
    (f, z, y), (ft, zt, yt) = world8
    zero_shot = max(accuracy(zt[b].argmax(-1), yt) for b in range(3))
    scores = {}
    for name in ("lp", "tip", "tipf", "lp_nlc", "tip_nlc", "lp_mean"):
        params = {} if name in ("lp", "tip", "tipf", "lp_mean") else FAST
        scores[name] = accuracy(make_combiner(name, **params).fit(f, z, y).predict(ft, zt), yt)
    assert zero_shot < 0.8
    for name, acc in scores.items():
        assert acc > zero_shot + 0.05, (name, acc, zero_shot)
    # heads of three diverse backbones, fused, beat the best single head
    assert scores["lp_mean"] > scores["lp"]


def test_logistic_regression_matches_scikit_learn() -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    (f, _, y), _ = class_world(shots=6, n_test=1)
    x, c, wd = f[0].double(), 10, 0.1
    init = (torch.zeros(c, x.shape[1], dtype=x.dtype), torch.zeros(c, dtype=x.dtype))
    w, b = fit_logistic(x, y, c, wd, init, max_iter=500)
    # ours: mean CE + wd/(2C)||W||^2  ==  sklearn's  0.5||W||^2 + C_sk * sum CE, C_sk = C/(wd N)
    ref = linear_model.LogisticRegression(C=c / (wd * len(y)), tol=1e-10, max_iter=5000)
    ref.fit(x.numpy(), y.numpy())
    ours = torch.softmax(x @ w.T + b, dim=1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(x.numpy()), atol=1e-3)  # L-BFGS stop: 1e-6


def test_weight_decay_by_cross_validation_or_documented_default() -> None:
    (f, z, y), _ = class_world(shots=4, n_test=1)
    heads = LinearProbeHeads({"weight_decays": [1.0, 0.01]}).fit(f, z, y, 10, seed=0)
    for meta in heads.meta_:
        assert meta["selection"] == "3-fold cross-validation"
        assert meta["weight_decay"] in (1.0, 0.01) and len(meta["cv"]) == 2
    (f1, z1, y1), _ = class_world(shots=1, n_test=1)
    heads = LinearProbeHeads({"default_weight_decay": 0.3}).fit(f1, z1, y1, 10, seed=0)
    assert all(m["weight_decay"] == 0.3 and "fixed default" in m["selection"] for m in heads.meta_)


def test_tip_adapter_reduces_to_zero_shot() -> None:
    (f, z, y), (ft, zt, _) = class_world(shots=3, n_test=50)
    off = TipAdapterHeads({"search": False, "alpha": 0.0}).fit(f, z, y, 10, seed=0)
    assert torch.equal(off.logits(ft, zt), zt)  # alpha = 0: exactly zero-shot
    flat = TipAdapterHeads({"search": False, "alpha": 2.0, "beta": 0.0}).fit(f, z, y, 10, seed=0)
    out = flat.logits(ft, zt)  # beta = 0: + alpha * shots for every class, a constant
    assert torch.allclose(out, zt + 2.0 * 3, atol=1e-4)
    assert torch.allclose(torch.softmax(out, -1), torch.softmax(zt, -1), atol=1e-6)
    # the stacked combiner with a zero-shot head is the inner combiner on zero-shot logits
    tip = make_combiner("tip_mean", head_params={"search": False, "alpha": 0.0}).fit(f, z, y)
    assert torch.allclose(tip.predict_logits(ft, zt), zt.mean(0))


def test_cache_logits_is_the_one_hot_matmul() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k = (
        F.normalize(torch.randn(7, 5, generator=gen), dim=1),
        F.normalize(torch.randn(9, 5, generator=gen), dim=1),
    )
    labels = torch.randint(0, 4, (9,), generator=gen)
    expected = torch.exp(-3.0 * (1 - q @ k.T)) @ F.one_hot(labels, 4).float()
    assert torch.allclose(cache_logits(q, k, labels, 4, 3.0), expected, atol=1e-6)


def test_leave_one_out_search_equals_brute_force() -> None:
    (f, z, y), _ = class_world(shots=3, n_test=1, classes=4, dims=(8,))
    x, zz, alphas, betas = f[0], z[0], [0.0, 1.0, 5.0], [1.0, 5.5]
    alpha, beta, acc, nll = loo_search(x, zz, y, 4, alphas, betas)
    table = {}
    for a in alphas:
        for b in betas:
            scores = torch.stack([
                zz[i] + a * cache_logits(x[i : i + 1], x[torch.arange(len(y)) != i], y[torch.arange(len(y)) != i], 4, b)[0]
                for i in range(len(y))
            ])  # fmt: skip
            table[(a, b)] = (accuracy(scores.argmax(-1), y), float(F.cross_entropy(scores, y)))
    best = max(table, key=lambda k: (table[k][0], -table[k][1]))
    assert (alpha, beta) == best
    assert acc == pytest.approx(table[best][0]) and nll == pytest.approx(table[best][1], rel=1e-4)


def test_controller_rows_are_cross_fitted_not_in_sample(world8) -> None:
    (f, z, y), (ft, zt, yt) = world8
    heads = LinearProbeHeads()
    oof = heads.fit_crossfit(f, z, y, 10, num_folds=3, seed=0)
    in_sample = heads.logits(f, z)
    test = heads.logits(ft, zt)
    for b in range(3):
        acc_in, acc_oof = accuracy(in_sample[b].argmax(-1), y), accuracy(oof[b].argmax(-1), y)
        assert acc_in > acc_oof  # memorised rows look better than they are
        assert abs(acc_oof - accuracy(test[b].argmax(-1), yt)) < 0.12  # OOF looks like test
    nlc = make_combiner("lp_nlc", **FAST).fit(f, z, y)
    assert nlc.controller_rows_.startswith("cross-fitted (3-fold)")
    assert (
        make_combiner("tip_nlc", **FAST)
        .fit(f, z, y)
        .controller_rows_.startswith("cross-fitted (leave-one-out)")
    )
    (f1, z1, y1), _ = class_world(shots=1, n_test=1)
    assert make_combiner("lp_nlc", **FAST).fit(f1, z1, y1).controller_rows_.startswith("in-sample")
    assert make_combiner("lp_mean").fit(f1, z1, y1).controller_rows_.startswith("not used")


def test_tip_adapter_f_oof_rows_come_from_fold_refits(world8) -> None:
    (f, z, y), _ = world8
    comb = make_combiner("tipf_super_learner", head_params={"epochs": 2}).fit(f, z, y)
    assert comb.controller_rows_.startswith("cross-fitted (3-fold)")
    tuned = comb.heads_.fitted_[0]["keys"]
    assert tuned.shape == f[0].shape and not torch.allclose(tuned, f[0])  # keys moved
    assert all(m["epochs"] == 2 for m in comb.heads_.meta_)


def test_split_protocol_keeps_controller_rows_away_from_heads(world8) -> None:
    (f, z, y), _ = world8
    comb = make_combiner("tip_super_learner", protocol="split", controller_fraction=0.25).fit(
        f, z, y
    )
    assert comb.controller_rows_ == "split: heads on 60 rows, controller on 20"
    assert comb.heads_.fitted_[0]["keys"].shape[0] == 60  # the cache holds only the heads' part
    mask = stratified_split(y, 0.25, 0, 10)
    assert torch.bincount(y[mask], minlength=10).tolist() == [2] * 10
    (f1, z1, y1), _ = class_world(shots=1, n_test=1)
    with pytest.raises(FitError, match=">= 2 labelled rows per class"):
        make_combiner("lp_mean", protocol="split").fit(f1, z1, y1)


def test_stratified_folds_put_every_class_in_every_training_fold() -> None:
    y = torch.arange(5).repeat_interleave(torch.tensor([2, 3, 4, 2, 7]))
    fold = stratified_folds(y, 3, seed=4)
    for k in range(3):
        assert set(y[fold != k].tolist()) == set(range(5))
    assert torch.equal(fold, stratified_folds(y, 3, seed=4))


@pytest.mark.parametrize("name", ["lp", "lp_nlc", "tip_super_learner", "tipf_mean"])
def test_state_round_trip(name: str, tmp_path) -> None:
    (f, z, y), (ft, zt, _) = class_world(shots=2, n_test=30)
    comb = make_combiner(name, head_params={"epochs": 1} if name.startswith("tipf") else None, **(
        FAST if name.endswith("nlc") else {})).fit(f, z, y)  # fmt: skip
    save_file(comb.state_dict(), tmp_path / "s.safetensors")
    (tmp_path / "c.json").write_text(json.dumps(comb.config()))
    again = combiner_from_state(
        json.loads((tmp_path / "c.json").read_text()), load_file(tmp_path / "s.safetensors")
    )
    assert type(again) is type(comb) and again.get_params() == comb.get_params()
    assert torch.equal(again.predict_logits(ft, zt), comb.predict_logits(ft, zt))
    if name == "lp":
        assert again.chosen_ == comb.chosen_ and 0 <= comb.chosen_ < 3
        assert comb.head_logits(ft, zt).shape == (3, 30, 10)
