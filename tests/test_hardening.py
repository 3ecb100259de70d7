"""Malformed input from a newcomer (issue 15): one line and exit 2, never a traceback; saved
ensembles refuse any edited byte; nothing left behind (lock files, temp configs); no relative
gains against a baseline near zero."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import VIT_TINY
from safetensors.torch import load_file, safe_open, save_file

from clipfuse.cli import main
from clipfuse.errors import BackboneError, ClipfuseError

DEMO = Path(__file__).resolve().parents[1] / "src" / "clipfuse" / "demo_data" / "cifar10-demo"
DATA = ["--data", f"imagefolder:{DEMO}"]


def run(capsys, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of an in-process CLI call (argument errors return 2 too, no exit)."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("hardening") / "store"
    for split in ("train", "test"):
        args = ["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", split, "--limit", "40"]
        assert main([*args, "--store", str(store), "--quiet"]) == 0
    return store


@pytest.mark.parametrize(
    "args, needle",
    [
        (["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test", "--batch-size", "0"], "--batch-size"),
        (["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test", "--batch-size", "-3"], "--batch-size"),
        (["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test", "--limit", "0"], "--limit"),
        (["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test", "--shard-size", "0"], "--shard-size"),
        (["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test", "--workers", "-1"], "--workers"),
        (["predict", "x.safetensors", "pics", "--batch-size", "0"], "--batch-size"),
        (["predict", "x.safetensors", "pics", "--top-k", "0"], "--top-k"),
        (["evaluate", *DATA, "--train-split", "train", "--test-split", "test", "--out", "r",
          "--train-limit", "-5"], "--train-limit"),
        (["evaluate", *DATA, "--train-split", "train", "--test-split", "test", "--out", "r",
          "--seeds", "0"], "--seeds"),
    ],
)  # fmt: skip
def test_non_positive_numbers_at_parse_time(args, needle, capsys, tmp_path):
    code, err = run(capsys, *args, "--store", str(tmp_path / "s"))
    assert_one_line(code, err, needle, "positive" if needle != "--workers" else ">= 0")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["evaluate", "--train-split", "train", "--test-split", "test", "--shots", "0"], "shots"),
        (["evaluate", "--train-split", "train", "--test-split", "test", "--shots", "1,-2"], "shots"),
        (["fit", "--train-split", "train", "--shots", "-1"], "shots"),
        (["evaluate", "--train-split", "train", "--test-split", "test", "--shots", "1",
          "--methods", "nlc", "--param", "nlc.steps=0", "--quiet"], "steps"),
    ],
)  # fmt: skip
def test_non_positive_shots_and_steps(args, needle, demo_store, capsys, tmp_path):
    out = tmp_path / ("e.safetensors" if args[0] == "fit" else "r")
    code, err = run(capsys, *args, *DATA, "--store", str(demo_store), "--out", str(out))
    assert_one_line(code, err, needle)


def test_unavailable_device(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run(capsys, "extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test",
                    "--store", str(tmp_path / "s"), "--device", "cuda")  # fmt: skip
    assert_one_line(code, err, "'cuda' is not available")
    code, err = run(capsys, "predict", "x.safetensors", "pics", "--device", "nonsense")
    assert_one_line(code, err, "unknown device")
    from clipfuse.backbones import load_backbone

    with pytest.raises(BackboneError, match="not available"):
        load_backbone("zoo:rn-tiny", device="cuda:0", with_gflops=False)


def test_impossible_store_and_output_paths(demo_store, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    extract = ["extract", "--backbone", "zoo:rn-tiny", *DATA, "--split", "test", "--limit", "40"]
    code, err = run(capsys, *extract, "--store", str(blocker / "store"))
    assert_one_line(code, err, "--store", "is not a directory")  # at parse time
    if Path("/proc/self").is_dir():  # a virtual file system where nothing can be created
        code, err = run(capsys, *extract, "--store", "/proc/self/clipfuse-store")
        assert_one_line(code, err, "--store", "cannot create")
    code, err = run(capsys, "evaluate", *DATA, "--store", str(demo_store), "--train-split",
                    "train", "--test-split", "test", "--shots", "1", "--seeds", "1",
                    "--methods", "mean_logits", "--out", str(blocker / "results"))  # fmt: skip
    assert_one_line(code, err, "--out", "is not a directory")
    code, err = run(capsys, "fit", *DATA, "--store", str(demo_store), "--train-split", "train",
                    "--method", "mean_logits", "--shots", "1", "--out", str(blocker / "e.safetensors"))  # fmt: skip
    assert_one_line(code, err, "--out", "is not a directory")
    from clipfuse.store import FeatureStore  # the library says it in one line too

    with pytest.raises(ClipfuseError, match="cannot create feature store"):
        FeatureStore(blocker / "store")


@pytest.fixture(scope="module")
def ensemble_file(demo_store, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sealed") / "nlc.safetensors"
    args = ["fit", *DATA, "--store", str(demo_store), "--train-split", "train", "--method"]
    args += ["nlc", "--shots", "1", "--param", "nlc.steps=5", "--out", str(path)]
    assert main(args) == 0
    return path


def test_ensemble_checksum_refuses_any_edited_byte(ensemble_file, tmp_path, capsys):
    from clipfuse.ensemble.saved import SavedEnsemble

    SavedEnsemble.load(ensemble_file)  # the untouched file loads
    raw = ensemble_file.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + header_len]
    positions = {
        "length prefix": 0,
        "tensor header": 8 + header.index(b'"dtype"') + 2,
        "ensemble metadata": 8 + header.index(b"classnames") + 3,
        "checksum itself": 8 + header.index(b'"clipfuse_sha256":"') + 25,
        "header padding": 8 + header_len - 1,
        "first tensor byte": 8 + header_len,
        "last tensor byte": len(raw) - 1,
    }
    for name, at in positions.items():
        edited = bytearray(raw)
        edited[at] ^= 0x01
        path = tmp_path / f"{name.replace(' ', '-')}.safetensors"
        path.write_bytes(bytes(edited))
        with pytest.raises(ClipfuseError) as info:
            SavedEnsemble.load(path)
        assert "\n" not in str(info.value), name
        code, err = run(capsys, "predict", str(path), str(DEMO), "--quiet")
        assert_one_line(code, err, str(path))


def test_ensemble_without_checksum_is_refused(ensemble_file, tmp_path):
    """A file re-saved without the checksum (an older clipfuse, or a hand edit) is not trusted."""
    from clipfuse.ensemble.saved import SavedEnsemble

    with safe_open(str(ensemble_file), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "clipfuse_sha256"}
    path = tmp_path / "unsealed.safetensors"
    save_file(load_file(str(ensemble_file)), str(path), metadata=meta)
    with pytest.raises(ClipfuseError, match="no clipfuse checksum"):
        SavedEnsemble.load(path)


def test_no_lock_files_beside_results(demo_store, tmp_path):
    out = tmp_path / "results"
    args = ["evaluate", *DATA, "--store", str(demo_store), "--train-split", "train"]
    args += ["--test-split", "test", "--shots", "1", "--seeds", "1", "--methods", "mean_logits,nlc"]
    assert main([*args, "--param", "nlc.steps=5", "--out", str(out), "--quiet"]) == 0
    assert (out / "evaluation.json").is_file() and (out / "temperatures.safetensors").is_file()
    assert not list(out.rglob("*.lock")), sorted(p.name for p in out.rglob("*"))
    # a second run adds to the same files under the same (cached) lock
    assert main([*args, "--param", "nlc.steps=5", "--out", str(out), "--quiet"]) == 0
    assert not list(out.rglob("*.lock"))
    assert json.loads((out / "evaluation.json").read_text())["format"]


def test_random_configs_leave_nothing_in_temp(tmp_path, monkeypatch):
    from clipfuse.backbones import load_backbone

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    backbone = load_backbone(VIT_TINY, with_gflops=False)
    assert backbone.encode_texts(["a photo of a cat"]).shape[0] == 1
    assert list(tmp_path.iterdir()) == []


def test_no_relative_gain_against_a_near_zero_baseline():
    from clipfuse.evaluation.records import _row
    from clipfuse.evaluation.tables import format_markdown

    near_zero = _row("d", "nlc", "1-shot", 10, [0.05, 0.04], [0.0, 0.002], kind="method")
    usual = _row("d", "nlc", "1-shot", 10, [0.55, 0.54], [0.5, 0.5], kind="method")
    assert near_zero["gain"] == pytest.approx(0.044)  # fractions; the table shows points
    assert near_zero["gain_relative"] is None
    assert usual["gain_relative"] == pytest.approx(0.09)
    table = format_markdown([near_zero])
    assert "+4.40 |  |" in table and "inf" not in table.lower()
