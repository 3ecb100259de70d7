"""Issue 23: the encoders' CPU threads leave room for the decode workers (a shared 2-core machine
collapsed 15x with torch's default), `threads=` / `--threads` override, the caller's thread count
is restored, and extraction through the Python API shows progress."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import two_class_pngs

import clipfuse
from clipfuse.backbones import load_backbone
from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.extraction import extract, threads
from clipfuse.store import FeatureStore


@pytest.fixture()
def folder(tmp_path) -> Path:
    return two_class_pngs(tmp_path, 4)


def test_default_leaves_a_core_per_decode_worker(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.default_threads(0) == 8
    assert threads.default_threads(2) == 6
    assert threads.default_threads(12) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert threads.default_threads(2) == 1  # the shared 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own choice is kept
    assert threads.default_threads(2) == 3


def test_available_cores_follows_the_affinity():
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert threads.available_cores() == len(os.sched_getaffinity(0))


def _recording(backbone, seen: list[int]):
    original = backbone.encode_images

    def encode(pixels):
        seen.append(torch.get_num_threads())
        return original(pixels)

    backbone.encode_images = encode
    return backbone


@pytest.mark.parametrize("asked", [1, 2, None])
def test_extract_encodes_with_the_threads_asked_and_restores(folder, tmp_path, monkeypatch, asked):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    seen: list[int] = []
    backbone = _recording(load_backbone("zoo:rn-tiny", image_only=True), seen)
    dataset = open_dataset(f"imagefolder:{folder}", "all")
    before = torch.get_num_threads()
    report = extract(
        [backbone], dataset, FeatureStore(tmp_path / f"s{asked}"), batch_size=4,
        num_workers=1, threads=asked, progress=False,
    )  # fmt: skip
    expected = 2 if asked is None else asked  # 3 cores - 1 decode worker
    assert seen and set(seen) == {expected}
    assert report.threads == expected and report.workers == 1
    assert torch.get_num_threads() == before


def test_threads_option_checked_and_passed(folder, tmp_path, capsys):
    data = ["--data", f"imagefolder:{folder}", "--split", "all", "--store", str(tmp_path / "s")]
    assert main(["extract", "--backbone", "zoo:rn-tiny", *data, "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0] and "positive" in err[0]
    assert main(["extract", "--backbone", "zoo:rn-tiny", *data, "--threads", "1", "--quiet"]) == 0


def test_load_views_shows_progress_unless_disabled(folder, tmp_path, capsys):
    source = f"imagefolder:{folder}"
    clipfuse.load_views(["zoo:rn-tiny"], source, splits="all", store=tmp_path / "a", threads=1)
    err = capsys.readouterr().err
    assert "extract" in err and "img/s" in err and "8/8" in err
    clipfuse.load_views(["zoo:rn-tiny"], source, splits="all", store=tmp_path / "b", progress=False)
    assert "img/s" not in capsys.readouterr().err
