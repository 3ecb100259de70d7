"""Saved ensembles and `clipfuse fit|predict`: one safetensors file with a JSON header that
rebuilds the fitted combiner exactly, never unpickles, refuses damaged files and changed
backbones in one line, and predicts on new images exactly what the cached pipeline predicts."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from beds import CORE_METHODS, build_fusion_bed, fit_cli, run_cli
from conftest import CIFAR10_CLASSES, class_members, write_folder
from safetensors.torch import load_file, safe_open

from clipfuse.cli import main
from clipfuse.combiners import make_combiner
from clipfuse.data.holdout import draw_holdout
from clipfuse.ensemble.checksum import save_sealed
from clipfuse.ensemble.predict import predict_images
from clipfuse.ensemble.saved import SavedEnsemble
from clipfuse.errors import ClipfuseError, ProvenanceMismatchError

STEPS = {"nlc": {"steps": 50}, "moe": {"steps": 50}}  # the same budgets as FAST


@pytest.fixture(scope="module")
def fusion_bed(tmp_path_factory):
    return build_fusion_bed(tmp_path_factory)  # shared with test_evaluate.py


@pytest.fixture(scope="module")
def bundles(fusion_bed):
    return fusion_bed.bundles()


def fit_in_memory(train, method: str, seed: int = 0):
    """What `fit` should have done, redone through the Python API."""
    draw = draw_holdout(
        train.labels.numpy(), train.indices, 10, view=train.view, seed=seed, shots=1
    )
    hold = train.select(np.searchsorted(train.indices, draw.positions))
    combiner = make_combiner(method, **STEPS.get(method, {}))
    if "seed" in combiner.get_params():
        combiner.set_params(seed=seed)
    return combiner.fit(hold.features, hold.logits, hold.labels), draw


@pytest.fixture(scope="module")
def nlc_file(fusion_bed, tmp_path_factory):
    path = tmp_path_factory.mktemp("ensemble") / "nlc.safetensors"
    assert fit_cli(fusion_bed, "nlc", path) == 0
    return path


def assert_one_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("clipfuse: error:"), err
    assert "Traceback" not in err


# ---- the file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", CORE_METHODS)
def test_fit_saves_and_reloads_every_core_method(fusion_bed, bundles, tmp_path, method):
    train, test = bundles
    path = tmp_path / f"{method}.safetensors"
    assert fit_cli(fusion_bed, method, path) == 0
    ensemble = SavedEnsemble.load(path)
    expected, _ = fit_in_memory(train, method)
    assert ensemble.combiner.config() == expected.config()
    got = ensemble.combiner.predict_logits(test.features, test.logits)
    assert torch.allclose(got, expected.predict_logits(test.features, test.logits), atol=1e-5)


def test_nlc_file_rebuilds_the_fitted_controller(nlc_file, bundles):
    train, test = bundles
    ensemble = SavedEnsemble.load(nlc_file)
    expected, draw = fit_in_memory(train, "nlc")
    assert torch.equal(
        ensemble.combiner.predict_logits(test.features, test.logits),
        expected.predict_logits(test.features, test.logits),
    )
    assert torch.equal(
        ensemble.combiner.predict_temperatures(test.features),
        expected.predict_temperatures(test.features),
    )
    # the text classifiers travel in the file: its logits are the store's zero-shot logits
    assert torch.allclose(ensemble.logits(test.features), test.logits, atol=1e-4)
    assert ensemble.classnames == CIFAR10_CLASSES == test.classnames
    assert ensemble.training["holdout_sha256"] == draw.content_hash
    assert ensemble.training["holdout_positions"] == draw.positions
    assert ensemble.training["view"] == train.view


def test_file_is_safetensors_with_a_json_header(nlc_file, bundles):
    train, _ = bundles
    with safe_open(str(nlc_file), framework="pt") as f:
        header = json.loads(f.metadata()["clipfuse"])
        keys = set(f.keys())
    assert header["format"] == "clipfuse.ensemble" and header["version"] == 2
    assert [b["fingerprint"] for b in header["backbones"]] == train.fingerprints
    assert [b["spec"] for b in header["backbones"]] == train.specs
    assert header["classnames"] == CIFAR10_CLASSES
    assert header["combiner"]["name"] == "nlc" and header["combiner"]["params"]["steps"] == 50
    assert {"classifier.0", "classifier.1"} <= keys
    assert any(k.startswith("combiner.") for k in keys)
    assert json.loads(nlc_file.with_suffix(".json").read_text()) == header  # readable copy


def test_loading_and_predicting_never_unpickle(nlc_file, bundles, monkeypatch):
    _, test = bundles

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for target, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load"), (torch.serialization, "load")]:  # fmt: skip
        monkeypatch.setattr(target, name, forbidden)
    ensemble = SavedEnsemble.load(nlc_file)
    logits = ensemble.logits(test.features)
    pred = ensemble.combiner.predict(test.features, logits)
    assert pred.shape == (200,) and ensemble.combiner.predict_temperatures(test.features).min() > 0


def _damaged_files(good, tmp_path):
    """name -> path of a file that must be refused in one line."""
    tensors = load_file(str(good))
    with safe_open(str(good), framework="pt") as f:
        header = json.loads(f.metadata()["clipfuse"])
    raw = good.read_bytes()

    def save(name, tensors=tensors, metadata=None):  # sealed: what is refused is the content
        save_sealed(tensors, tmp_path / name, metadata or {})
        return tmp_path / name

    def resave(name, tensors=tensors, **edits):
        return save(name, tensors, {"clipfuse": json.dumps({**header, **edits})})

    def write(name, data):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    no_classifier = {k: v for k, v in tensors.items() if k != "classifier.1"}
    bad_shape = {k: (v[:1] if k.startswith("combiner.") else v) for k, v in tensors.items()}
    return {
        "garbage": write("garbage.safetensors", b"\x00\xff" * 64),
        "empty": write("empty.safetensors", b""),
        "truncated": write("truncated.safetensors", raw[: len(raw) // 2]),
        "plain safetensors": save("plain.safetensors"),
        "header not JSON": save("nj.safetensors", metadata={"clipfuse": "{oops"}),
        "header not an object": save("list.safetensors", metadata={"clipfuse": "[1, 2]"}),
        "other format": resave("fmt.safetensors", format="something.else"),
        "missing classnames": resave("nocls.safetensors", classnames=None),
        "missing classifier": resave("noclf.safetensors", tensors=no_classifier),
        "unknown combiner": resave(
            "comb.safetensors", combiner={**header["combiner"], "name": "bogus"}
        ),
        "combiner state of the wrong shape": resave("shape.safetensors", tensors=bad_shape),
    }


DAMAGED = ["garbage", "empty", "truncated", "plain safetensors", "header not JSON",
           "header not an object", "other format", "missing classnames", "missing classifier",
           "unknown combiner", "combiner state of the wrong shape"]  # fmt: skip


@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_file_is_one_line_error(nlc_file, tmp_path, capsys, case):
    path = _damaged_files(nlc_file, tmp_path)[case]
    with pytest.raises(ClipfuseError) as info:
        SavedEnsemble.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    code, _, err = run_cli(capsys, "predict", str(path), str(tmp_path), "--quiet")
    assert code == 2 and err.startswith("clipfuse: error:") and err.count("\n") == 1, err


def test_changed_backbone_is_provenance_mismatch(nlc_file, tmp_path, capsys, image_folder):
    with safe_open(str(nlc_file), framework="pt") as f:
        header = json.loads(f.metadata()["clipfuse"])
    header["backbones"][1]["fingerprint"] = "0" * 16
    edited = tmp_path / "edited.safetensors"
    save_sealed(load_file(str(nlc_file)), edited, {"clipfuse": json.dumps(header)})
    ensemble = SavedEnsemble.load(edited)  # the file itself is fine
    assert len(ensemble.load_backbones(only=[0])) == 1  # the untouched backbone still loads
    with pytest.raises(ProvenanceMismatchError, match="0" * 16):
        ensemble.load_backbones()
    code, _, err = run_cli(capsys, "predict", str(edited), str(image_folder), "--quiet")
    assert code == 2 and err.startswith("clipfuse: error:") and err.count("\n") == 1, err


# ---- predict on new images ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_images(tmp_path_factory, cifar_jpegs):
    """Six real CIFAR-10 test images in class folders, plus one corrupt file among them."""
    members = dict(list(class_members(cifar_jpegs, 1).items())[:6])
    folder = write_folder(tmp_path_factory.mktemp("new") / "pics", members)
    (folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return folder


def test_predict_json_matches_the_cached_pipeline(nlc_file, new_images, tmp_path, capsys):
    code, out, err = run_cli(capsys, "predict", str(nlc_file), str(new_images), "--json",
                             "--workers", "0", "--quiet")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    predictions = {p["image"]: p for p in result["predictions"]}
    good = sorted(str(p) for p in new_images.rglob("*.jpg") if p.name != "broken.jpg")
    assert sorted(predictions) == good and len(good) == 6
    assert [f["image"] for f in result["failures"]] == [str(new_images / "cat" / "broken.jpg")]
    assert result["failures"][0]["kind"] == "not_an_image"  # the server's kind for such a file
    assert "broken.jpg" in err
    ensemble = SavedEnsemble.load(nlc_file)
    names = [b["name"] for b in ensemble.backbones]
    for p in predictions.values():
        assert p["label"] in ensemble.classnames and 0 < p["probability"] <= 1
        assert sorted(p["temperatures"]) == sorted(names)
        assert all(t > 0 for t in p["temperatures"].values())

    # the same images through extraction (float32 features) + SavedEnsemble.logits
    from clipfuse.data import open_dataset
    from clipfuse.logits import load_bundle, resolve_view
    from clipfuse.store import FeatureStore

    store = tmp_path / "store"
    specs = [x for b in ensemble.backbones for x in ("--backbone", b["spec"])]
    assert main(["extract", *specs, "--data", f"imagefolder:{new_images}", "--split", "all",
                 "--store", str(store), "--feature-dtype", "float32", "--quiet"]) == 0  # fmt: skip
    dataset = open_dataset(f"imagefolder:{new_images}", "all")
    bundle = load_bundle(FeatureStore(store), resolve_view(FeatureStore(store), dataset))
    assert bundle.fingerprints == [b["fingerprint"] for b in ensemble.backbones]
    proba = ensemble.combiner.predict_proba(bundle.features, ensemble.logits(bundle.features))
    temps = ensemble.combiner.predict_temperatures(bundle.features)
    assert len(bundle.sample_ids) == 6
    for row, sample in enumerate(bundle.sample_ids):
        p = predictions[str(new_images / sample)]
        assert p["label"] == ensemble.classnames[int(proba[row].argmax())]
        assert p["probability"] == pytest.approx(float(proba[row].max()), abs=1e-5)
        for b, name in enumerate(names):
            assert p["temperatures"][name] == pytest.approx(float(temps[row, b]), rel=1e-4)


def test_predict_images_api_under_a_pickle_ban(nlc_file, new_images, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    ensemble = SavedEnsemble.load(nlc_file)
    predictions, failures = predict_images(
        ensemble, [str(new_images / "cat")], num_workers=0, top_k=3, progress=False
    )
    assert len(failures) == 1 and len(predictions) == 1
    top = predictions[0]["top"]
    assert len(top) == 3 and top[0]["label"] == predictions[0]["label"]
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)


def test_predict_bad_paths_exit_2(nlc_file, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", str(nlc_file), str(tmp_path / "nope.jpg"))
    assert code == 2 and err.startswith("clipfuse: error:") and err.count("\n") == 1, err
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "missing.safetensors"), str(tmp_path))
    assert code == 2 and "ensemble file not found" in err and err.count("\n") == 1, err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code, _, err = run_cli(capsys, "predict", str(nlc_file), str(tmp_path / "bad.png"),
                           "--workers", "0", "--quiet")  # fmt: skip
    assert code == 2
    assert_one_line(err)
    assert "could be read" in err.splitlines()[-1]
