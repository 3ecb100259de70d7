"""The combiner contract as a check anyone can run (scikit-learn's ``check_estimator`` idea).

``check_combiner("nlc")`` (or a Combiner instance) fits it on a small seeded synthetic problem
and asserts the contract of ARCHITECTURE.md: parameters stored and introspected, ``clone``,
``NotFittedError`` before ``fit``, ``fit`` returns self and leaves parameters alone, output
shapes and probabilities, ``score``, saved state that rebuilds the same predictions, and loud
errors for unknown parameters and mismatched inputs. The project's own suite runs it over
every registered combiner; a plugin combiner can run it in its own tests.
"""

from __future__ import annotations

from typing import Any

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import combiner_from_state, make_combiner
from clipfuse.errors import FitError, NotFittedError

# Parameter names (at any depth) that set how long a fit runs, and a short value for each.
_SHORT_RUNS = {"steps": 40, "epochs": 2, "max_iter": 25}


def synthetic_problem(
    *,
    num_backbones: int = 3,
    num_classes: int = 4,
    per_class: int = 6,
    dims: tuple[int, ...] = (6, 8, 10),
    seed: int = 0,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """(features, logits, labels): B backbones of unit-norm features around class prototypes,
    each backbone with its own noise level, zero-shot logits against those prototypes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    features, logits = [], []
    for b in range(num_backbones):
        d = dims[b % len(dims)]
        protos = torch.nn.functional.normalize(torch.randn(num_classes, d, generator=g), dim=1)
        noise = 0.6 + 0.4 * b
        f = protos[y] + noise * torch.randn(len(y), d, generator=g) / d**0.5
        f = torch.nn.functional.normalize(f, dim=1)
        features.append(f)
        logits.append(20.0 * f @ protos.T)
    return features, torch.stack(logits), y


def short_run_params(combiner: Combiner) -> dict[str, Any]:
    """Parameters that make a fit quick (fewer steps/epochs/iterations), found by name."""
    out: dict[str, Any] = {}
    for key in combiner.get_params(deep=True):
        leaf = key.rsplit("__", 1)[-1]
        if leaf in _SHORT_RUNS:
            out[key] = _SHORT_RUNS[leaf]
    return out


def check_combiner(combiner: str | Combiner, **params: Any) -> Combiner:
    """Run every contract check on ``combiner`` (a registered name or an unfitted instance);
    AssertionError names the broken rule. Returns the fitted combiner."""
    est = make_combiner(combiner) if isinstance(combiner, str) else combiner
    est.set_params(**{**short_run_params(est), **params})
    name = type(est).__name__
    features, logits, y = synthetic_problem()
    b, n, c = logits.shape

    # parameters: introspected from __init__, a clone has them all and nothing fitted
    shallow = est.get_params(deep=False)
    assert list(shallow) == type(est)._param_names(), f"{name}: get_params != __init__ params"
    deep = est.get_params(deep=True)
    assert set(shallow) <= set(deep), f"{name}: deep params must include the shallow ones"
    twin = est.clone()
    assert type(twin) is type(est) and twin.get_params(deep=False) == shallow, f"{name}: clone"
    assert not twin.is_fitted, f"{name}: a clone must not be fitted"
    nested = {k: v for k, v in deep.items() if "__" in k}
    routed = est.clone().set_params(**nested).get_params(deep=True)
    assert {k: v for k, v in routed.items() if "__" in k} == nested, (
        f"{name}: set_params(prefix__name=...) must route back to get_params(deep=True)"
    )
    try:
        est.clone().set_params(no_such_parameter=1)
    except FitError:
        pass
    else:
        raise AssertionError(f"{name}: an unknown parameter must raise FitError")

    # not fitted: NotFittedError, which is also a ValueError (scikit-learn)
    for call in (
        lambda: twin.predict(features, logits),
        lambda: twin.score(features, logits, y),
        twin.state_dict,
    ):
        try:
            call()
        except NotFittedError as exc:
            assert isinstance(exc, ValueError), f"{name}: NotFittedError must be a ValueError"
        else:
            raise AssertionError(f"{name}: using an unfitted combiner must raise NotFittedError")

    # fit returns self and does not touch the parameters
    before = est.get_params(deep=True)
    assert est.fit(features, logits, y) is est, f"{name}: fit must return self"
    assert est.is_fitted, f"{name}: fitted flag"
    assert est.get_params(deep=True) == before, f"{name}: fit changed its parameters"

    # outputs
    z = est.predict_logits(features, logits)
    assert tuple(z.shape) == (n, c), f"{name}: predict_logits shape {tuple(z.shape)}"
    p = est.predict_proba(features, logits)
    assert torch.allclose(p.sum(dim=1), torch.ones(n), atol=1e-4), f"{name}: proba rows"
    pred = est.predict(features, logits)
    assert pred.dtype == torch.int64 and tuple(pred.shape) == (n,), f"{name}: predict dtype"
    assert torch.equal(pred, z.argmax(dim=1)), f"{name}: predict != argmax(predict_logits)"
    acc = est.score(features, logits, y)
    assert abs(acc - int((pred.cpu() == y).sum()) / n) < 1e-12, f"{name}: score"
    required = est.required_backbones()
    assert required and set(required) <= set(range(b)), f"{name}: required_backbones"
    if est.has_temperatures:
        t = est.predict_temperatures(features)
        assert tuple(t.shape) == (n, b) and bool((t > 0).all()), f"{name}: temperatures"

    # saved state: JSON config + tensors rebuild the same predictions
    rebuilt = combiner_from_state(est.config(), est.state_dict())
    assert type(rebuilt) is type(est), f"{name}: rebuilt type"
    assert torch.allclose(rebuilt.predict_logits(features, logits), z, atol=1e-5), (
        f"{name}: a rebuilt combiner predicts differently"
    )

    # mismatched inputs after fit fail loudly
    try:
        est.predict(features[:-1], logits[:-1])
    except FitError:
        pass
    else:
        raise AssertionError(f"{name}: fewer backbones than fitted must raise FitError")
    assert not est.clone().is_fitted, f"{name}: clone of a fitted combiner must be unfitted"
    return est
