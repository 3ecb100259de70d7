"""`clipfuse zeroshot --predictions/--logits` (issue 15): per-sample outputs that agree with the
fusion inputs and the accuracy table."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import TINY_SPECS
from safetensors import safe_open

from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.logits import load_bundle, resolve_view
from clipfuse.store import FeatureStore


@pytest.fixture(scope="module")
def store(tmp_path_factory, image_folder):
    root = tmp_path_factory.mktemp("per-sample") / "store"
    args = ["extract", "--data", f"imagefolder:{image_folder}", "--split", "all"]
    for spec in TINY_SPECS:
        args += ["--backbone", spec]
    assert main([*args, "--store", str(root), "--quiet"]) == 0
    return root


def test_predictions_and_logits_files(store, image_folder, tmp_path, capsys):
    csv_path, logits_path = tmp_path / "out" / "preds.csv", tmp_path / "logits.safetensors"
    data = ["--data", f"imagefolder:{image_folder}", "--split", "all", "--store", str(store)]
    code = main(
        ["zeroshot", *data, "--json", "--predictions", str(csv_path), "--logits", str(logits_path)]
    )
    assert code == 0
    table = {r["backbone"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    fs = FeatureStore(store)
    bundle = load_bundle(fs, resolve_view(fs, open_dataset(f"imagefolder:{image_folder}", "all")))
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == ["sample_id", "backbone", "label", "pred"] + [
        f"top{k}" for k in range(1, 6)
    ] + ["label_name", "pred_name"]
    assert len(rows) == len(bundle.sample_ids) * len(TINY_SPECS)
    for name in bundle.names:
        mine = [r for r in rows if r["backbone"] == name]
        top1 = sum(r["label"] == r["pred"] for r in mine) / len(mine)
        top5 = sum(r["label"] in [r[f"top{k}"] for k in range(1, 6)] for r in mine) / len(mine)
        assert top1 == pytest.approx(table[name]["top1"])
        assert top5 == pytest.approx(table[name]["top5"])
        assert all(r["pred"] == r["top1"] for r in mine)
    with safe_open(str(logits_path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
        logits, labels = f.get_tensor("logits"), f.get_tensor("labels")
    assert meta["format"] == "clipfuse.logits" and meta["version"] == 1
    assert meta["sample_ids"] == bundle.sample_ids and meta["backbones"] == bundle.names
    assert torch.equal(logits, bundle.logits) and torch.equal(labels, bundle.labels)
    first = rows[0]
    b = bundle.names.index(first["backbone"])
    n = bundle.sample_ids.index(first["sample_id"])
    assert int(first["pred"]) == int(logits[b, n].argmax())


def test_unwritable_output_is_one_line(store, image_folder, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data = ["--data", f"imagefolder:{image_folder}", "--split", "all", "--store", str(store)]
    assert main(["zeroshot", *data, "--predictions", str(blocker / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("clipfuse: error:") and "is not a directory" in err[0]
    )
