"""The Ray engine: the same store as the local engine, bit for bit; a killed worker is retried and
the job writes only the missing shards; a rerun is a no-op; evaluation fanned out as Ray tasks
equals the serial run; no Ray, a bad address or unreadable data give one line and exit 2.

One local Ray (`ray.init(num_cpus=2)`, a 200 MB object store) serves the module and is shut
down after it. Each Ray Data job pays its actors' start-up (importing torch and open_clip in
every actor), so the module runs two extraction jobs and one evaluation job.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clipfuse.backbones import load_backbone
from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.engines import EngineError, get_engine
from clipfuse.engines.ray_stages import CRASH_ONCE_ENV
from clipfuse.evaluation.fanout import EvalJob, evaluate_grid
from clipfuse.evaluation.runner import evaluate_methods
from clipfuse.evaluation.zeroshot_eval import zeroshot_table
from clipfuse.logits import load_bundle
from clipfuse.store import FeatureStore

DEMO = Path(__file__).resolve().parents[1] / "src" / "clipfuse" / "demo_data" / "cifar10-demo"
SPECS = ("zoo:rn-tiny", "zoo:vit-p4")
# shard size a multiple of the batch size: blocks are the local engine's batches exactly
RUN = {"batch_size": 32, "shard_size": 64, "feature_dtype": "float32", "progress": False}
# The local engine decodes in this process here: forking DataLoader workers from a process whose
# Ray driver threads are running can deadlock (a CI rehearsal hung once in the float16 test).
LOCAL_RUN = {**RUN, "num_workers": 0}


@pytest.fixture(scope="module")
def backbones():
    return [load_backbone(s) for s in SPECS]


@pytest.fixture(scope="module")
def test_view():
    return open_dataset(f"imagefolder:{DEMO}", "test", limit=320)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, backbones, test_view) -> Path:
    """The reference: both demo splits extracted by the local engine."""
    root = tmp_path_factory.mktemp("local-store")
    store = FeatureStore(root)
    get_engine("local").extract(backbones, test_view, store, **LOCAL_RUN)
    train = open_dataset(f"imagefolder:{DEMO}", "train", limit=200)
    get_engine("local").extract(backbones, train, store, **LOCAL_RUN)
    return root


@pytest.fixture(scope="module")
def ray_engine(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the Ray engine tests need ray[data] (test extra)")
    trigger_dir = tmp_path_factory.mktemp("crash-trigger")
    os.environ[CRASH_ONCE_ENV] = str(trigger_dir / "crash-once")  # workers inherit it
    # Ray runs its workers at nice 15; on a CI box shared with other jobs that starves the actors
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
    )
    engine = get_engine("ray")
    try:
        yield engine
    finally:
        engine.close()
        ray.shutdown()
        os.environ.pop(CRASH_ONCE_ENV, None)
        os.environ.pop("RAY_worker_niceness", None)


def shard_bytes(root: Path, view: str | None = None) -> dict[str, bytes]:
    pattern = f"views/{view or '*'}/*/shard-*.safetensors"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


def test_ray_store_is_the_local_store_and_a_rerun_is_a_no_op(
    ray_engine, backbones, test_view, local_store, tmp_path
):
    store = FeatureStore(tmp_path / "ray")
    report = ray_engine.extract(backbones, test_view, store, **RUN)
    assert report.images_processed == 320 and report.shards_written == 2 * 5
    expected = shard_bytes(local_store, report.view)
    assert len(expected) == 10 and shard_bytes(store.root) == expected  # byte-identical shards
    for key in store.entries():
        ray_manifest, local_manifest = (
            FeatureStore(r).manifest(key) for r in (store.root, local_store)
        )
        for field in ("provenance", "num_samples", "shard_size", "feature_dtype", "summary"):
            got, want = ray_manifest[field], local_manifest[field]
            if field == "summary":
                got, want = ({k: v for k, v in s.items() if k != "finalized"} for s in (got, want))
            assert got == want, field
    bundles = [
        load_bundle(FeatureStore(r), report.view, classnames=test_view.classnames)
        for r in (store.root, local_store)
    ]
    assert zeroshot_table(bundles[0]) == zeroshot_table(bundles[1])

    mtimes = {p: p.stat().st_mtime_ns for p in store.root.glob("views/*/*/*")}
    again = ray_engine.extract(backbones, test_view, store, **RUN)
    assert (again.images_processed, again.shards_written) == (0, 0)
    local_again = get_engine("local").extract(backbones, test_view, store, **LOCAL_RUN)
    assert (local_again.images_processed, local_again.shards_written) == (0, 0)
    assert {p: p.stat().st_mtime_ns for p in store.root.glob("views/*/*/*")} == mtimes


def test_killed_worker_is_retried_and_only_missing_shards_are_written(
    ray_engine, backbones, test_view, local_store, tmp_path
):
    """A local store that lost shards (a killed run) is completed by the Ray engine while one of
    its actors dies mid-job: Ray restarts it, retries the block, and the store ends whole."""
    root = tmp_path / "partial"
    shutil.copytree(local_store, root)
    store = FeatureStore(root)
    view = next(v for v in store.views() if "-test-" in v)
    rn, vit = sorted(store.entries(view), key=lambda k: k.backbone)  # rn-tiny, vit-p4
    removed = [store.entry(rn).shard_path(1), store.entry(rn).shard_path(4)]
    removed.append(store.entry(vit).shard_path(4))
    for path in removed:
        path.unlink()
    kept = {p: p.stat().st_mtime_ns for p in root.glob(f"views/{view}/*/shard-*")}
    trigger = Path(os.environ[CRASH_ONCE_ENV])
    trigger.touch()

    report = ray_engine.extract(backbones, test_view, store, **RUN)

    assert not trigger.exists(), "no actor crashed: the retry path was not exercised"
    assert report.shards_written == 3 and report.images_processed == 2 * 64
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # complete shards untouched
    assert shard_bytes(root, view) == shard_bytes(local_store, view)
    assert all(store.entry(k).is_complete() for k in (rn, vit))
    assert not [p for p in root.glob(f"views/{view}/*/.*.tmp")]  # no half-written files


def test_evaluation_fanned_out_as_ray_tasks_equals_the_serial_run(ray_engine, local_store):
    store = FeatureStore(local_store)
    views = {
        split: next(v for v in store.views() if f"-{split}-" in v) for split in ("train", "test")
    }
    train, test = (load_bundle(store, views[s]) for s in ("train", "test"))
    methods = ["best_single", "mean_logits", "calibrated_mean", "nlc"]
    budgets, seeds = [(1, None), (4, None)], [0, 1]
    options = {"method_params": {"nlc": {"steps": 20}}}
    serial = evaluate_methods(
        train, test, methods, budgets, seeds, dataset="cifar10", progress=False, **options
    )
    (fanned,) = evaluate_grid(
        ray_engine, [EvalJob(train, test, "cifar10")], methods, budgets, seeds, **options
    )

    def comparable(result):
        out = result.to_dict()
        for record in out["records"]:
            record.pop("fit_s"), record.pop("predict_s")
        for row in out["summary"]:
            row.pop("fit_s"), row.pop("predict_s")
        return out

    assert comparable(fanned) == comparable(serial)
    assert len(fanned.records) == len(methods) * len(budgets) * len(seeds)
    assert np.array_equal(fanned.temperatures["nlc"].numpy(), serial.temperatures["nlc"].numpy())


def _extract_argv(store: Path, *extra: str) -> list[str]:
    return [
        "extract",
        "--backbone",
        "zoo:rn-tiny",
        "--data",
        f"imagefolder:{DEMO}",
        "--split",
        "test",
        "--limit",
        "20",
        "--store",
        str(store),
        "--quiet",
        *extra,
    ]


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(EngineError, match=r'pip install "clipfuse\[ray\]"'):
        get_engine("ray")
    assert main(_extract_argv(tmp_path / "s", "--engine", "ray")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['clipfuse: error: the Ray engine needs Ray Data: pip install "clipfuse[ray]"']
    assert not (tmp_path / "s").exists()


def test_unreachable_or_malformed_address_fails_fast_in_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, message in [
        (f"127.0.0.1:{port}", f"cannot reach a Ray cluster at 127.0.0.1:{port}"),
        (f"ray://127.0.0.1:{port}", "cannot reach a Ray cluster at ray://"),
        ("nonsense", "--ray-address must be auto, HOST:PORT or ray://HOST:PORT"),
    ]:
        start = time.perf_counter()
        assert main(_extract_argv(tmp_path / "s", "--engine", "ray", "--ray-address", address)) == 2
        assert time.perf_counter() - start < 10
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "s").exists()  # nothing written before the engine was there
    assert main(_extract_argv(tmp_path / "s", "--ray-address", "auto")) == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err


def test_default_pools_fit_the_cluster_and_split_gpus_by_gflops():
    from types import SimpleNamespace

    from clipfuse.engines.ray import pool_shapes

    def fake(device: str, gflops: float | None):
        return SimpleNamespace(
            device=SimpleNamespace(type=device), info=SimpleNamespace(image_gflops=gflops)
        )

    shapes, decode = pool_shapes([fake("cpu", 0.1)] * 4, cpus=2, gpus=0)
    assert {(s.num_cpus, s.concurrency) for s in shapes} == {(0.4, 1)} and decode == 0.4
    assert sum(s.num_cpus * s.concurrency for s in shapes) + decode <= 2
    shapes, _ = pool_shapes([fake("cpu", 0.1)] * 2, cpus=16, gpus=0)
    assert [(s.num_cpus, s.concurrency) for s in shapes] == [(1.0, 5), (1.0, 5)]
    # 8 GPUs, one heavy backbone (191 GFLOPs) and two light ones (4.4): 7 actors and 0.18 GPU
    shapes, _ = pool_shapes([fake("cuda", 191.0), fake("cuda", 4.4), fake("cuda", 4.4)], 32, 8)
    assert (shapes[0].num_gpus, shapes[0].concurrency) == (1.0, 7)
    assert shapes[1].concurrency == 1 and 0.17 < shapes[1].num_gpus < 0.18
    assert sum(s.num_gpus * s.concurrency for s in shapes) <= 8


def test_a_worker_that_cannot_read_the_data_stops_the_job_in_one_line(tmp_path):
    """The decode stage, called as Ray calls it, on data a node cannot see (a deleted file)."""
    from clipfuse.engines.ray_stages import read_and_decode
    from clipfuse.errors import DataError

    folder = tmp_path / "images"
    shutil.copytree(DEMO, folder)
    dataset = open_dataset(f"imagefolder:{folder}", "test", limit=20)
    chunk = {"shard": np.array([0]), "start": np.array([0]), "stop": np.array([4])}
    rows = read_and_decode(chunk, dataset)
    assert list(rows["position"]) == [0, 1, 2, 3] and not any(rows["error"])
    assert rows["image"][0].shape == (32, 32, 3)
    (folder / "test.tar").unlink()
    (folder / "train.tar").unlink()
    dataset.reader.__setstate__(dataset.reader.__getstate__())  # as a fresh worker opens it
    with pytest.raises(DataError, match="cannot read sample .* every node must see the data"):
        read_and_decode(chunk, dataset)


def test_a_failed_ray_task_is_one_line_with_the_user_error(ray_engine):
    from clipfuse.errors import DataError

    def raise_data_error(shared, item):  # local: pickled by value, workers can't import tests
        from clipfuse.errors import DataError

        raise DataError(f"bad item {item}")

    with pytest.raises(DataError) as info:
        ray_engine.map(raise_data_error, [7])
    assert str(info.value) == "bad item 7"  # not Ray's multi-line traceback


def test_a_complete_store_is_checked_before_ray_starts(
    local_store, backbones, test_view, monkeypatch
):
    """`--engine ray` on finished work: the engine checks the store first and never starts Ray."""
    import clipfuse.engines.ray as ray_module

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a no-op run")

    monkeypatch.setattr(ray_module, "connect", no_ray)
    engine = get_engine("ray")
    report = engine.extract(backbones, test_view, FeatureStore(local_store), **RUN)
    assert (report.images_processed, report.shards_written) == (0, 0)
    engine.close()


def test_float16_shards_equal_under_the_drivers_thread_count(
    ray_engine, backbones, test_view, tmp_path, monkeypatch
):
    """Default float16 features with 2 torch threads in the driver: the actors use the driver's
    thread count (oneDNN convolutions round differently with 1 thread), so the Ray shards are
    the local ones byte for byte; the driver receives receipts, never features."""
    import torch

    import clipfuse.engines.ray as ray_module

    seen: list[set[str]] = []
    commit = ray_module._commit
    monkeypatch.setattr(
        ray_module, "_commit", lambda batch, *a: seen.append(set(batch)) or commit(batch, *a)
    )
    run = {**RUN, "feature_dtype": "float16"}
    local_run = {**LOCAL_RUN, "feature_dtype": "float16"}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = FeatureStore(tmp_path / "local")
        get_engine("local").extract(backbones[:1], test_view, local, **local_run)
        store = FeatureStore(tmp_path / "ray")
        ray_engine.extract(backbones[:1], test_view, store, **run)
    finally:
        torch.set_num_threads(threads)
    assert shard_bytes(store.root) == shard_bytes(local.root) and len(shard_bytes(local.root)) == 5
    assert seen and all(not any(c.startswith("features") for c in cols) for cols in seen)
    assert all("image" not in cols for cols in seen)
