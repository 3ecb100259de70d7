"""The Python API takes what users hold: a saved ensemble predicts on a path, a list of paths, a
folder, PIL images and uint8 arrays (one image or a batch) with the same answers; it has
``predict_proba``, ``score`` and ``classes_``; combiners give numpy to numpy callers and tensors to
tensor callers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import clipfuse
from clipfuse.combiners import make_combiner
from clipfuse.data import open_dataset
from clipfuse.errors import DataError

N = 8  # demo test images predicted on


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """A calibrated mean of the smallest zoo backbone, fitted on 60 shipped demo images."""
    store = tmp_path_factory.mktemp("api-store")
    source = clipfuse.demo_source("fashion-mnist")
    train = clipfuse.load_views(["zoo:rn-tiny"], source, splits="train", store=store, limit=60)
    path = clipfuse.fit_ensemble(train, "calibrated_mean", shots=2, seed=0).save(
        store / "ens.safetensors"
    )
    return clipfuse.load_ensemble(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """N demo test images: (PIL images, their labels, their files in one folder)."""
    dataset = open_dataset(clipfuse.demo_source("fashion-mnist"), "test").subset(N)
    pil = [dataset.load_image(k) for k in range(N)]
    folder = tmp_path_factory.mktemp("api-images")
    for k, image in enumerate(pil):
        image.save(folder / f"{k:02d}.png")
    return pil, dataset.labels.copy(), folder


def same(a: dict, b: dict) -> None:
    assert a["label"] == b["label"]
    assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_predict_takes_a_path_a_list_pil_and_arrays(ensemble, images):
    pil, _, folder = images
    files = sorted(folder.glob("*.png"))
    reference = ensemble.predict([str(f) for f in files])
    assert [r["image"] for r in reference] == [str(f) for f in files]
    one = ensemble.predict(str(files[0]))  # a single string is one path, not its characters
    assert len(one) == 1 and one[0]["image"] == str(files[0])
    same(one[0], reference[0])
    same(ensemble.predict(files[1])[0], reference[1])  # a Path
    for got, want in zip(ensemble.predict(folder), reference):  # a folder, in sorted order
        same(got, want)
    for got, want in zip(ensemble.predict(pil), reference):  # PIL images
        same(got, want)
    same(ensemble.predict(pil[2])[0], reference[2])
    rgb = [np.asarray(p) for p in pil]
    same(ensemble.predict(rgb[3])[0], reference[3])  # one HWC uint8 array
    batch = ensemble.predict(np.stack(rgb))  # one (N, H, W, 3) batch
    assert [r["image"] for r in batch] == [f"image[{k}]" for k in range(N)]
    for got, want in zip(batch, reference):
        same(got, want)
    gray = np.asarray(pil[4].convert("L"))
    same(ensemble.predict(gray)[0], ensemble.predict(pil[4].convert("L"))[0])  # HW grayscale
    mixed = ensemble.predict([str(files[5]), pil[6], rgb[7]])
    for got, want in zip(mixed, reference[5:]):
        same(got, want)


def test_predict_proba_score_and_classes(ensemble, images):
    pil, labels, folder = images
    assert list(ensemble.classes_) == ensemble.classnames
    proba = ensemble.predict_proba(pil)
    assert isinstance(proba, np.ndarray) and proba.shape == (N, len(ensemble.classnames))
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    records = ensemble.predict(pil)
    assert [ensemble.classes_[k] for k in proba.argmax(axis=1)] == [r["label"] for r in records]
    expected = float((proba.argmax(axis=1) == labels).mean())
    assert ensemble.score(pil, labels) == pytest.approx(expected)
    names = [ensemble.classnames[k] for k in labels]
    assert ensemble.score(sorted(folder.glob("*.png")), names) == pytest.approx(expected)
    with pytest.raises(DataError, match="3 labels for 8 images"):
        ensemble.score(pil, labels[:3])
    with pytest.raises(DataError, match="not a class"):
        ensemble.score(pil, ["unicorn"] * N)


def test_bad_inputs_are_one_line_data_errors(ensemble, images, tmp_path):
    pil, _, folder = images
    with pytest.raises(DataError, match="not found: .*nope.png"):
        ensemble.predict(str(tmp_path / "nope.png"))
    with pytest.raises(DataError, match="uint8"):
        ensemble.predict(np.zeros((32, 32, 3), dtype=np.float32))
    with pytest.raises(DataError, match="channels-first"):
        ensemble.predict(np.zeros((3, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="top_k"):
        ensemble.predict(pil[0], top_k=0)
    assert len(ensemble.predict(pil[0], top_k=3)[0]["top"]) == 3
    with pytest.raises(DataError, match="cannot predict on a dict"):
        ensemble.predict({"a": 1})
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = sorted(folder.glob("*.png"))[:2]
    with pytest.raises(DataError, match=r"bad.png.*\(not_an_image\)"):
        ensemble.predict([good[0], bad, good[1]])
    with pytest.raises(DataError, match="not_an_image"):
        ensemble.predict_proba([good[0], bad])
    # the shared policy: skipped and listed in its place, with its kind
    records = ensemble.predict([good[0], bad, good[1]], skip_unreadable=True)
    assert [r["image"] for r in records] == [str(good[0]), str(bad), str(good[1])]
    assert records[1]["kind"] == "not_an_image" and "label" not in records[1]
    assert "label" in records[0] and "label" in records[2]


def test_combiners_have_classes_and_answer_numpy_with_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 40, 4)).astype(np.float32)
    y = np.arange(40) % 4
    combiner = make_combiner("calibrated_mean")
    assert not hasattr(combiner, "classes_")  # scikit-learn: set by fit
    combiner.fit(None, logits, y)
    assert list(combiner.classes_) == [0, 1, 2, 3]
    pred = combiner.predict(None, logits)
    proba = combiner.predict_proba(None, logits)
    z = combiner.predict_logits(None, logits)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.int64 and pred.shape == (40,)
    assert isinstance(proba, np.ndarray) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert isinstance(z, np.ndarray) and z.shape == (40, 4)
    assert np.array_equal(combiner.classes_[proba.argmax(axis=1)], pred)
    assert combiner.score(None, logits, y) == pytest.approx(float((pred == y).mean()))
    tensor = torch.from_numpy(logits)  # tensors in, tensors out (as before)
    assert isinstance(combiner.predict(None, tensor), torch.Tensor)
    assert isinstance(combiner.predict_proba(None, tensor), torch.Tensor)
    assert torch.equal(combiner.predict(None, tensor), torch.from_numpy(pred))


def test_feature_reading_combiner_takes_numpy_features():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 30, 3)).astype(np.float32)
    features = [rng.normal(size=(30, 8)).astype(np.float32) for _ in range(2)]
    y = np.arange(30) % 3
    nlc = make_combiner("nlc", steps=5).fit(features, logits, y)
    proba = nlc.predict_proba(features, logits)
    assert isinstance(proba, np.ndarray) and proba.shape == (30, 3)
    assert np.array_equal(nlc.classes_, [0, 1, 2])
    as_tensors = nlc.predict_proba(
        [torch.from_numpy(f) for f in features], torch.from_numpy(logits)
    )
    assert torch.allclose(as_tensors, torch.from_numpy(proba))
    assert 0.0 <= nlc.score(features, logits, y) <= 1.0


def test_saved_ensemble_reuses_its_loaded_backbones(ensemble, images, monkeypatch):
    pil, _, _ = images
    ensemble.predict(pil[:1])
    calls = []
    monkeypatch.setattr(ensemble, "load_backbones", lambda *a, **k: calls.append(1))
    ensemble.predict(pil[:2])
    ensemble.predict_proba(pil[:2])
    assert calls == []


def test_readme_python_api_names_exist():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ("predict_proba", "score(", "classes_"):
        assert name in readme, name
