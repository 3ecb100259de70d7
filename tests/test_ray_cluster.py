"""Ray on a cluster that loses a node: `ray.cluster_utils.Cluster` on this machine, a head that
runs no work and three one-CPU worker nodes. The node running the encoder actor is killed once
the first shard is written; Ray restarts the actor on a surviving node and the job completes,
every shard written once, the store equal to the local engine's, byte for byte, and the rerun a
no-op. Then the same against the S3 store (moto on 127.0.0.1).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

import clipfuse
from clipfuse.backbones import load_backbone
from clipfuse.data import open_dataset
from clipfuse.engines import get_engine
from clipfuse.extraction.engine import extract
from clipfuse.store import FeatureStore

sys.path.insert(0, str(Path(__file__).parent))
from s3 import list_keys, list_names, make_bucket, moto_s3  # noqa: E402

pytestmark = pytest.mark.slow
RUN = {"batch_size": 32, "shard_size": 64, "progress": False}
LIMIT = 640  # 10 shards


@pytest.fixture(scope="module")
def s3():
    """Started before the cluster: its nodes (and so the workers) inherit AWS_ENDPOINT_URL."""
    with moto_s3() as endpoint:
        make_bucket("cluster")
        yield endpoint


@pytest.fixture(scope="module")
def cluster(s3):
    ray = pytest.importorskip("ray", reason="needs ray[data] (test extra)")
    from ray.cluster_utils import Cluster

    os.environ["RAY_worker_niceness"] = "0"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": 100 * 1024**2},
    )
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2) for _ in range(3)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield ray, cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop("RAY_worker_niceness", None)


@pytest.fixture(scope="module")
def work():
    return [load_backbone("zoo:rn-tiny")], open_dataset(
        clipfuse.demo_source("cifar10"), "test", limit=LIMIT
    )


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _runs_encoder(node) -> bool:
    """True if a process under this node's raylet is a Ray Data actor (`ray::MapWorker(...)`)."""
    raylet = node.all_processes["raylet"][0].process.pid
    for pid in _descendants(raylet):
        try:
            if b"MapWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _kill_when(written, cluster, workers, killed: list) -> threading.Thread:
    """A thread that removes the worker node hosting the encoder once `written()` (the number of
    shards committed) is at least 1, recording that number in `killed`."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not written():
            time.sleep(0.05)
        for node in workers:
            if _runs_encoder(node):
                done = written()
                workers.remove(node)  # the next test sees the surviving nodes only
                cluster.remove_node(node, allow_graceful=False)
                killed.extend([node, done])
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _shards(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("views/*/*/shard-*")}


def test_node_loss_mid_extraction(cluster, work, tmp_path):
    _, nodes, workers = cluster
    backbones, dataset = work
    reference = tmp_path / "local"
    extract(backbones, dataset, FeatureStore(reference), **RUN)

    store = FeatureStore(tmp_path / "ray")
    killed: list = []
    written_at_kill: dict = {}

    def written() -> int:
        found = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("views/*/*/shard-*")}
        written_at_kill.update(found)
        return len(found)

    thread = _kill_when(written, nodes, workers, killed)
    engine = get_engine("ray")
    started = time.monotonic()
    report = engine.extract(backbones, dataset, store, **RUN)
    thread.join(timeout=5)
    assert killed and 1 <= killed[1] < LIMIT // 64, "no worker node was killed mid-job"
    assert report.shards_written == LIMIT // 64  # every shard committed once
    assert all(p.stat().st_mtime_ns == t for p, t in written_at_kill.items())  # not rewritten
    assert _shards(tmp_path / "ray") == _shards(reference)
    assert time.monotonic() - started < 90
    again = engine.extract(backbones, dataset, store, **RUN)
    assert (again.images_processed, again.shards_written) == (0, 0)


def test_node_loss_against_s3(cluster, work, tmp_path):
    _, nodes, workers = cluster
    backbones, dataset = work
    reference = tmp_path / "local"
    extract(backbones, dataset, FeatureStore(reference), **RUN)
    # the workers read AWS_* from their environment, as on a real cluster
    url = "s3://cluster/store"
    store = FeatureStore(url)
    killed: list = []

    def written() -> int:
        return sum(k.endswith(".commit") for k in list_names("cluster"))

    thread = _kill_when(written, nodes, workers, killed)
    report = get_engine("ray").extract(backbones, dataset, store, **RUN)
    thread.join(timeout=5)
    assert report.shards_written == LIMIT // 64
    objects = list_keys("cluster")
    got = {k.removeprefix("store/"): v for k, v in objects.items() if "/shard-" in k}
    got = {k: v for k, v in got.items() if not k.endswith(".commit")}
    assert got == _shards(reference)
    again = get_engine("ray").extract(backbones, dataset, FeatureStore(url), **RUN)
    assert (again.images_processed, again.shards_written) == (0, 0)
    assert killed and 1 <= killed[1] < LIMIT // 64, "no worker node was killed mid-job"
