"""Declared capabilities are enforced (issue 22): a transductive combiner is fitted, saved and
predicted only on an explicit opt-in and never served; extraction cannot cache perturbed
features under the clean view's key. Each test here failed before the fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import clipfuse
from clipfuse.backbones import list_backbones, load_backbone
from clipfuse.data import open_dataset
from clipfuse.errors import ClipfuseError, FitError
from clipfuse.extraction import ExtractOptions, extract, view_name
from clipfuse.extraction.perturbations import Perturbation
from clipfuse.store import FeatureStore

pytestmark = pytest.mark.skipif(not list_backbones("zoo:*"), reason="no zoo weights shipped")
SPECS = ["zoo:rn-tiny", "zoo:vit-p4"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("cap-store")


@pytest.fixture(scope="module")
def train(store):
    return clipfuse.load_views(SPECS, clipfuse.demo_source("cifar10"), splits="train",
                               store=store, limit=40)  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cap-images")
    gen = np.random.default_rng(0)
    paths = []
    for i in range(6):
        paths.append(folder / f"{i}.png")
        Image.fromarray(gen.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_transductive_fit_and_save_need_an_opt_in(train, tmp_path) -> None:
    with pytest.raises(FitError, match="transductive.*allow_transductive=True"):
        clipfuse.fit_ensemble(train, "transclip", shots=2)
    ens = clipfuse.fit_ensemble(train, "transclip", shots=2, allow_transductive=True)
    assert ens.training["transductive"] is True
    path = ens.save(tmp_path / "tc.safetensors")
    import json

    assert json.loads(path.with_suffix(".json").read_text())["transductive"] is True
    ens.training.pop("transductive")  # an ensemble assembled by hand without the opt-in
    with pytest.raises(FitError, match="transductive"):
        ens.save(tmp_path / "again.safetensors")


def test_transductive_predict_only_when_asked_and_on_the_whole_set(train, images, tmp_path) -> None:
    ens = clipfuse.fit_ensemble(train, "transclip", shots=2, allow_transductive=True)
    loaded = clipfuse.load_ensemble(ens.save(tmp_path / "tc.safetensors"))
    with pytest.raises(ClipfuseError, match="transductive"):
        loaded.predict(images)
    whole = loaded.predict(images, transductive=True, batch_size=2)
    again = loaded.predict(images, transductive=True, batch_size=6)
    # one answer for the whole set given, whatever the loader's batch size
    assert [r["probability"] for r in whole] == pytest.approx([r["probability"] for r in again])


def test_serve_refuses_a_transductive_ensemble(train, tmp_path) -> None:
    from clipfuse.serve.app import check_servable

    ens = clipfuse.fit_ensemble(train, "transclip", shots=2, allow_transductive=True)
    with pytest.raises(ClipfuseError, match="cannot be served"):
        check_servable(ens)
    check_servable(clipfuse.fit_ensemble(train, "mean_logits", shots=2))


def test_cli_serve_refuses_transductive_in_one_line(train, tmp_path, capsys) -> None:
    from clipfuse.cli import main

    ens = clipfuse.fit_ensemble(train, "transclip", shots=2, allow_transductive=True)
    path = ens.save(tmp_path / "tc.safetensors")
    pytest.importorskip("fastapi")
    assert main(["serve", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be served" in err[0]


def test_perturbed_extraction_never_writes_the_clean_key(tmp_path) -> None:
    """Before: extract(..., perturbation=p) without perturbation_key cached under the clean view."""
    store = FeatureStore(tmp_path / "s")
    dataset = open_dataset(clipfuse.demo_source("cifar10"), "test", limit=20)
    backbone = load_backbone("zoo:rn-tiny")
    blur = Perturbation("blur", severity=5)
    report = extract([backbone], dataset, store, perturbation=blur, progress=False)
    assert report.view == view_name(dataset, blur.key) != view_name(dataset)
    assert store.views() == [report.view]
    clean = extract([backbone], dataset, store, ExtractOptions(progress=False))
    assert clean.view == view_name(dataset) and clean.images_processed == 20
    feats = {
        r.view: store.entry(next(iter(r.entries.values()))).read().features for r in (report, clean)
    }
    assert not np.allclose(feats[report.view].astype(np.float32), feats[clean.view].astype(np.float32))
    with pytest.raises(ClipfuseError, match="derived from the perturbation"):
        extract([backbone], dataset, store, perturbation=blur, perturbation_key="clean")


def test_cli_fit_and_predict_need_the_flags(train, store, images, tmp_path, capsys) -> None:
    from clipfuse.cli import main

    out = tmp_path / "tc.safetensors"
    fit = ["fit", "--data", clipfuse.demo_source("cifar10"), "--store", str(store),
           "--train-split", "train", "--limit", "40", "--method", "transclip", "--shots", "2",
           "--out", str(out)]  # fmt: skip
    assert main(fit) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-transductive" in err[0] and not out.exists()
    assert main([*fit, "--allow-transductive"]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), *map(str, images), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--transductive" in err[0]
    assert main(["predict", str(out), *map(str, images), "--quiet", "--transductive"]) == 0
