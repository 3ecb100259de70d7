"""The feature store on S3 (moto's server on 127.0.0.1): the same files as a local store, byte for
byte; an upload without its commit marker is never read and is redone; a run killed mid-way
resumes; a rerun is a no-op; bad locations give one line naming what to set, and write nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import clipfuse
from clipfuse.backbones import load_backbone
from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.errors import StoreError
from clipfuse.extraction.engine import extract
from clipfuse.store import FeatureStore

sys.path.insert(0, str(Path(__file__).parent))
from s3 import list_keys, make_bucket, moto_s3  # noqa: E402

SPECS = ("zoo:rn-tiny", "zoo:vit-p8")
RUN = {"batch_size": 32, "shard_size": 64, "progress": False}
BUCKET = "clipfuse-test"
VOLATILE = ("created", "created_by", "finalized")  # when and by whom, not what


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as endpoint:
        make_bucket(BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def backbones():
    return [load_backbone(s) for s in SPECS]


@pytest.fixture(scope="module")
def view():
    return open_dataset(clipfuse.demo_source("cifar10"), "test", limit=200)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, backbones, view) -> Path:
    root = tmp_path_factory.mktemp("local") / "store"
    extract(backbones, view, FeatureStore(root), **RUN)
    return root


def _stable(name: str, data: bytes) -> object:
    """A file's content with the volatile manifest fields (timestamps, pid) removed."""
    if not name.endswith("manifest.json"):
        return data
    manifest = json.loads(data)
    for key in VOLATILE:
        manifest.pop(key, None)
        manifest.get("summary", {}).pop(key, None)
    return manifest


def local_files(root: Path) -> dict[str, object]:
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {k: _stable(k, v) for k, v in files.items() if not k.startswith("locks/")}


def s3_files(prefix: str) -> dict[str, object]:
    found = {k.removeprefix(prefix + "/"): v for k, v in prefixed(prefix).items()}
    return {k: _stable(k, v) for k, v in found.items() if not k.endswith(".commit")}


def prefixed(prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in list_keys(BUCKET).items() if k.startswith(prefix + "/")}


def test_s3_store_equals_local_and_rerun_is_noop(s3, backbones, view, local_store):
    store = FeatureStore(f"s3://{BUCKET}/equal")
    report = extract(backbones, view, store, **RUN)
    assert report.shards_written == 2 * 4
    objects = {k.removeprefix("equal/"): v for k, v in prefixed("equal").items()}
    assert s3_files("equal") == local_files(local_store)
    commits = sorted(k for k in objects if k.endswith(".commit"))
    assert len(commits) == 8  # one marker per shard, written after the shard
    for name in commits:
        marker = json.loads(objects[name])
        shard = objects[name.removesuffix(".commit")]
        assert marker["size"] == len(shard)

    # reads: ranged, equal to the local memmaps
    local = FeatureStore(local_store)
    for key in store.entries():
        remote_data, local_data = store.entry(key).read(), local.entry(key).read()
        assert np.array_equal(remote_data.features, local_data.features)
        assert remote_data.sample_ids == local_data.sample_ids
    assert store.views() == local.views()

    before = prefixed("equal")
    again = extract(backbones, view, FeatureStore(f"s3://{BUCKET}/equal"), **RUN)
    assert (again.images_processed, again.shards_written) == (0, 0)
    assert prefixed("equal") == before


def test_uncommitted_upload_is_invisible_and_redone(s3, backbones, view, local_store):
    url = f"s3://{BUCKET}/uncommitted"
    store = FeatureStore(url)
    extract(backbones[:1], view, store, **RUN)
    entry = store.entry(store.entries()[0])
    # a writer killed between its upload and the commit: a (here: garbage) shard object, no marker
    entry.files.fs.rm(entry.shard_path(2) + ".commit")
    entry.files.fs.pipe_file(entry.shard_path(2), b"half an upload")
    assert entry.missing_shards() == [2]
    with pytest.raises(StoreError, match="not written yet"):
        entry.read_shard(2)
    report = extract(backbones[:1], view, FeatureStore(url), **RUN)
    assert report.shards_written == 1
    local = FeatureStore(local_store).entry(entry.key)
    assert entry.files.fs.cat_file(entry.shard_path(2)) == local.shard_path(2).read_bytes()


@pytest.mark.slow
def test_killed_run_resumes(s3, backbones, local_store, tmp_path):
    """SIGKILL a CLI extraction once some shards are committed; the rerun completes the store
    (equal to the local engine's on the same images) and a third run writes nothing."""
    url = f"s3://{BUCKET}/killed"
    common = ["extract", "--data", clipfuse.demo_source("cifar10"), "--split", "test",
              "--limit", "1000", "--batch-size", "32", "--shard-size", "64", "--workers", "0",
              "--backbone", SPECS[0], "--backbone", SPECS[1]]  # fmt: skip
    args = [sys.executable, "-m", "clipfuse", *common, "--store", url, "--quiet"]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(clipfuse.__file__).parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(k.endswith(".commit") for k in prefixed("killed")) >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the extraction finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = sum(k.endswith(".commit") for k in prefixed("killed"))
    assert 4 <= done < 2 * 16

    assert subprocess.run(args, env=env, timeout=300, capture_output=True).returncode == 0
    store = FeatureStore(url)
    assert all(store.entry(k).is_complete() for k in store.entries())
    reference = tmp_path / "local"
    assert main([*common, "--store", str(reference), "--quiet"]) == 0
    ref_files = local_files(reference)
    got = s3_files("killed")
    assert got.keys() == ref_files.keys()
    assert got == ref_files
    rerun = subprocess.run(args[:-1], env=env, timeout=300, capture_output=True, text=True)
    assert "nothing to do" in rerun.stdout


def _cli_error(capsys, store: str, tmp_path: Path) -> str:
    code = main(["extract", "--backbone", "zoo:rn-tiny", "--data", clipfuse.demo_source("cifar10"),
                 "--split", "test", "--limit", "8", "--store", store, "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("clipfuse: error: ")
    assert "Traceback" not in err and "testing" not in err  # never a credential
    return err


def test_missing_bucket(s3, capsys, tmp_path):
    err = _cli_error(capsys, "s3://no-such-bucket/store", tmp_path)
    assert "no-such-bucket" in err and "create it" in err


def test_unreachable_endpoint(s3, capsys, tmp_path, monkeypatch):
    from s3 import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    err = _cli_error(capsys, f"s3://{BUCKET}/unreachable", tmp_path)
    assert "AWS_ENDPOINT_URL" in err and time.monotonic() - started < 30


def test_denied_credentials(s3, capsys, tmp_path, monkeypatch):
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys now
    err = _cli_error(capsys, f"s3://{BUCKET}/denied", tmp_path)
    assert "AWS_ACCESS_KEY_ID" in err
    monkeypatch.undo()
    assert not prefixed("denied")


def test_scheme_without_filesystem(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if the gcs extra were not installed
    err = _cli_error(capsys, "gs://bucket/store", tmp_path)
    assert 'pip install "clipfuse[gcs]"' in err
    err = _cli_error(capsys, "nosuchfs://bucket/store", tmp_path)
    assert "no filesystem known" in err
    assert not list(tmp_path.iterdir())


def test_file_url_is_the_local_store(tmp_path, backbones, view, local_store):
    store = FeatureStore(f"file://{tmp_path / 'store'}")
    assert store.root == tmp_path / "store"
    extract(backbones, view, store, **RUN)
    assert local_files(tmp_path / "store") == local_files(local_store)
