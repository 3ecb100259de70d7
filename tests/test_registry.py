"""Registry tiers and concept groups (issue 22): stable / experimental / deprecated aliases that
warn naming their replacement, groups named by concept, one-line errors for unknown ones."""

from __future__ import annotations

import warnings

import pytest

from clipfuse.combiners import (
    combiner_from_state,
    combiner_tier,
    expand_methods,
    list_combiners,
    make_combiner,
    method_groups,
    register_alias,
    registry,
)
from clipfuse.errors import DeprecatedNameWarning, FitError
from clipfuse.testing import synthetic_problem


def test_concept_groups_and_tiers_cover_every_name() -> None:
    groups = method_groups()
    concept = ["label-free", "weighted", "controllers", "heads", "compute", "transductive"]
    assert set(concept + ["core", "recommended", "all"]) <= set(groups)
    # every name has a concept, except the generic composition head_stack(head=, final=) and
    # auto, which chooses across concepts (weighted pools and heads)
    assert set().union(*(groups[g] for g in concept)) == set(groups["all"]) - {"head_stack", "auto"}
    stable, experimental = list_combiners(tier="stable"), list_combiners(tier="experimental")
    assert sorted(stable + experimental) == sorted(list_combiners())
    assert "transclip" in experimental and "safe_conf_mix" in stable
    assert groups["recommended"] == ["auto"] and combiner_tier("auto") == "stable"
    assert combiner_tier("safe_conf_mix") == "stable"
    assert list_combiners(group="transductive") == ["transclip"]
    assert all(make_combiner(n).transductive == (n == "transclip") for n in groups["all"])


def test_unknown_tier_group_or_name_is_one_line() -> None:
    for call, match in (
        (lambda: list_combiners(tier="beta"), "unknown tier 'beta'; known: stable, experimental"),
        (lambda: list_combiners(group="fusoin"), "unknown method group"),
        (lambda: make_combiner("safe_conf_mixx"), "unknown combiner"),
        (lambda: expand_methods(["nope"]), "unknown method"),
    ):
        with pytest.raises(FitError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_deprecated_group_warns_naming_the_replacement() -> None:
    with pytest.warns(DeprecatedNameWarning, match="group 'fusion' is deprecated; use 'weighted'"):
        names = expand_methods(["fusion"])
    assert "safe_conf_mix" in names and "transclip" in names and "nlc" not in names


def test_deprecated_alias_builds_the_replacement_and_warns(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_ALIASES", {})
    register_alias("average_logits", "mean_logits")
    assert list_combiners(tier="deprecated") == ["average_logits"]
    assert combiner_tier("average_logits") == "deprecated"
    with pytest.warns(
        DeprecatedNameWarning, match="'average_logits' is deprecated; use 'mean_logits'"
    ):
        comb = make_combiner("average_logits")
    assert comb.name == "mean_logits"
    features, logits, y = synthetic_problem()
    config = {**comb.fit(features, logits, y).config(), "name": "average_logits"}
    with pytest.warns(DeprecatedNameWarning):  # a file saved under the old name still loads
        assert combiner_from_state(config, {}).name == "mean_logits"
    with pytest.warns(DeprecatedNameWarning):
        assert expand_methods(["average_logits"]) == ["mean_logits"]


def test_cli_shows_a_deprecation_as_one_line(capsys) -> None:
    from clipfuse.cli import _warn_one_line

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        _warn_one_line(DeprecatedNameWarning("group 'fusion' is deprecated; use 'weighted'"),
                       DeprecatedNameWarning, "x.py", 1)  # fmt: skip
    err = capsys.readouterr().err
    assert err == "clipfuse: warning: group 'fusion' is deprecated; use 'weighted'\n"
