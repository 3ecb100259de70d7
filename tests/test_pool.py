"""The weighted pool (issue 22): presets keep their names and parameters, the backbones a fit
gives weight 0 are never loaded, and files saved by the classes it replaced still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clipfuse
from clipfuse.backbones import list_backbones
from clipfuse.combiners import WeightedPool, combiner_from_state, make_combiner
from clipfuse.combiners.base import STATE_FORMAT_VERSION
from clipfuse.errors import FitError
from clipfuse.testing import synthetic_problem

POOLED = ["best_single", "calibrated_mean", "super_learner", "shrunk_mix", "semi_mix",
          "conf_mix", "safe_mix", "safe_conf_mix", "caruana"]  # fmt: skip


@pytest.mark.parametrize("name", POOLED)
def test_every_pooled_name_is_a_weighted_pool_preset(name: str) -> None:
    comb = make_combiner(name)
    assert isinstance(comb, WeightedPool) and comb.name == name
    features, logits, y = synthetic_problem()
    comb.fit(features, logits, y)
    fused = torch.einsum("b,bnc->nc", comb.weights_, logits)
    torch.testing.assert_close(comb.predict_logits(features, logits), fused)
    assert comb.required_backbones() == torch.nonzero(comb.weights_).flatten().tolist()
    again = combiner_from_state(comb.config(), comb.state_dict())
    assert torch.equal(again.predict_logits(features, logits), comb.predict_logits(features, logits))
    assert again.fit_notes() == comb.fit_notes()


def test_parameters_are_kept_and_checked() -> None:
    assert make_combiner("safe_conf_mix").get_params() == {
        "shrinkage": 3.0, "tau": 0.03, "max_prior_ratio": 20.0, "folds": 5,
        "required_wins": 5, "seed": 0, "max_iter": 100, "device": "cpu",
    }  # fmt: skip
    with pytest.raises(FitError, match="no parameter"):
        make_combiner("caruana", shrinkage=1.0)
    features, logits, y = synthetic_problem()
    with pytest.raises(FitError, match="required_wins must be in"):
        make_combiner("safe_mix", required_wins=9).fit(features, logits, y)


def test_a_single_backbone_fit_requires_only_that_backbone() -> None:
    """Before issue 22, best_single required [0, 1, 2] while it read one backbone."""
    features, logits, y = synthetic_problem()
    best = make_combiner("best_single").fit(features, logits, y)
    assert best.required_backbones() == [best.chosen_backbone()]
    safe = make_combiner("safe_mix", folds=2, required_wins=1)
    logits = logits.clone()
    noise = torch.Generator().manual_seed(1)  # seeded: the global RNG depends on test order
    logits[1:] = torch.randn(logits[1:].shape, generator=noise)  # only backbone 0 knows anything
    safe.fit(features, logits, y)
    assert safe.choice_ == "single" and safe.required_backbones() == [0]
    # the other backbones' logits are never read: garbage there changes nothing
    noisy = logits.clone()
    noisy[1:] = float("nan")
    assert torch.equal(safe.predict(features, noisy), safe.predict(features, logits))


def test_files_saved_before_the_pool_still_load() -> None:
    """Old state formats: best_single (chosen), calibrated_mean (temperatures), caruana (counts)."""
    features, logits, y = synthetic_problem()
    b = logits.shape[0]
    t = torch.tensor([0.5, 2.0, 1.0])
    counts = torch.tensor([3.0, 0.0, 1.0])
    old = {
        "best_single": ({"chosen": 2}, {"holdout_accuracy": torch.ones(b), "holdout_nll": t},
                        logits[2]),
        "calibrated_mean": ({"holdout_nll": 1.0}, {"temperatures": t},
                            (logits / t.view(-1, 1, 1)).mean(0)),
        "caruana": ({"holdout_nll": 1.0}, {"counts": counts},
                    torch.einsum("b,bnc->nc", counts / 4, logits)),
    }  # fmt: skip
    for name, (meta, tensors, expected) in old.items():
        params = make_combiner(name).get_params(deep=False)
        fitted = {"num_backbones": b, "num_classes": logits.shape[2], "feature_dims": None, **meta}
        config = {"format_version": STATE_FORMAT_VERSION, "name": name, "params": params,
                  "fitted": fitted}  # fmt: skip
        comb = combiner_from_state(config, tensors)
        torch.testing.assert_close(comb.predict_logits(None, logits), expected)


@pytest.mark.skipif(not list_backbones("zoo:*"), reason="no zoo weights shipped")
def test_saved_single_backbone_ensemble_loads_one_backbone(tmp_path, monkeypatch) -> None:
    from clipfuse.ensemble import predict as predict_mod

    source = clipfuse.demo_source("cifar10")
    specs = ["zoo:rn-tiny", "zoo:vit-p4"]
    train = clipfuse.load_views(specs, source, splits="train", store=tmp_path, limit=40)
    ens = clipfuse.fit_ensemble(train, "best_single", shots=2, seed=0)
    path = ens.save(tmp_path / "best.safetensors")
    loaded = clipfuse.load_ensemble(path)
    chosen = loaded.combiner.chosen_backbone()
    assert predict_mod.needed_backbones(loaded) == [chosen]
    asked: list = []
    real = type(loaded).load_backbones
    monkeypatch.setattr(type(loaded), "load_backbones",
                        lambda self, **kw: asked.append(kw["only"]) or real(self, **kw))  # fmt: skip
    paths = []
    for i in range(3):  # any RGB images will do: the test is about what gets loaded
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(paths[-1])
    records = loaded.predict(paths)
    assert asked == [[chosen]] and len(records) == 3


def test_head_stack_composes_objects_and_saves() -> None:
    from clipfuse.heads.linear import LinearProbeHeads

    features, logits, y = synthetic_problem()
    stack = make_combiner("head_stack", head=LinearProbeHeads({"max_iter": 20}),
                          final=make_combiner("shrunk_mix", shrinkage=2.0))  # fmt: skip
    assert stack.get_params(deep=False)["final"] == {
        "name": "shrunk_mix", "params": {"shrinkage": 2.0, "max_iter": 100}}  # fmt: skip
    stack.fit(features, logits, y)
    assert stack.inner_.name == "shrunk_mix" and stack.heads_.kind == "linear"
    again = combiner_from_state(stack.config(), stack.state_dict())
    torch.testing.assert_close(again.predict_logits(features, logits),
                               stack.predict_logits(features, logits))  # fmt: skip
    # the same as the registered preset that names its parts
    preset = make_combiner("lp_super_learner", head_params={"max_iter": 20})
    composed = make_combiner("head_stack", head=LinearProbeHeads({"max_iter": 20}),
                             final=make_combiner("super_learner"))  # fmt: skip
    torch.testing.assert_close(
        preset.fit(features, logits, y).predict_logits(features, logits),
        composed.fit(features, logits, y).predict_logits(features, logits),
    )
    with pytest.raises(FitError, match="unknown head kind"):
        make_combiner("head_stack", head={"kind": "nope"}).fit(features, logits, y)


def test_cascade_and_subset_take_a_controller_object() -> None:
    features, logits, y = synthetic_problem(per_class=8)
    costs = {"gflops": [1.0, 2.0, 3.0]}
    by_object = make_combiner("cascade", controller=make_combiner("moe", steps=20), **costs)
    assert by_object.controller == "moe" and by_object.controller_params["steps"] == 20
    by_name = make_combiner("cascade", controller="moe", controller_params={"steps": 20}, **costs)
    torch.testing.assert_close(
        by_object.fit(features, logits, y).predict_logits(features, logits),
        by_name.fit(features, logits, y).predict_logits(features, logits),
    )
    again = combiner_from_state(by_object.config(), by_object.state_dict())
    assert again.controller == "moe"
    sub = make_combiner("subset_nlc", controller=make_combiner("nlc", steps=20), budget_gflops=3.0,
                        **costs)  # fmt: skip
    assert sub.fit(features, logits, y).inner_.get_params()["steps"] == 20
