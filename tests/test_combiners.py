"""Unit tests of every combiner: contract, hand-built cases, known parameters, saved state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from synthetic import SyntheticWorld, torch_threads

from clipfuse.combiners import (
    NLC,
    BestSingle,
    CalibratedMean,
    MajorityVote,
    MaxConfidence,
    MeanLogits,
    MeanProba,
    MixtureOfExperts,
    SuperLearner,
    combiner_from_state,
    list_combiners,
    make_combiner,
    oracle_accuracy,
    oracle_correct,
)
from clipfuse.combiners.gating import minibatches
from clipfuse.errors import FitError

# The combiners this module owns (the registry also holds other layers' combiners).
ALL = [
    "best_single",
    "mean_logits",
    "mean_proba",
    "majority_vote",
    "max_confidence",
    "calibrated_mean",
    "super_learner",
    "moe",
    "nlc",
    "shrunk_mix",
    "semi_mix",
    "safe_mix",
    "caruana",
]
LEARNED = [
    "calibrated_mean", "super_learner", "moe", "nlc", "shrunk_mix", "semi_mix", "safe_mix", "caruana"
]  # fmt: skip
FAST = {"moe": {"steps": 20}, "nlc": {"steps": 20}}  # contract tests need no converged controller


def fast(name: str, **params) -> object:
    return make_combiner(name, **{**FAST.get(name, {}), **params})


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data():
    world = SyntheticWorld(num_backbones=3, num_classes=5, feature_dims=(8, 12, 16), seed=3)
    return world.sample(3, seed=0), world.sample(n=40, seed=1)


def test_registry_names_and_errors() -> None:
    new = ("shrunk_mix", "semi_mix", "safe_mix", "caruana")  # issue 11's: registered later
    core = [n for n in ALL if n not in new]
    assert list_combiners()[: len(core)] == core  # other layers may register more after these
    assert set(ALL) <= set(list_combiners())
    assert list_combiners("*_proba") == ["mean_proba"]
    assert set(list_combiners("*mean*")) >= {"mean_logits", "mean_proba", "calibrated_mean"}
    assert isinstance(make_combiner("nlc", steps=7), NLC)
    assert make_combiner("nlc", steps=7).steps == 7
    with pytest.raises(FitError, match="unknown combiner 'nlcc'"):
        make_combiner("nlcc")
    with pytest.raises(FitError, match="no parameter 'step'"):
        make_combiner("nlc", step=7)


@pytest.mark.parametrize("name", ALL)
def test_shapes_probabilities_and_predict(name: str, data) -> None:
    train, test = data
    comb = fast(name).fit(train.features, train.logits, train.y)
    fused = comb.predict_logits(test.features, test.logits)
    proba = comb.predict_proba(test.features, test.logits)
    pred = comb.predict(test.features, test.logits)
    assert fused.shape == proba.shape == (40, 5)
    assert torch.isfinite(fused).all()
    assert torch.allclose(proba.sum(dim=1), torch.ones(40), atol=1e-5)
    assert (proba >= 0).all()
    assert pred.dtype == torch.int64 and pred.shape == (40,)
    assert torch.equal(pred, proba.argmax(dim=1))


@pytest.mark.parametrize("name", ALL)
def test_predict_before_fit_is_a_fit_error(name: str, data) -> None:
    _, test = data
    with pytest.raises(FitError, match="not fitted yet"):
        make_combiner(name).predict(test.features, test.logits)


@pytest.mark.parametrize("name", ALL)
def test_state_round_trip_through_safetensors_and_json(name: str, data, tmp_path) -> None:
    train, test = data
    comb = fast(name).fit(train.features, train.logits, train.y)
    save_file(comb.state_dict(), tmp_path / "state.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(comb.config()))
    config = json.loads((tmp_path / "config.json").read_text())
    rebuilt = combiner_from_state(config, load_file(tmp_path / "state.safetensors"))
    assert type(rebuilt) is type(comb) and rebuilt.get_params() == comb.get_params()
    assert torch.equal(
        rebuilt.predict_logits(test.features, test.logits),
        comb.predict_logits(test.features, test.logits),
    )


def test_input_errors_are_one_line_fit_errors(data) -> None:
    train, _ = data
    f, z, y = train.features, train.logits, train.y
    cases = [
        ((f, z[0], y), "shape \\(backbones, samples, classes\\)"),
        ((f[:2], z, y), "features for 2 backbones but logits for 3"),
        (([x[:-1] for x in f], z, y), "features\\[0\\] must have shape"),
        ((f, z, y[:-1]), "labels must have shape"),
        ((f, z, y + 5), "labels must lie in \\[0, 5\\)"),
        ((f, z, y.float()), "integer class indices"),
        ((f, z * float("nan"), y), "NaN or infinite"),
        ((None, z, y), "pass features="),
    ]
    for args, message in cases:
        with pytest.raises(FitError, match=message) as err:
            fast("nlc").fit(*args)
        assert "\n" not in str(err.value)


def test_predict_inputs_must_match_the_fitted_shapes(data) -> None:
    train, test = data
    nlc = fast("nlc").fit(train.features, train.logits, train.y)
    with pytest.raises(FitError, match="fitted on 3 backbones x 5 classes"):
        nlc.predict(test.features, test.logits[:, :, :4])
    with pytest.raises(FitError, match="fitted on feature dims"):
        nlc.predict([test.features[1], test.features[0], test.features[2]], test.logits)


@pytest.mark.parametrize("name", ALL)
def test_missing_class_only_blocks_learned_combiners(name: str, data) -> None:
    train, _ = data
    keep = train.y != 4
    args = ([x[keep] for x in train.features], train.logits[:, keep], train.y[keep])
    if name in LEARNED:
        with pytest.raises(FitError, match="1 of 5 classes have fewer \\(classes 4\\)"):
            fast(name).fit(*args)
    else:
        fast(name).fit(*args)


def test_numpy_float16_read_only_inputs_are_accepted(data) -> None:
    train, test = data
    ro = [x.numpy().astype(np.float16) for x in train.features]
    for a in ro:
        a.setflags(write=False)
    nlc = fast("nlc").fit(ro, train.logits.numpy(), train.y.numpy())
    assert nlc.predict(test.features, test.logits).shape == (40,)


def test_majority_vote_hand_built() -> None:
    # Backbones 0 and 1 vote class 2; backbone 2 votes class 0 very confidently, which would
    # win a mean of logits -- the vote must not care.
    z = torch.tensor([[[0.0, 1.0, 2.0]], [[0.0, 0.5, 1.0]], [[30.0, 0.0, 0.0]]])
    vote = MajorityVote().fit(None, z, torch.tensor([2]))
    assert vote.predict(None, z).item() == 2
    assert MeanLogits().fit(None, z, torch.tensor([2])).predict(None, z).item() == 0
    p_bar = torch.softmax(z, dim=-1).mean(dim=0)
    expected = (torch.tensor([[1.0, 0.0, 2.0]]) + 0.5 * p_bar) / 3.5
    assert torch.allclose(vote.predict_proba(None, z), expected, atol=1e-6)
    # A 1-1 tie: the class with the larger summed probability wins.
    tie = torch.tensor([[[3.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])
    assert MajorityVote().fit(None, tie, torch.tensor([0])).predict(None, tie).item() == 0
    assert (
        MajorityVote().fit(None, tie.flip(-1), torch.tensor([0])).predict(None, tie.flip(-1)).item()
        == 2
    )


def test_mean_proba_and_max_confidence_hand_built() -> None:
    z = torch.tensor([[[2.0, 0.0, 0.0]], [[0.0, 0.0, 9.0]]])
    y = torch.tensor([0])
    expected = torch.softmax(z, dim=-1).mean(dim=0)
    assert torch.allclose(MeanProba().fit(None, z, y).predict_proba(None, z), expected, atol=1e-6)
    assert torch.equal(MaxConfidence().fit(None, z, y).predict_logits(None, z), z[1])


def test_best_single_chooses_on_holdout_and_breaks_ties_by_nll() -> None:
    y = torch.tensor([0, 1, 2, 0])
    good = torch.nn.functional.one_hot(y, 3).float() * 4  # all right
    bad = torch.nn.functional.one_hot((y + 1) % 3, 3).float() * 4  # all wrong
    best = BestSingle().fit(None, torch.stack([bad, good, bad]), y)
    assert best.chosen_ == 1
    assert best.holdout_accuracy_.tolist() == [0.0, 1.0, 0.0]
    # Equal accuracy: the sharper correct backbone (lower NLL) wins.
    assert BestSingle().fit(None, torch.stack([good, 3 * good]), y).chosen_ == 1


def test_calibrated_mean_recovers_known_temperatures() -> None:
    gen = torch.Generator().manual_seed(0)
    base = 3 * torch.randn(6000, 10, generator=gen)  # calibrated logits: y ~ softmax(base)
    y = torch.multinomial(torch.softmax(base, dim=-1), 1, generator=gen).squeeze(1)
    true_t = torch.tensor([2.0, 0.5])
    z = torch.stack([base * t for t in true_t])  # backbone b is calibrated at T_b
    cal = CalibratedMean().fit(None, z, y)
    assert torch.allclose(cal.temperatures_, true_t, rtol=0.08)


def test_super_learner_weights_favour_the_informative_backbone() -> None:
    world = SyntheticWorld(num_backbones=2, p_competent_in_region=0.9, p_competent_elsewhere=0.9)
    split = world.sample(20, seed=0)
    noise = torch.randn(split.logits[0].shape, generator=torch.Generator().manual_seed(1)) * 2
    z = torch.stack([split.logits[0], noise])
    sl = SuperLearner().fit(None, z, split.y)
    assert (sl.weights_ >= 0).all()
    assert sl.weights_[0] > 10 * sl.weights_[1]


@pytest.mark.parametrize("positivity", ["softplus", "exp"])
def test_nlc_starts_from_the_plain_logit_sum(positivity: str, data) -> None:
    train, test = data
    nlc = NLC(steps=1, lr=1e-12, positivity=positivity).fit(train.features, train.logits, train.y)
    t = nlc.predict_temperatures(test.features)
    assert t.shape == (40, 3)
    assert torch.allclose(t, torch.ones_like(t), atol=1e-6)
    fused = nlc.predict_logits(test.features, test.logits)
    assert torch.allclose(fused, test.logits.sum(dim=0), rtol=1e-5)
    moe = MixtureOfExperts(steps=1, lr=1e-12).fit(train.features, train.logits, train.y)
    assert torch.allclose(moe.predict_gates(test.features), torch.full((40, 3), 1 / 3), atol=1e-6)


def test_nlc_is_deterministic_per_seed_and_leaves_global_rng_alone(data) -> None:
    train, _ = data
    rng = torch.random.get_rng_state()
    a = NLC(steps=30, batch_size=4, seed=1).fit(train.features, train.logits, train.y)
    b = NLC(steps=30, batch_size=4, seed=1).fit(train.features, train.logits, train.y)
    c = NLC(steps=30, batch_size=4, seed=2).fit(train.features, train.logits, train.y)
    assert torch.equal(torch.random.get_rng_state(), rng)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["mlp.0.weight"], sc["mlp.0.weight"])


def test_nlc_input_normalisation_switch(data) -> None:
    train, test = data
    scaled = [test.features[0] * 10, *test.features[1:]]
    on = NLC(steps=50).fit(train.features, train.logits, train.y)
    assert torch.allclose(on.predict_temperatures(scaled), on.predict_temperatures(test.features))
    off = NLC(steps=50, normalize_inputs=False).fit(train.features, train.logits, train.y)
    assert not torch.allclose(
        off.predict_temperatures(scaled), off.predict_temperatures(test.features)
    )


def test_bad_parameters_fail_at_fit(data) -> None:
    train, _ = data
    for comb, message in [
        (NLC(positivity="relu"), "positivity must be one of"),
        (NLC(steps=0), "steps must be >= 1"),
        (NLC(eps=0.0), "eps must be in"),
        (CalibratedMean(max_iter=0), "max_iter must be >= 1"),
    ]:
        with pytest.raises(FitError, match=message):
            comb.fit(train.features, train.logits, train.y)


def test_get_set_params() -> None:
    nlc = NLC()
    params = nlc.get_params()
    assert params["hidden"] == 128 and params["lr"] == 2e-4 and params["weight_decay"] == 0.01
    assert nlc.set_params(hidden=16) is nlc and nlc.hidden == 16
    assert NLC(**{**params, "hidden": 16}).get_params() == nlc.get_params()
    assert "hidden=16" in repr(nlc)
    assert make_combiner("mean_logits").config()["fitted"] is None


def test_oracle_hand_built() -> None:
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    y = torch.tensor([1, 1, 0])
    assert oracle_correct(z, y).tolist() == [True, False, False]
    assert oracle_accuracy(z, y) == pytest.approx(1 / 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_runs_on_gpu_and_reloads_on_cpu(name: str, data) -> None:
    train, test = data
    comb = fast(name, device="cuda").fit(train.features, train.logits, train.y)
    fused = comb.predict_logits(test.features, test.logits)
    assert fused.device.type == "cuda"
    cpu = combiner_from_state(comb.config(), comb.state_dict(), device="cpu")
    assert torch.allclose(cpu.predict_logits(test.features, test.logits), fused.cpu(), atol=1e-3)


def test_minibatches_cover_every_example_and_keep_the_short_batch() -> None:
    batches = list(minibatches(10, 4, 6, seed=0))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    for epoch in (batches[:3], batches[3:]):
        assert sorted(torch.cat(epoch).tolist()) == list(range(10))
    assert list(minibatches(3, 4, 2, seed=0)) == [None, None]
