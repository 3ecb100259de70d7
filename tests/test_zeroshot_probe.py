"""Zero-shot-initialised probes (heads/zeroshot_probe.py) and zs_probe / zs_probe_nlc."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from beds import HEAD_STACK_FAST as FAST
from beds import accuracy, class_world
from synthetic import torch_threads

from clipfuse.combiners import combiner_from_state, make_combiner
from clipfuse.errors import FitError
from clipfuse.heads import LinearProbeHeads, ZeroShotProbeHeads


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


def test_a_huge_weight_decay_is_exactly_zero_shot() -> None:
    (f, z, y), (ft, zt, _) = class_world(shots=1, n_test=200)
    heads = ZeroShotProbeHeads({"default_weight_decay": 1e7}).fit(f, z, y, 10, seed=0)
    out = heads.logits(ft, zt)
    assert torch.allclose(out, zt, atol=1e-3)
    assert torch.equal(out.argmax(-1), zt.argmax(-1))


def test_residual_form_is_a_probe_started_at_the_text_weights_and_pulled_back_to_them() -> None:
    """Independent check (scipy, float64): the fitted head = argmin of mean CE(x V^T + c) +
    wd/(2C) (||V - s T||^2 + ||c||^2) over the full classifier V -- the docstring's claim."""
    optimize = pytest.importorskip("scipy.optimize")
    gen = torch.Generator().manual_seed(3)
    n, d, c, wd = 24, 5, 4, 0.3
    x = F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    text = 20 * F.normalize(torch.randn(c, d, generator=gen, dtype=torch.float64), dim=1)
    y = torch.arange(c).repeat(n // c)
    heads = ZeroShotProbeHeads({"weight_decays": [wd], "max_iter": 500})
    heads.fit([x.float()], (x @ text.T).float()[None], y, c, seed=0)
    ours = torch.softmax(heads.logits([x.float()], (x @ text.T).float()[None])[0], -1)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(theta, requires_grad=True)
        v, b = t[: c * d].view(c, d), t[c * d :]
        loss = F.cross_entropy(x @ v.T + b, y) + wd / (2 * c) * (
            (v - text).pow(2).sum() + b.pow(2).sum()
        )
        loss.backward()
        return float(loss.detach()), t.grad.numpy()

    start = np.concatenate([text.flatten().numpy(), np.zeros(c)])
    sol = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", tol=1e-12)
    v, b = torch.tensor(sol.x[: c * d]).view(c, d), torch.tensor(sol.x[c * d :])
    ref = torch.softmax(x @ v.T + b, -1)
    np.testing.assert_allclose(ours.double().numpy(), ref.numpy(), atol=2e-3)


def test_one_shot_stays_at_zero_shot_and_weaker_decay_moves_away() -> None:
    (f, z, y), (ft, zt, yt) = class_world(shots=1, n_test=600, seed=2)
    zs = ZeroShotProbeHeads().fit(f, z, y, 10, seed=0).logits(ft, zt)  # default decay, 1 shot
    for b in range(3):
        zero_shot = accuracy(zt[b].argmax(-1), yt)
        assert accuracy(zs[b].argmax(-1), yt) >= zero_shot - 0.01, b
    # the residual shrinks as the decay grows (and is what the head saves)
    norms = [
        float(ZeroShotProbeHeads({"default_weight_decay": wd}).fit(f, z, y, 10, 0).fitted_[0]["weight"].norm())
        for wd in (0.1, 3.0, 100.0)
    ]  # fmt: skip
    assert norms[0] > norms[1] > norms[2] > 0
    assert LinearProbeHeads.penalise_bias is False and ZeroShotProbeHeads.penalise_bias is True


def test_labels_move_the_probes_beyond_zero_shot_and_fit_notes_say_how() -> None:
    (f, z, y), (ft, zt, yt) = class_world(shots=8, n_test=400, seed=1)
    zero_shot = max(accuracy(zt[b].argmax(-1), yt) for b in range(3))
    for name, params in (("zs_probe", {}), ("zs_probe_nlc", FAST)):
        model = make_combiner(name, **params).fit(f, z, y)
        assert accuracy(model.predict(ft, zt), yt) > zero_shot + 0.05, name
        notes = model.fit_notes()
        assert notes["probe_selection"] == ["3-fold cross-validation"]
        assert len(notes["probe_weight_decays"]) == 3
        assert notes["controller_rows"].startswith("cross-fitted")
        back = combiner_from_state(model.config(), model.state_dict())
        assert torch.equal(back.predict_logits(ft, zt), model.predict_logits(ft, zt))
    (f1, z1, y1), _ = class_world(shots=1, n_test=1)
    notes = make_combiner("zs_probe").fit(f1, z1, y1).fit_notes()
    assert notes["probe_weight_decays"] == [30.0] * 3
    assert "fixed default" in notes["probe_selection"][0]
    assert notes["controller_rows"].startswith("in-sample")


def test_bad_parameters_fail_in_one_line() -> None:
    (f, z, y), _ = class_world(shots=2, n_test=1)
    with pytest.raises(FitError, match="zsprobe heads have no parameter"):
        make_combiner("zs_probe", head_params={"weight_decay": 1.0}).fit(f, z, y)
    with pytest.raises(FitError, match="zsprobe heads: weight_decays must be"):
        make_combiner("zs_probe_nlc", head_params={"weight_decays": []}).fit(f, z, y)
    with pytest.raises(FitError):
        make_combiner("zs_probe").fit(None, z, y)


def test_cli_fit_saves_zs_probe_and_predict_uses_it(tmp_path_factory, tmp_path) -> None:
    from beds import build_fusion_bed

    from clipfuse.cli import main
    from clipfuse.ensemble.predict import predict_images
    from clipfuse.ensemble.saved import SavedEnsemble

    bed = build_fusion_bed(tmp_path_factory)  # shared on-disk bed (tests/test_evaluate.py)
    out = tmp_path / "zs.safetensors"
    args = ["fit", *bed.data, "--train-split", "train", "--limit", "200", "--shots", "2",
            "--method", "zs_probe", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    saved = SavedEnsemble.load(out)
    assert saved.combiner.name == "zs_probe"
    assert saved.combiner.fit_notes()["probe_selection"] == ["3-fold cross-validation"]
    one = sorted((bed.folder / "test").rglob("*.jpg"))[0]  # inductive: a single new image
    predictions, failures = predict_images(saved, [str(one)], num_workers=0, progress=False)
    assert not failures and predictions[0]["label"] in saved.classnames
