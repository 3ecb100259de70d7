"""Extraction into the feature store: reruns are no-ops, corrupt images are skipped and recorded,
a killed run resumes to exactly the features of an uninterrupted one, concurrent runs agree, and
provenance mismatches are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    REPO,
    RN_TINY,
    TINY_SPECS,
    VIT_TINY,
    class_members,
    cli_command,
    cli_env,
    write_folder,
)

from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.errors import ProvenanceMismatchError
from clipfuse.extraction import extract
from clipfuse.extraction.engine import entry_provenance
from clipfuse.logits import load_bundle
from clipfuse.store import FeatureStore
from clipfuse.store.atomic import is_temp_name

# shard size 16 with batch size 8: every batch lies inside one shard, so a resumed run encodes
# exactly the batches an uninterrupted run does, and float32 features are bit-identical
RUN_ARGS = [
    "--shard-size",
    "16",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--feature-dtype",
    "float32",
    "--quiet",
]


def extract_args(folder: Path, store: Path) -> list[str]:
    backbones = [arg for spec in TINY_SPECS for arg in ("--backbone", spec)]
    return [
        "extract",
        *backbones,
        "--data",
        f"imagefolder:{folder}",
        "--split",
        "all",
        "--store",
        str(store),
        *RUN_ARGS,
    ]


def shard_files(store: Path) -> list[Path]:
    return sorted(store.glob("views/*/*/shard-*.safetensors"))


def store_contents(store: Path) -> dict[str, dict]:
    """Every shard's arrays and sample ids, keyed by its path inside the store."""
    fs = FeatureStore(store)
    contents = {}
    for key in fs.entries():
        entry = fs.entry(key)
        assert entry.is_complete(), key
        for i in range(entry.num_shards):
            shard = entry.read_shard(i)
            contents[f"{key}/{i}"] = {
                "features": np.array(shard.features),
                "indices": np.array(shard.indices),
                "labels": np.array(shard.labels),
                "sample_ids": shard.sample_ids,
                "failures": shard.failures,
            }
    return contents


def assert_same_store(store: Path, reference: Path) -> None:
    got, expected = store_contents(store), store_contents(reference)
    assert sorted(got) == sorted(expected)
    for name, shard in expected.items():
        for field, value in shard.items():
            if isinstance(value, np.ndarray):
                assert got[name][field].dtype == value.dtype, (name, field)
                np.testing.assert_array_equal(got[name][field], value, err_msg=f"{name} {field}")
            else:
                assert got[name][field] == value, (name, field)
    for manifest in store.glob("views/*/*/manifest.json"):
        summary = json.loads(manifest.read_text())["summary"]
        assert summary["num_features"] + summary["num_failures"] == 120
    leftovers = [p for p in store.rglob("*") if is_temp_name(p.name)]
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, folder120) -> Path:
    """An uninterrupted run over the 120 images: what every other run must end up equal to."""
    store = tmp_path_factory.mktemp("reference") / "store"
    assert main(extract_args(folder120, store)) == 0
    assert len(shard_files(store)) == 16  # 120 images / 16 per shard = 8 shards, x 2 backbones
    return store


def test_second_run_is_a_no_op(tmp_path, tiny_backbones, image_folder):
    backbones = list(tiny_backbones.values())
    dataset = open_dataset(f"imagefolder:{image_folder}", "all")
    store = FeatureStore(tmp_path / "store")
    first = extract(backbones, dataset, store, shard_size=8, num_workers=0, progress=False)
    assert first.images_processed == 30 and first.shards_written == 8
    files = [p for p in (tmp_path / "store" / "views").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    second = extract(backbones, dataset, store, shard_size=8, num_workers=0, progress=False)
    print(f"\nfirst extraction {first.seconds:.3f}s, identical rerun {second.seconds:.3f}s")
    assert second.images_processed == 0 and second.shards_written == 0 and not second.failures
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert second.seconds < first.seconds


def test_corrupt_image_is_skipped_recorded_and_harmless(tmp_path, tiny_backbones, cifar_jpegs):
    members = class_members(cifar_jpegs, 2)
    clean = write_folder(tmp_path / "clean", members)
    dirty = write_folder(
        tmp_path / "dirty", {**members, "cat/broken.jpg": b"\xff\xd8 this is not a JPEG" * 40}
    )
    backbones = list(tiny_backbones.values())

    def run(folder: Path, store: Path):
        dataset = open_dataset(f"imagefolder:{folder}", "all")
        # batch size 1: each image is encoded alone, so its features cannot depend on its neighbours
        kw = {
            "batch_size": 1,
            "num_workers": 0,
            "shard_size": 8,
            "feature_dtype": "float32",
            "progress": False,
        }
        return extract(backbones, dataset, FeatureStore(store), **kw), dataset

    report, dataset = run(dirty, tmp_path / "dirty-store")
    assert [f["sample_id"] for f in report.failures] == ["cat/broken.jpg"]
    assert report.images_processed == 21
    run(clean, tmp_path / "clean-store")
    dirty_store, clean_store = (
        FeatureStore(tmp_path / "dirty-store"),
        FeatureStore(tmp_path / "clean-store"),
    )
    for key in dirty_store.entries():
        summary = dirty_store.manifest(key)["summary"]
        assert summary["num_failures"] == 1 and summary["num_features"] == 20
        assert summary["failures"][0]["sample_id"] == "cat/broken.jpg"
        assert "UnidentifiedImageError" in summary["failures"][0]["error"]
        got = dirty_store.entry(key).read()
        (clean_key,) = [k for k in clean_store.entries() if k.backbone == key.backbone]
        expected = clean_store.entry(clean_key).read()
        assert got.sample_ids == expected.sample_ids  # the broken image is absent, nothing else
        np.testing.assert_array_equal(got.features, expected.features)
        np.testing.assert_array_equal(got.labels, expected.labels)
    bundle = load_bundle(dirty_store, dirty_store.views()[0])
    assert len(bundle.labels) == 20 and "cat/broken.jpg" not in bundle.sample_ids
    assert [f["sample_id"] for f in bundle.failures] == ["cat/broken.jpg"]


def start_and_catch_midway(folder: Path, store: Path) -> tuple[subprocess.Popen, int]:
    """Start `python -m clipfuse.cli extract` and return once some but not all shards exist."""
    process = subprocess.Popen(
        cli_command(*extract_args(folder, store)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        done = len(shard_files(store))
        if 0 < done < 16:
            return process, done
        time.sleep(0.002)
    process.kill()
    _, err = process.communicate()
    pytest.fail(
        f"extract ended (rc {process.returncode}) before it was caught midway: {err.decode()[-500:]}"
    )


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, folder120, reference_store):
    store = tmp_path / "store"
    process, done = start_and_catch_midway(folder120, store)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    left = len(shard_files(store))
    print(f"\nkilled with {done} of 16 shards written ({left} after the kill)")
    assert left < 16
    assert main(extract_args(folder120, store)) == 0
    assert_same_store(store, reference_store)


def test_concurrent_runs_into_one_store(tmp_path, folder120, reference_store):
    """A second process (this one) extracts into the store while a first is midway through."""
    store = tmp_path / "store"
    process, done = start_and_catch_midway(folder120, store)
    assert main(extract_args(folder120, store)) == 0
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    print(f"\nsecond run started with {done} of 16 shards written by the first")
    assert_same_store(store, reference_store)


def test_same_model_and_data_named_from_elsewhere_is_the_same_entry(
    tmp_path, image_folder, monkeypatch
):
    """Specs and sources are recorded with absolute paths: a rerun from another working directory
    (or with ./-prefixed paths) is a no-op, and the store reloads the model from anywhere."""
    store = tmp_path / "store"
    common = ["--split", "all", "--store", str(store), "--workers", "0", "--quiet"]
    monkeypatch.chdir(REPO)
    rel_spec = Path(RN_TINY).relative_to(REPO)
    assert (
        main(
            [
                "extract",
                "--backbone",
                str(rel_spec),
                "--data",
                f"imagefolder:{image_folder}",
                *common,
            ]
        )
        == 0
    )
    monkeypatch.chdir(image_folder.parent)
    files = {p: p.stat().st_mtime_ns for p in store.rglob("*.safetensors")}
    assert (
        main(
            [
                "extract",
                "--backbone",
                RN_TINY,
                "--data",
                f"imagefolder:./{image_folder.name}",
                *common,
            ]
        )
        == 0
    )
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.safetensors")} == files
    fs = FeatureStore(store)
    bundle = load_bundle(fs, fs.views()[0])  # builds the text classifier: reloads the model by spec
    assert bundle.specs == [RN_TINY] and bundle.logits.shape == (1, 30, 10)


def test_provenance_mismatch_is_refused(tmp_path, tiny_backbones, image_folder, capsys):
    store = tmp_path / "store"
    args = ["extract", "--backbone", VIT_TINY, "--data", f"imagefolder:{image_folder}", "--split", "all",
            "--store", str(store), "--workers", "0", "--quiet"]  # fmt: skip
    assert main(args) == 0
    fs = FeatureStore(store)
    (key,) = fs.entries()
    dataset = open_dataset(f"imagefolder:{image_folder}", "all")
    provenance = entry_provenance(tiny_backbones["vit"], dataset, None)
    provenance["backbone"]["preprocess"] = {
        **provenance["backbone"]["preprocess"],
        "interpolation": "bilinear",
    }
    with pytest.raises(ProvenanceMismatchError, match="interpolation"):
        fs.entry(key).begin(provenance, len(dataset), 1024)

    manifest_path = fs.entry(key).manifest_path
    manifest = json.loads(manifest_path.read_text())
    manifest["provenance"]["backbone"]["weights_sha256"] = "0" * 64  # as if made by other weights
    manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("clipfuse: error:") and "Traceback" not in err
    assert "weights_sha256" in err and "delete" in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="decode workers are forked processes here")
def test_decode_workers_give_the_same_features(tmp_path, image_folder, tiny_backbones):
    backbones = list(tiny_backbones.values())
    dataset = open_dataset(f"imagefolder:{image_folder}", "all")
    kw = {"batch_size": 8, "shard_size": 16, "feature_dtype": "float32", "progress": False}
    extract(backbones, dataset, FeatureStore(tmp_path / "a"), num_workers=0, **kw)
    extract(backbones, dataset, FeatureStore(tmp_path / "b"), num_workers=2, **kw)
    a, b = FeatureStore(tmp_path / "a"), FeatureStore(tmp_path / "b")
    for key in a.entries():
        np.testing.assert_array_equal(a.entry(key).read().features, b.entry(key).read().features)


def test_default_workers_leave_a_small_cpu_to_heavy_encoders(monkeypatch):
    """On 2 cores, encoders of >= 1 GFLOP per image decode between batches (no workers); light
    encoders, GPU encoders and bigger machines keep decoding in workers."""
    from types import SimpleNamespace

    from clipfuse.extraction.engine import default_workers

    def fake(gflops: float, device: str = "cpu"):
        return SimpleNamespace(
            info=SimpleNamespace(image_gflops=gflops), device=torch.device(device)
        )

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_workers([fake(8.8), fake(0.01)]) == 0
    assert default_workers([fake(0.5), fake(0.4)]) == 2  # the zoo: decode-bound
    assert default_workers([fake(8.8, "cuda")]) == 2
    assert default_workers() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert default_workers([fake(8.8)]) == 4


def test_stale_gflops_record_is_rewritten(tmp_path, tiny_backbones, image_folder):
    """A backbone-info record from an older count is brought up to date by the next extract
    (features untouched: it is a no-op for them)."""
    vit = tiny_backbones["vit"]
    dataset = open_dataset(f"imagefolder:{image_folder}", "all")
    store = FeatureStore(tmp_path / "store")
    extract([vit], dataset, store, num_workers=0, progress=False)
    key = vit.info.fingerprint
    stale = {**store.get_array_set("backbone-info", key).metadata, "image_gflops": 1e-9}
    store.put_array_set("backbone-info", key, {}, stale)
    again = extract([vit], dataset, store, num_workers=0, progress=False)
    assert again.images_processed == 0
    recorded = store.get_array_set("backbone-info", key).metadata["image_gflops"]
    assert recorded == vit.info.image_gflops
