"""Cascades (cheapest first, confidence exit) and backbone subsets under a compute budget."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from synthetic import SyntheticWorld, torch_threads

from clipfuse.cascade import (
    ALL_STAGES,
    Cascade,
    SubsetNLC,
    pareto_front,
    prefix_points,
    search_subset,
    threshold_for_accuracy,
    threshold_for_cost,
    threshold_points,
    tradeoff_report,
)
from clipfuse.cascade.subset import score_subsets
from clipfuse.cascade.threshold import exit_stage, operating_points
from clipfuse.combiners import combiner_from_state, make_combiner
from clipfuse.errors import FitError
from clipfuse.logits.bundle import ViewBundle

GFLOPS = [4.0, 1.0, 2.0, 8.0]  # backbone 1 is the cheapest, then 2, 0, 3
FAST = {"controller_params": {"steps": 60}}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data():
    world = SyntheticWorld(num_backbones=4, num_classes=6, feature_dims=(8, 12, 16, 10),
                           p_competent_elsewhere=0.5, seed=2)  # fmt: skip
    return world.sample(4, seed=0), world.sample(n=300, seed=1)


def test_threshold_zero_runs_only_the_cheapest_and_above_one_runs_all(data) -> None:
    train, test = data
    low = Cascade(gflops=GFLOPS, threshold=0.0, **FAST).fit(train.features, train.logits, train.y)
    assert low.order_ == [1, 2, 0, 3] and low.stage_costs_ == [1.0, 3.0, 7.0, 15.0]
    pred, cost, used = low.predict_with_cost(test.features, test.logits)
    assert (used == 1).all() and (cost == 1.0).all()
    only_cheapest = low.controllers_[0].predict([test.features[1]], test.logits[[1]])
    assert torch.equal(pred, only_cheapest)
    high = Cascade(gflops=GFLOPS, threshold=1.01, **FAST).fit(train.features, train.logits, train.y)
    pred, cost, used = high.predict_with_cost(test.features, test.logits)
    assert (used == 4).all() and (cost == 15.0).all()
    assert torch.equal(pred, high.controllers_[-1].predict([test.features[i] for i in (1, 2, 0, 3)],
                                                           test.logits[[1, 2, 0, 3]]))  # fmt: skip
    assert torch.equal(high.predict(test.features, test.logits), pred)


def test_explicit_order_and_unit_costs(data) -> None:
    train, test = data
    cas = Cascade(order=[3, 0], threshold=ALL_STAGES, **FAST).fit(
        train.features, train.logits, train.y
    )
    assert cas.cost_unit_ == "backbones" and cas.stage_costs_ == [1.0, 2.0]
    assert cas.required_backbones_ == [3, 0]
    _, cost, used = cas.predict_with_cost(test.features, test.logits)
    assert (used == 2).all() and (cost == 2.0).all()
    with pytest.raises(FitError, match="distinct backbone indices"):
        Cascade(order=[0, 0], **FAST).fit(train.features, train.logits, train.y)
    with pytest.raises(FitError, match="at most one of"):
        Cascade(threshold=0.5, target_gflops=3.0).fit(train.features, train.logits, train.y)


def test_compute_target_is_met_on_the_holdout_and_measured_on_test(data) -> None:
    train, test = data
    cas = Cascade(gflops=GFLOPS, target_gflops=5.0, **FAST).fit(
        train.features, train.logits, train.y
    )
    assert cas.calibration_["mean_cost"] <= 5.0
    assert cas.calibration_["rows"].startswith("cross-fitted (3-fold)")
    _, cost, used = cas.predict_with_cost(test.features, test.logits)
    assert 1.0 <= float(cost.mean()) <= 15.0 and set(used.unique().tolist()) <= {1, 2, 3, 4}
    # costs are what each input's prefix ran
    assert torch.equal(cost, torch.tensor(cas.stage_costs_)[used - 1])
    with pytest.raises(FitError, match="below the cheapest backbone"):
        Cascade(gflops=GFLOPS, target_gflops=0.5, **FAST).fit(train.features, train.logits, train.y)


def test_threshold_calibration_equals_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    conf = torch.rand(3, 40, generator=gen)
    correct = torch.rand(3, 40, generator=gen) < torch.tensor([[0.5], [0.7], [0.9]])
    costs = torch.tensor([1.0, 3.0, 6.0], dtype=torch.float64)
    grid = torch.cat([torch.unique(conf), torch.tensor([0.0, ALL_STAGES])])
    points = operating_points(conf, correct, costs, grid)
    for target in (1.0, 2.0, 3.7, 6.0):
        t = threshold_for_cost(conf, costs, target)
        feasible = [p.threshold for p in points if p.mean_cost <= target + 1e-12]
        assert t == pytest.approx(max(feasible))
    for target in (0.6, 0.75, 0.99):
        t, met = threshold_for_accuracy(conf, correct, costs, target)
        reached = [p for p in points if p.accuracy >= target]
        if reached:
            cheapest = min(p.mean_cost for p in reached)
            chosen = operating_points(conf, correct, costs, torch.tensor([t]))[0]
            assert met and chosen.mean_cost == pytest.approx(cheapest) and chosen.accuracy >= target
        else:
            assert (t, met) == (ALL_STAGES, False)
    # exit stage: the first stage reaching the threshold, the last one otherwise
    assert exit_stage(torch.tensor([[0.2, 0.9], [0.6, 0.1], [0.1, 0.1]]), 0.5).tolist() == [1, 0]
    assert exit_stage(torch.tensor([[0.2], [0.3]]), 0.5).tolist() == [1]


def test_pareto_curve_is_monotone_in_cost(data) -> None:
    train, test = data
    cas = Cascade(gflops=GFLOPS, **FAST).fit(train.features, train.logits, train.y)
    prefix = prefix_points(cas, test.features, test.logits, test.y, ["a", "b", "c", "d"])
    assert [p.label for p in prefix] == ["b", "b+c", "b+c+a", "b+c+a+d"]
    assert [p.cost for p in prefix] == [1.0, 3.0, 7.0, 15.0]
    sweep = threshold_points(cas, test.features, test.logits, test.y)
    assert sweep[0].cost == 1.0 and sweep[-1].cost == 15.0  # threshold 0 ... > 1
    assert all(a.cost <= b.cost for a, b in zip(sweep, sweep[1:]))  # cost grows with threshold
    front = pareto_front([*prefix, *sweep])
    assert all(a.cost < b.cost and a.accuracy < b.accuracy for a, b in zip(front, front[1:]))
    assert all(
        any(f.cost <= p.cost and f.accuracy >= p.accuracy for f in front) for p in [*prefix, *sweep]
    )


def brute_force(
    z: torch.Tensor, y: torch.Tensor, costs: list[float], budget: float
) -> tuple[int, ...]:
    subsets = [s for r in range(1, len(costs) + 1) for s in itertools.combinations(range(len(costs)), r)
               if sum(costs[i] for i in s) <= budget]  # fmt: skip
    scores = dict(zip(subsets, score_subsets(z, y, subsets)))
    return min(
        subsets, key=lambda s: (-scores[s][0], scores[s][1], sum(costs[i] for i in s), len(s), s)
    )


def test_subset_search_equals_brute_force_and_respects_the_budget() -> None:
    gen = torch.Generator().manual_seed(3)
    for trial in range(6):
        b, n, c = 5, 60, 4
        y = torch.randint(0, c, (n,), generator=gen)
        z = 3 * torch.randn(b, n, c, generator=gen) + 2 * torch.rand(
            b, 1, 1, generator=gen
        ) * torch.nn.functional.one_hot(y, c)
        costs = (torch.rand(b, generator=gen) * 9 + 1).tolist()
        budget = float(torch.rand(1, generator=gen)) * sum(costs) + min(costs)
        exact = search_subset(z, y, costs, budget, exhaustive_max=10)
        assert exact.method == "exhaustive" and exact.cost <= budget
        assert exact.subset == brute_force(z, y, costs, budget), trial
        greedy = search_subset(z, y, costs, budget, exhaustive_max=0)
        assert greedy.method == "greedy" and greedy.cost <= budget
    with pytest.raises(FitError, match="below the cheapest backbone"):
        search_subset(z, y, costs, min(costs) / 2)


@pytest.mark.parametrize("search", ["calibrated_mean", "mean_logits", "nlc"])
def test_subset_nlc_within_budget_and_round_trip(search: str, data, tmp_path) -> None:
    train, test = data
    for budget in (1.0, 3.5, 9.0, None):
        sub = SubsetNLC(gflops=GFLOPS, budget_gflops=budget, search=search, shortlist=3, **FAST)
        sub.fit(train.features, train.logits, train.y)
        assert sub.subset_cost_ <= (budget or math.inf) and sub.required_backbones_ == sub.subset_
        assert sub.subset_cost_ == sum(GFLOPS[i] for i in sub.subset_)
    assert budget is None and sub.search_["proxy"] == (
        "calibrated_mean" if search == "nlc" else search
    )
    save_file(sub.state_dict(), tmp_path / "s.safetensors")
    (tmp_path / "c.json").write_text(json.dumps(sub.config()))
    again = combiner_from_state(
        json.loads((tmp_path / "c.json").read_text()), load_file(tmp_path / "s.safetensors")
    )
    assert again.subset_ == sub.subset_
    assert torch.equal(
        again.predict_logits(test.features, test.logits),
        sub.predict_logits(test.features, test.logits),
    )


def test_cascade_state_round_trip(data, tmp_path) -> None:
    train, test = data
    cas = make_combiner("cascade", gflops=GFLOPS, target_gflops=6.0, **FAST).fit(
        train.features, train.logits, train.y
    )
    save_file(cas.state_dict(), tmp_path / "s.safetensors")
    (tmp_path / "c.json").write_text(json.dumps(cas.config()))
    again = combiner_from_state(
        json.loads((tmp_path / "c.json").read_text()), load_file(tmp_path / "s.safetensors")
    )
    for a, b in zip(
        again.predict_with_cost(test.features, test.logits),
        cas.predict_with_cost(test.features, test.logits),
    ):
        assert torch.equal(a, b)


def _bundle(split, view: str) -> ViewBundle:
    n, b = split.y.numel(), len(split.features)
    return ViewBundle(
        view=view, names=[f"m{i}" for i in range(b)], specs=[f"spec{i}" for i in range(b)],
        fingerprints=[f"fp{i}" for i in range(b)], features=split.features, logits=split.logits,
        labels=split.y, indices=np.arange(n), sample_ids=[str(i) for i in range(n)],
        classnames=[f"c{i}" for i in range(split.logits.shape[2])], templates=["{}"],
        logit_scales=[100.0] * b, gflops=list(GFLOPS),
    )  # fmt: skip


def test_runner_fills_costs_reports_compute_and_never_reads_test_labels(data, monkeypatch) -> None:
    from clipfuse import protocol
    from clipfuse.evaluation import runner

    world = SyntheticWorld(
        num_backbones=4,
        num_classes=6,
        feature_dims=(8, 12, 16, 10),
        p_competent_elsewhere=0.5,
        seed=2,
    )
    train = _bundle(world.sample(6, seed=3), "train")
    _, test_split = data
    fitted: list = []
    real = protocol.build_combiner
    monkeypatch.setattr(
        protocol, "build_combiner", lambda *a, **k: fitted.append(real(*a, **k)) or fitted[-1]
    )
    methods = ["cascade", "subset_nlc", "lp_nlc", "tip_mean"]
    params = {"cascade": {**FAST, "target_gflops": 5.0}, "subset_nlc": {**FAST, "budget_gflops": 4.0},
              "lp_nlc": {"inner_params": {"steps": 30}}}  # fmt: skip
    states = []
    for labels in (
        test_split.y,
        test_split.y[torch.randperm(300, generator=torch.Generator().manual_seed(0))],
    ):
        test = _bundle(test_split, "test")
        test.labels = labels
        fitted.clear()
        result = runner.evaluate_methods(train, test, methods, [(3, None)], [0], dataset="syn",
                                         method_params=params, progress=False)  # fmt: skip
        states.append([{k: v.clone() for k, v in c.state_dict().items()} for c in fitted])
        info = {r.method: r.info for r in result.records}
        assert fitted[0].gflops == GFLOPS  # filled from the bundle
        assert 1.0 <= info["cascade"]["gflops_per_image"] <= 15.0
        assert info["subset_nlc"]["gflops_per_image"] <= 4.0 and info["subset_nlc"]["backbones"]
        assert info["tip_mean"]["gflops_per_image"] == 15.0  # every backbone runs
    for a, b in zip(*states):  # shuffled test labels: identical fitted state, method by method
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tradeoff_report_is_json_ready(data) -> None:
    train, test = data
    tr, tst = _bundle(train, "h"), _bundle(test, "t")
    report = tradeoff_report(
        tr, tst, shots=4, budgets=[3.0, 8.0], cascade_params=FAST, subset_params=FAST
    )
    text = json.dumps(report)
    assert "NaN" not in text and report["cost_unit"] == "GFLOPs"
    assert [p["backbones"] for p in report["prefix_curve"]] == [1.0, 2.0, 3.0, 4.0]
    assert all(s["cost"] <= s["budget"] for s in report["subsets"])
    costs = [p["cost"] for p in report["pareto"]]
    assert costs == sorted(costs)
    assert report["holdout"]["budget"] == "4-shot" and report["holdout"]["seed"] == 0


def test_tradeoffs_run_the_protocol_and_match_evaluate() -> None:
    """Issue 22: tradeoffs draws, fits, scores and costs through ``clipfuse.protocol``, so its
    cascade and subset figures are the very numbers ``evaluate`` records for the same draw
    (before, it fitted and scored on its own, in float32)."""
    from clipfuse.evaluation.runner import evaluate_methods

    world = SyntheticWorld(num_backbones=4, num_classes=6, feature_dims=(8, 12, 16, 10),
                           p_competent_elsewhere=0.5, seed=2)  # fmt: skip
    train, test = _bundle(world.sample(10, seed=0), "tr"), _bundle(world.sample(300, seed=1), "te")
    report = tradeoff_report(
        train, test, shots=4, seed=1, budgets=[8.0], cascade_params=FAST, subset_params=FAST
    )
    params = {"cascade": FAST, "subset_nlc": {**FAST, "budget_gflops": 8.0}}
    result = evaluate_methods(train, test, ["cascade", "subset_nlc"], [(4, None)], [1],
                              dataset="x", method_params=params, progress=False)  # fmt: skip
    cascade, subset = result.records
    assert report["cascade"]["accuracy"] == cascade.top1
    assert report["cascade"]["cost"] == cascade.info["gflops_per_image"]
    assert report["cascade"]["backbones"] == cascade.info["backbones_per_image"]
    assert report["subsets"][0]["test_accuracy"] == subset.top1
    assert report["subsets"][0]["backbones"] == subset.info["backbones"]
    assert report["holdout"]["content_sha256"] == result.draws[0].content_hash


def test_predict_runs_only_the_backbones_needed(
    cifar200_f16_store, image_folder, monkeypatch
) -> None:
    from clipfuse.ensemble.predict import predict_images
    from clipfuse.ensemble.saved import SavedEnsemble, backbone_records
    from clipfuse.logits import load_bundle
    from clipfuse.store import FeatureStore

    store = FeatureStore(cifar200_f16_store)
    (view,) = [v for v in store.views() if "+" not in v]
    bundle = load_bundle(store, view)
    cheapest = int(np.argmin([g or 1.0 for g in bundle.gflops]))
    loaded: list = []
    real_load = SavedEnsemble.load_backbones
    monkeypatch.setattr(SavedEnsemble, "load_backbones",
                        lambda self, *a, **k: loaded.append(k.get("only")) or real_load(self, *a, **k))  # fmt: skip

    def run(combiner):
        combiner.fit(bundle.features, bundle.logits, bundle.labels)
        ens = SavedEnsemble(
            backbone_records(bundle),
            bundle.classnames,
            bundle.templates,
            bundle.classifiers,
            combiner,
        )
        path = ens.save(cifar200_f16_store.parent / f"{combiner.name}.safetensors")
        preds, failures = predict_images(
            SavedEnsemble.load(path), [str(image_folder)], num_workers=0, progress=False
        )
        assert len(preds) == 30 and not failures
        return preds

    gflops = None if None in bundle.gflops else bundle.gflops
    preds = run(make_combiner("cascade", gflops=gflops, threshold=0.0, **FAST))
    assert {p["backbones_run"] for p in preds} == {1} and loaded[-1] == [cheapest, 1 - cheapest]
    preds = run(make_combiner("cascade", gflops=gflops, threshold=ALL_STAGES, **FAST))
    assert {p["backbones_run"] for p in preds} == {2}
    run(make_combiner("subset_nlc", gflops=gflops, budget_gflops=min(gflops or [1.0]), **FAST))
    assert loaded[-1] == [cheapest]  # the other backbone is never loaded
    preds = run(make_combiner("nlc", steps=20))  # every other combiner: all backbones, as before
    assert loaded[-1] == [0, 1] and all(len(p["temperatures"]) == 2 for p in preds)
