"""Issue 11's combiners: shrunk mix (recommended) and its semi-supervised variant; runner hooks."""

from __future__ import annotations

import pytest
import torch
from synthetic import SyntheticWorld, torch_threads

from clipfuse.combiners import make_combiner
from clipfuse.combiners.registry import RECOMMENDED, expand_methods
from clipfuse.errors import FitError
from clipfuse.evaluation.records import add_reference_columns


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data():
    world = SyntheticWorld(num_backbones=3, num_classes=5, feature_dims=(8, 12, 16), seed=3)
    return world.sample(3, seed=0), world.sample(n=60, seed=1)


def test_recommended_is_registered_and_the_recommended_group() -> None:
    assert expand_methods(["recommended"]) == [RECOMMENDED] == ["auto"]
    assert make_combiner(RECOMMENDED).uses_unlabelled is True  # its signals read unlabelled images


def _confidence_world(seed: int = 0):
    """3 backbones: 0 is sharp and right, 1 and 2 are flat (low confidence) and noisy."""
    gen = torch.Generator().manual_seed(seed)
    n, c = 400, 5
    y = torch.randint(0, c, (n,), generator=gen)
    good = 4.0 * torch.nn.functional.one_hot(y, c).float() + torch.randn(n, c, generator=gen)
    flat = [0.3 * torch.randn(n, c, generator=gen) for _ in range(2)]
    return torch.stack([good, *flat]), y


def test_confidence_prior_finds_the_confident_backbone_without_labels() -> None:
    z, y = _confidence_world()
    unlabelled = torch.full_like(y, -1)
    one_each = torch.stack([torch.nonzero(y == k)[0, 0] for k in range(5)])
    unlabelled[one_each] = y[one_each]  # five labels only; the prior comes from all 400 images
    mix = make_combiner("conf_mix").fit(None, z, unlabelled)
    assert int(mix.prior_.argmax()) == 0 and float(mix.prior_[0]) > 0.9
    assert mix.num_prior_images_ == 400 and mix.note_ is None
    assert float(mix.mean_confidence_[0]) > float(mix.mean_confidence_[1:].max())
    assert mix.fit_notes()["prior"][0] > 0.9
    few = make_combiner("conf_mix").fit(None, z[:, one_each], y[one_each])
    assert "from 5 images, 0 of them unlabelled" in few.fit_notes()["note"]  # recorded
    # with many labels and no pull, the mix is free to leave the prior
    free = make_combiner("conf_mix", shrinkage=0.0, tau=10.0).fit(None, z, y)
    assert float(free.mix_[0]) > 0.9


def test_labels_overrule_a_confidently_wrong_backbone() -> None:
    """The prior's known failure: a random backbone with sharp logits looks most confident.
    Capped prior + a second start at uniform: 16 labels per class move the mix off it, and at
    4 the safety rule falls back to the single backbone that the labels back."""
    g = torch.Generator().manual_seed(0)
    n, c = 600, 5
    y = torch.randint(0, c, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(y, c).float()
    good = 2.0 * onehot + torch.randn(n, c, generator=g)
    z = torch.stack(
        [good, 8.0 * torch.randn(n, c, generator=g), onehot + torch.randn(n, c, generator=g)]
    )
    accuracy = {}
    for k in (4, 16):
        rows = torch.cat([torch.nonzero(y == j)[:k, 0] for j in range(c)])
        partly = torch.full_like(y, -1)
        partly[rows] = y[rows]
        for name in ("conf_mix", "safe_conf_mix"):
            comb = make_combiner(name).fit(None, z, partly)
            assert float(comb.prior_[1]) < 0.95  # capped: at most 20x the others' weight
            accuracy[name, k] = float((comb.predict(None, z) == y).float().mean())
    assert accuracy["conf_mix", 4] < 0.3 < 0.7 < accuracy["conf_mix", 16]
    assert accuracy["safe_conf_mix", 4] > 0.75


def test_conf_weighted_is_per_image_and_label_free() -> None:
    z, y = _confidence_world(1)
    comb = make_combiner("conf_weighted").fit(None, z, y)
    fused = comb.predict_logits(None, z)
    p = torch.softmax(z, -1).amax(-1)  # (B, N)
    w = p / p.sum(0)
    assert torch.allclose(fused, (w.unsqueeze(-1) * z).sum(0), atol=1e-5)
    assert torch.allclose(comb.predict_logits(None, z[:, :1]), fused[:1], atol=1e-5)
    with pytest.raises(FitError, match="power must be > 0"):
        make_combiner("conf_weighted", power=0.0).fit(None, z, y)


def test_safe_conf_mix_records_prior_and_choice(data) -> None:
    train, test = data
    z = torch.cat([train.logits, test.logits], 1)
    y = torch.cat([train.y, torch.full_like(test.y, -1)])
    safe = make_combiner("safe_conf_mix").fit(None, z, y)
    notes = safe.fit_notes()
    assert notes["choice"] in ("fusion", "single") and len(notes["prior"]) == 3
    assert safe.num_prior_images_ == z.shape[1]
    rebuilt = type(safe).from_state(safe.config(), safe.state_dict())
    assert torch.equal(rebuilt.predict(None, test.logits), safe.predict(None, test.logits))
    assert rebuilt.fit_notes() == notes


def test_shrunk_mix_goes_from_the_mean_to_free_weights(data) -> None:
    """Infinite shrinkage = mean of logits (up to scale); none = a weighted fit; mix sums to 1."""
    train, test = data
    stiff = make_combiner("shrunk_mix", shrinkage=1e6).fit(None, train.logits, train.y)
    assert torch.allclose(stiff.mix_, torch.full((3,), 1 / 3), atol=1e-3)
    assert torch.equal(stiff.predict(None, test.logits), test.logits.mean(0).argmax(-1))
    free = make_combiner("shrunk_mix", shrinkage=0.0).fit(None, train.logits, train.y)
    assert abs(float(free.mix_.sum()) - 1) < 1e-5
    assert (free.mix_ - 1 / 3).abs().max() > (stiff.mix_ - 1 / 3).abs().max()


def test_unlabelled_rows_only_for_combiners_that_use_them(data) -> None:
    train, _ = data
    y = train.y.clone()
    y[::2] = -1
    with pytest.raises(FitError, match="only combiners with uses_unlabelled accept them"):
        make_combiner("shrunk_mix").fit(None, train.logits, y)
    with pytest.raises(FitError, match="every label is -1"):
        make_combiner("semi_mix").fit(None, train.logits, torch.full_like(y, -1))
    with pytest.raises(FitError, match="labels must lie in"):
        make_combiner("semi_mix").fit(None, train.logits, y - 2)


def test_semi_mix_uses_pseudo_labels_and_records_the_fallback(data) -> None:
    train, test = data
    z = torch.cat([train.logits, test.logits], 1)
    y = torch.cat([train.y, torch.full_like(test.y, -1)])
    semi = make_combiner("semi_mix", keep=0.5).fit(None, z, y)
    assert semi.num_unlabelled_ == 60 and semi.num_pseudo_ == 30 and semi.fallback_ is None
    assert semi.config()["fitted"]["num_unlabelled"] == 60
    alone = make_combiner("semi_mix").fit(None, train.logits, train.y)
    assert alone.num_unlabelled_ == 0 and "no unlabelled rows" in alone.fallback_
    plain = make_combiner("shrunk_mix").fit(None, train.logits, train.y)
    assert torch.allclose(alone.weights_, plain.weights_)


def test_reference_columns() -> None:
    rows = [
        {"kind": "method", "mean": 0.55, "worst": 0.495},
        {"kind": "oracle", "mean": 0.70, "worst": 0.70},
    ]
    add_reference_columns(rows, 0.50, 0.70)  # fractions in, fractions out
    assert rows[0]["gain_vs_reference"] == pytest.approx(0.05)
    assert rows[0]["worst_vs_reference"] == pytest.approx(-0.005)
    assert rows[0]["oracle_gap_share"] == pytest.approx(0.25)
    assert "gain_vs_reference" not in rows[1]


# ---- CLI: `fit` defaults to the recommended method; unlabelled rows are given and recorded ----


@pytest.fixture(scope="module")
def fusion_bed(tmp_path_factory):
    from beds import build_fusion_bed

    return build_fusion_bed(tmp_path_factory)


def test_fit_defaults_to_recommended_and_semi_records_unlabelled(fusion_bed, tmp_path) -> None:
    from clipfuse.cli import main
    from clipfuse.ensemble.saved import SavedEnsemble

    common = [*fusion_bed.data, "--train-split", "train", "--limit", "200", "--shots", "1"]
    assert main(["fit", *common, "--out", str(tmp_path / "rec.safetensors")]) == 0
    rec = SavedEnsemble.load(tmp_path / "rec.safetensors")
    assert rec.combiner.name == RECOMMENDED
    auto = rec.combiner  # its choice is saved with it
    assert auto.fit_notes()["auto_choice"] in {*auto.candidates, auto.one_shot_heads}
    from clipfuse.ensemble.predict import predict_images

    one = sorted((fusion_bed.folder / "test").rglob("*.jpg"))[0]  # inductive: a single new image
    predictions, failures = predict_images(rec, [str(one)], num_workers=0, progress=False)
    assert not failures and len(predictions) == 1
    assert predictions[0]["label"] in rec.classnames
    out = tmp_path / "semi.safetensors"
    assert main(["fit", *common, "--method", "semi_mix", "--out", str(out)]) == 0
    semi = SavedEnsemble.load(out)
    labels = semi.training["num_labels"]
    assert semi.training["unlabelled"] == semi.combiner.num_unlabelled_ == 200 - labels


def test_evaluate_recommended_reports_reference_gap_and_unlabelled(fusion_bed, tmp_path) -> None:
    import json

    from clipfuse.cli import main

    out = tmp_path / "results"
    args = ["evaluate", *fusion_bed.data, "--train-split", "train", "--test-split", "test",
            "--limit", "200", "--methods", "recommended,semi_mix", "--shots", "1", "--seeds", "2",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    rows = {
        r["method"]: r
        for r in json.loads((out / "results.json").read_text())["summary"]
        if r["kind"] == "method"
    }
    assert set(rows) == {"auto", "semi_mix"}
    assert rows["semi_mix"]["unlabelled"] == rows["auto"]["unlabelled"] == 190
    assert all(r["gain_vs_reference"] is not None for r in rows.values())
    for r in rows.values():  # the worst seed's gain vs the reference is the worst seed's top-1
        assert r["worst_vs_reference"] <= r["gain_vs_reference"]
        assert r["worst"] - r["worst_vs_reference"] == pytest.approx(
            r["mean"] - r["gain_vs_reference"]
        )
    csv_header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"gain_vs_reference", "worst_vs_reference", "oracle_gap_share",
            "unlabelled", "transductive"} <= set(csv_header)  # fmt: skip
    report_rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert {r["method"] for r in report_rows if "gain_vs_reference" in r} == set(rows)
    records = json.loads((out / "results.json").read_text())["records"]
    assert all(
        "auto_choice" in r["info"] and "auto_signals" in r["info"]
        for r in records
        if r["method"] == "auto"
    )
    md = (out / "results.md").read_text()
    assert "vs reference (pts)" in md and "oracle gap captured (%)" in md


def test_safe_mix_records_its_choice_and_the_too_few_labels_fallback(data) -> None:
    train, test = data  # 3 shots x 5 classes = 15 labels: 5 folds of 3
    safe = make_combiner("safe_mix").fit(None, train.logits, train.y)
    assert safe.choice_ in ("fusion", "single") and safe.fallback_ is None
    assert safe.cv_nll_fusion_ > 0 and safe.cv_nll_single_ > 0
    assert 0 <= safe.single_wins_ <= 5
    if safe.choice_ == "single":
        assert int((safe.weights_ > 0).sum()) == 1
    one = torch.stack([torch.nonzero(train.y == c)[0, 0] for c in range(5)])  # 1 shot: 5 labels
    few = make_combiner("safe_mix", folds=5).fit(None, train.logits[:, one], train.y[one])
    assert "too few for 5-fold cross-validation" in few.fallback_ and few.choice_ == "fusion"
    with pytest.raises(FitError, match="required_wins must be in"):
        make_combiner("safe_mix", folds=3, required_wins=4).fit(None, train.logits, train.y)


def test_safe_mix_picks_the_single_backbone_when_the_others_are_noise() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat(6)
    good = torch.nn.functional.one_hot(y, 5).float() * 4 + torch.randn(30, 5, generator=g)
    noise = torch.randn(2, 30, 5, generator=g) * 4
    safe = make_combiner("safe_mix").fit(None, torch.cat([good[None], noise]), y)
    assert safe.choice_ == "single" and safe.single_wins_ == 5
    assert safe.weights_[1:].abs().sum() == 0


def test_fit_notes_record_fallback_and_choice(data) -> None:
    train, _ = data
    semi = make_combiner("semi_mix").fit(None, train.logits, train.y)
    assert "no unlabelled rows" in semi.fit_notes()["fallback"]
    safe = make_combiner("safe_mix").fit(None, train.logits, train.y)
    assert safe.fit_notes()["choice"] == safe.choice_ and "fallback" not in safe.fit_notes()
    assert make_combiner("mean_logits").fit(None, train.logits, train.y).fit_notes() == {}


def test_caruana_starts_from_the_best_backbone_and_counts_additions() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat(4)
    good = torch.nn.functional.one_hot(y, 5).float() * 3 + torch.randn(20, 5, generator=g)
    z = torch.stack(
        [torch.randn(20, 5, generator=g) * 3, good, good + torch.randn(20, 5, generator=g)]
    )
    car = make_combiner("caruana", rounds=6).fit(None, z, y)
    assert int(car.counts_.sum()) == 6 and car.counts_[1] >= 1 and car.counts_[0] == 0
    assert torch.allclose(car.weights_.sum(), torch.tensor(1.0))
