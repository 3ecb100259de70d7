"""Complementarity analysis and CKA, checked against independent straightforward implementations."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from clipfuse.analysis import (
    ComplementarityAccumulator,
    ComplementarityResult,
    analyze_complementarity,
    cka_matrix,
    complementarity_from_predictions,
    diversity_gain_correlation,
    linear_cka,
    pairwise_js_divergence,
    unbiased_hsic_matrix,
)
from clipfuse.errors import DataError


def _features(n: int, dims: list[int], seed: int = 0, offset: float = 0.0) -> list[torch.Tensor]:
    """Backbone-like features sharing a latent factor (so CKA is strictly between 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 8, generator=g)
    out = []
    for d in dims:
        x = latent @ torch.randn(8, d, generator=g) + torch.randn(n, d, generator=g)
        out.append(x + offset)
    return out


def _logits_from_preds(preds: list[list[int]], n_classes: int) -> torch.Tensor:
    """(B, N, C) logits whose argmax is exactly ``preds``."""
    p = torch.tensor(preds)
    return torch.nn.functional.one_hot(p, n_classes).float() * 5.0


# --- CKA ---------------------------------------------------------------------------------------


def _cka_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from the HSIC definition: tr(K H L H) with Gram matrices and H = I - 11'/n."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h))

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("method", ["exact", "minibatch"])
def test_cka_of_identical_representations_is_one(method: str) -> None:
    (x,) = _features(400, [24])
    assert linear_cka(x, x, method=method, batch_size=100) == pytest.approx(1.0, abs=1e-6)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling() -> None:
    x, z = _features(300, [16, 20], seed=1)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(2)))
    xq = 3.7 * (x @ q)
    assert linear_cka(x, xq) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(xq, z) == pytest.approx(linear_cka(x, z), abs=1e-6)
    # Not invariant to a non-isotropic scaling: the property is specific, not vacuous.
    stretched = x * torch.linspace(0.1, 10.0, 16)
    assert abs(linear_cka(stretched, z) - linear_cka(x, z)) > 1e-3


def test_exact_cka_matches_hsic_definition_in_chunks_and_on_float16_memmap(tmp_path) -> None:
    feats = _features(150, [12, 30, 7], seed=3, offset=2.0)
    ref = np.array([[_cka_reference(a.numpy(), b.numpy()) for b in feats] for a in feats])
    got = cka_matrix(feats, ["a", "b", "c"], chunk_size=17)
    np.testing.assert_allclose(got.matrix, ref, atol=1e-6)
    assert got.backbones == ["a", "b", "c"] and got.method == "exact"
    # The feature store hands out float16 memmaps: same answer up to float16 rounding.
    maps = []
    for i, f in enumerate(feats):
        m = np.lib.format.open_memmap(tmp_path / f"f{i}.npy", "w+", np.float16, tuple(f.shape))
        m[:] = f.numpy()
        maps.append(m)
    np.testing.assert_allclose(cka_matrix(maps, chunk_size=40).matrix, ref, atol=2e-3)


def _hsic_u_statistic(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC as the U-statistic over ordered distinct 4-tuples (Song et al. 2012)."""
    m = k.shape[0]
    total = 0.0
    tuples = list(itertools.permutations(range(m), 4))
    for i, j, q, r in tuples:
        total += k[i, j] * l_[i, j] + k[i, j] * l_[q, r] - 2.0 * k[i, j] * l_[i, q]
    return total / len(tuples)


def test_unbiased_hsic_matches_u_statistic_definition() -> None:
    feats = _features(7, [3, 5], seed=4)
    grams = torch.stack([f @ f.T for f in feats]).double()
    got = unbiased_hsic_matrix(grams)
    k, l_ = grams[0].numpy(), grams[1].numpy()
    assert float(got[0, 1]) == pytest.approx(_hsic_u_statistic(k, l_), rel=1e-9)
    assert float(got[0, 0]) == pytest.approx(_hsic_u_statistic(k, k), rel=1e-9)
    assert torch.allclose(got, got.T)


def test_minibatch_cka_close_to_exact_on_large_n() -> None:
    # A large shared offset: per-minibatch centring must keep float32 cancellation away.
    feats = _features(16000, [32, 48, 16], seed=5, offset=10.0)
    exact = cka_matrix(feats, method="exact").matrix
    mini = cka_matrix(feats, method="minibatch", batch_size=500, seed=0)
    assert mini.n_batches == 32 and mini.batch_size == 500
    np.testing.assert_allclose(mini.matrix, exact, atol=0.02)
    off_diag = exact[~np.eye(3, dtype=bool)]
    assert np.all((off_diag > 0.1) & (off_diag < 0.95))  # a non-trivial comparison


def test_auto_cka_is_exact_while_cheap(monkeypatch) -> None:
    from clipfuse.analysis import cka as cka_module

    feats = _features(300, [8, 12], seed=6)
    assert cka_matrix(feats).method == "exact"
    monkeypatch.setattr(cka_module, "AUTO_EXACT_MAX_MACS", 300 * (8 * 8 + 8 * 12 + 12 * 12) - 1)
    auto = cka_matrix(feats, batch_size=100)
    assert auto.method == "minibatch" and auto.n_batches == 3


def test_cka_rejects_unusable_inputs() -> None:
    x, y = _features(50, [4, 4])
    with pytest.raises(DataError, match="sample counts"):
        cka_matrix([x, y[:40]])
    with pytest.raises(DataError, match="constant"):
        cka_matrix([x, torch.ones(50, 3)])
    with pytest.raises(DataError, match="unknown CKA method"):
        cka_matrix([x, y], method="svcca")  # type: ignore[arg-type]


# --- complementarity ---------------------------------------------------------------------------

# Hand-built: 3 backbones, 6 samples, 4 classes.
Y = [0, 1, 2, 3, 0, 1]
PREDS = [
    [0, 1, 2, 0, 1, 2],  # a: right on 0, 1, 2
    [0, 1, 0, 3, 1, 3],  # b: right on 0, 1, 3
    [0, 2, 1, 0, 2, 1],  # c: right on 0, 5
]


def test_hand_built_accuracy_oracle_overlap_and_intersections() -> None:
    r = analyze_complementarity(_logits_from_preds(PREDS, 4), torch.tensor(Y), ["a", "b", "c"])
    np.testing.assert_allclose(r.accuracy, [3 / 6, 3 / 6, 2 / 6])
    assert r.oracle_accuracy == pytest.approx(5 / 6)  # sample 4 nobody gets right
    assert r.best_backbone == "a" and r.oracle_gap == pytest.approx(2 / 6)
    # agreement: a-b equal on samples 0, 1, 4; a-c on 0, 3; b-c on 0
    np.testing.assert_allclose(
        r.agreement, [[1, 3 / 6, 2 / 6], [3 / 6, 1, 1 / 6], [2 / 6, 1 / 6, 1]]
    )
    # both wrong: a-b {4, 5}, a-c {3, 4}, b-c {2, 4}; diagonal = error rate
    np.testing.assert_allclose(
        r.error_overlap, [[3 / 6, 2 / 6, 2 / 6], [2 / 6, 3 / 6, 2 / 6], [2 / 6, 2 / 6, 4 / 6]]
    )
    assert [idx.tolist() for idx in r.unique_correct] == [[2], [3], [5]]
    assert r.unique_correct_count.tolist() == [1, 1, 1]
    assert dict(r.intersections) == {
        (True, True, True): 1,
        (True, True, False): 1,
        (True, False, False): 1,
        (False, True, False): 1,
        (False, False, True): 1,
        (False, False, False): 1,
    }
    assert r.mean_disagreement == pytest.approx(1 - (3 / 6 + 2 / 6 + 1 / 6) / 3)


def test_intersections_sorted_and_sum_to_n() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (500,), generator=g)
    preds = torch.randint(0, 3, (4, 500), generator=g)
    r = complementarity_from_predictions(preds, y)
    counts = [c for _, c in r.intersections]
    assert sum(counts) == 500 and counts == sorted(counts, reverse=True)
    correct = (preds == y).numpy()
    for pattern, count in r.intersections:
        assert count == int(np.all(correct == np.asarray(pattern)[:, None], axis=0).sum())


def test_agreement_matches_double_loop_and_chunking_changes_nothing(tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 300, 6, generator=g)
    logits[1] += 0.8 * logits[0]  # correlated backbones
    y = torch.randint(0, 6, (300,), generator=g)
    whole = analyze_complementarity(logits, y, chunk_size=300)
    preds = logits.argmax(-1).numpy()
    loop = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            loop[i, j] = sum(preds[i, n] == preds[j, n] for n in range(300)) / 300
    np.testing.assert_allclose(whole.agreement, loop)
    chunked = analyze_complementarity(logits, y, chunk_size=37)
    mm = np.lib.format.open_memmap(tmp_path / "z.npy", "w+", np.float32, (4, 300, 6))
    mm[:] = logits.numpy()
    streamed = ComplementarityAccumulator()
    for s in range(0, 300, 64):
        streamed.update(mm[:, s : s + 64], y[s : s + 64])
    for other in (chunked, streamed.result()):
        np.testing.assert_allclose(other.agreement, whole.agreement)
        np.testing.assert_allclose(other.js_divergence, whole.js_divergence, atol=1e-9)
        assert other.intersections == whole.intersections


def test_js_divergence_symmetric_zero_for_identical_and_matches_scipy() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 200, 5, generator=g) * 2
    logits[2] = logits[0]  # identical outputs
    js = pairwise_js_divergence(logits, chunk_size=33).numpy()
    np.testing.assert_allclose(js, js.T)
    assert js[0, 2] == pytest.approx(0.0, abs=1e-7) and np.all(np.diag(js) == 0)
    p = torch.softmax(logits.double(), -1).numpy()
    ref = np.mean([jensenshannon(p[0, n], p[1, n], base=2) ** 2 for n in range(200)])
    assert js[0, 1] == pytest.approx(ref, rel=1e-4)
    # Confident predictions on different classes: the bound of 1 bit.
    opposed = torch.tensor([[[50.0, 0.0]], [[0.0, 50.0]]])
    assert pairwise_js_divergence(opposed)[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_result_round_trips_through_json() -> None:
    r = analyze_complementarity(_logits_from_preds(PREDS, 4), torch.tensor(Y), ["a", "b", "c"])
    back = ComplementarityResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.intersections == r.intersections and back.backbones == r.backbones
    np.testing.assert_allclose(back.js_divergence, r.js_divergence)
    assert [i.tolist() for i in back.unique_correct] == [i.tolist() for i in r.unique_correct]
    slim = ComplementarityResult.from_dict(r.to_dict(include_indices=False))
    assert slim.unique_correct is None and slim.unique_correct_count.tolist() == [1, 1, 1]


def test_complementarity_rejects_mismatched_inputs() -> None:
    logits = torch.randn(2, 10, 3)
    with pytest.raises(DataError, match="labels"):
        analyze_complementarity(logits, torch.zeros(9, dtype=torch.long))
    with pytest.raises(DataError, match="names"):
        analyze_complementarity(logits, torch.zeros(10, dtype=torch.long), ["only-one"])
    with pytest.raises(DataError, match="shape"):
        analyze_complementarity(torch.randn(10, 3), torch.zeros(10, dtype=torch.long))


# --- diversity vs gain -------------------------------------------------------------------------


def test_diversity_gain_correlation() -> None:
    diversity = {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.5, "ignored": 0.9}
    gain = {k: float(np.exp(5 * v)) for k, v in diversity.items() if k != "ignored"}
    c = diversity_gain_correlation(diversity, gain)
    assert c.datasets == ["a", "b", "c", "d"] and c.n == 4
    assert c.spearman_rho == pytest.approx(1.0)  # monotone: perfect rank correlation
    x, g = np.array([0.1, 0.3, 0.2, 0.5]), np.array([gain[k] for k in "abcd"])
    assert c.pearson_r == pytest.approx(np.corrcoef(x, g)[0, 1]) and c.pearson_r < 0.999
    with pytest.raises(DataError, match=">= 3 datasets"):
        diversity_gain_correlation({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 3.0})
