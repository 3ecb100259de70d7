"""The Ray engine: extraction as a Ray Data pipeline, evaluation draws as Ray tasks.

Pipeline (one block = one missing shard)::

    from_items(shards) -> map_batches(read_and_decode)             tasks: bytes read, decoded once
                       -> map_batches(BackboneEncoder, backbone 0)  actor pool, own preprocessing,
                       -> ...                                       own num_cpus / num_gpus; each
                       -> map_batches(BackboneEncoder, backbone B-1) writes its backbone's shard
                       -> driver: commits each shard from its receipt (size, SHA-256)

The driver plans the run with `plan_extraction`, the same code as the local engine, and writes
only manifests (and, on an object store, the commit markers): feature bytes never reach it. The
workers write shards with `StoreEntry.stage_shard`, the bytes the local engine writes. Shards are
written when complete, under deterministic names; a killed actor is restarted and its block
retried by Ray Data; a killed driver leaves only complete (committed) shards, and the rerun does
the rest. Ray itself is started only when a run has something to do.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from clipfuse.backbones.backbone import Backbone
from clipfuse.data.dataset import ImageDataset
from clipfuse.engines.base import Engine, EngineError, R, T
from clipfuse.engines.ray_stages import BackboneEncoder, read_and_decode
from clipfuse.errors import ClipfuseError
from clipfuse.extraction.decode_once import Perturbation
from clipfuse.extraction.engine import (
    ExtractionPlan,
    ExtractionReport,
    default_workers,
    plan_extraction,
)
from clipfuse.extraction.options import ExtractOptions
from clipfuse.extraction.threads import default_threads
from clipfuse.store import FeatureStore
from clipfuse.store.entry import ShardReceipt

INSTALL_HINT = 'the Ray engine needs Ray Data: pip install "clipfuse[ray]"'
CONNECT_TIMEOUT_S = 5.0


def import_ray():
    """`ray` and `ray.data`, or one line saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs ray[data]: pyarrow, pandas, ...)
    except ImportError:
        raise EngineError(INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """`(host, port)` of `HOST:PORT` or `ray://HOST:PORT`; None for `auto`."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EngineError(
            f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}"
        )
    return host.strip("[]"), int(port)


def probe(address: str | None) -> None:
    """An address that does not answer a TCP connect within CONNECT_TIMEOUT_S fails at once with
    one line: `ray.init` itself retries an unreachable head for a minute or more."""
    if address is not None:
        target = _host_port(address)
        if target is not None:
            try:
                socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise EngineError(
                    f"cannot reach a Ray cluster at {address} ({reason}); start one with "
                    "`ray start --head` or check --ray-address"
                ) from None


def connect(address: str | None, **init_kwargs: Any) -> bool:
    """Join the cluster at `address` (None: start a local Ray); True if this call started Ray."""
    ray = import_ray()
    probe(address)
    if ray.is_initialized():
        return False
    _absolute_pythonpath()
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            **init_kwargs,
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise EngineError(
            f"could not connect to Ray at {address or 'a new local instance'}: {first}"
        ) from None
    return address is None


def _absolute_pythonpath() -> None:
    """Workers of a local Ray inherit the environment but not the working directory: make
    relative PYTHONPATH entries (`PYTHONPATH=src`) absolute so that they import this clipfuse."""
    entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    if entries:
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(e) for e in entries)


@dataclass(frozen=True)
class PoolShape:
    """Resources of one backbone's actor pool."""

    num_cpus: float
    num_gpus: float
    concurrency: int


def pool_shapes(
    backbones: Sequence[Backbone], cpus: float, gpus: float
) -> tuple[tuple[PoolShape, ...], float]:
    """Default pools and the decode stage's CPUs, so that every stage fits on the cluster at once.

    GPU backbones split the GPUs in proportion to their GFLOPs per image (equally when a count
    is unknown): a share of one GPU or more becomes that many one-GPU actors, a smaller share one
    actor holding that fraction of a GPU. CPU backbones and the decode stage share the CPUs
    equally (B + 1 shares); a share of one CPU or more becomes that many one-CPU actors. Asking
    for more than the cluster has would leave a pool unscheduled and the job stalled.
    """
    b = max(1, len(backbones))
    share = cpus / (b + 1)
    cpu_shape = PoolShape(1.0, 0.0, int(share)) if share >= 1 else PoolShape(share, 0.0, 1)
    on_gpu = [bb for bb in backbones if bb.device.type == "cuda"]
    known = [bb.info.image_gflops for bb in on_gpu if bb.info.image_gflops]
    weight = {
        id(bb): (bb.info.image_gflops or 0.0) if len(known) == len(on_gpu) else 1.0 for bb in on_gpu
    }
    total = sum(weight.values()) or 1.0

    def gpu_shape(bb: Backbone) -> PoolShape:
        gpu_share = gpus * weight[id(bb)] / total
        if gpu_share >= 1:
            return PoolShape(1.0, 1.0, int(gpu_share))
        return PoolShape(1.0, max(gpu_share, 0.01), 1)

    shapes = tuple(gpu_shape(bb) if bb.device.type == "cuda" else cpu_shape for bb in backbones)
    return shapes, min(1.0, share)


class RayEngine(Engine):
    """Ray Data extraction and Ray-task evaluation on the cluster at `address`.

    `address=None` starts a local Ray instance (stopped by `close`); an already initialised Ray
    (e.g. `ray.init(num_cpus=2)` in a test) is used as it is and left running. Creating the
    engine checks that Ray is installed and the address answers; Ray is started (or joined) on
    first use, so a rerun with nothing to extract never pays Ray's start-up.
    """

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        self.ray = import_ray()
        probe(address)
        self.address, self.init_kwargs = address, init_kwargs
        self.started = False
        self.connected = False

    def connect(self) -> None:
        if not self.connected:
            self.started = connect(self.address, **self.init_kwargs)
            self.connected = True

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False
        self.connected = False

    def map(self, fn: Callable[[Any, T], R], items: Sequence[T], shared: Any = None) -> list[R]:
        self.connect()
        ray = self.ray
        shared_ref = ray.put(shared)  # sent once, read by every task
        task = ray.remote(num_cpus=1)(_call)
        refs = [task.remote(fn, shared_ref, item) for item in items]
        with _job_errors(ray):
            return ray.get(refs)

    def extract(
        self,
        backbones: Sequence[Backbone],
        dataset: ImageDataset,
        store: FeatureStore,
        options: ExtractOptions | None = None,
        **kwargs: Any,
    ) -> ExtractionReport:
        opts = ExtractOptions.of(options, **kwargs)  # num_workers: Ray sizes its own decode stage
        batch_size, perturbation, progress = opts.batch_size, opts.perturbation, opts.progress
        plan = plan_extraction(
            backbones, dataset, store, opts.shard_size, opts.feature_dtype, opts.perturbation_key
        )
        if not plan.todo_shards:
            return plan.close()
        self.connect()
        pipeline = self._pipeline(
            backbones, dataset, plan, batch_size, perturbation, store, opts.threads
        )
        desc = f"extract {dataset.name}/{dataset.split} (ray)"
        expected = {(b, s) for s, needs in plan.needs_by_shard.items() for b in needs}
        with (
            tqdm(total=len(plan.positions), unit="img", desc=desc, disable=not progress) as bar,
            _job_errors(self.ray),
        ):
            for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
                done = _commit(batch, plan, dataset)
                expected -= done
                bar.update(len(batch["position"]))
        if expected:
            raise EngineError(
                f"the Ray job ended without writing {len(expected)} shard(s); rerun to finish"
            )
        return plan.close()

    def _pipeline(
        self,
        backbones: Sequence[Backbone],
        dataset: ImageDataset,
        plan: ExtractionPlan,
        batch_size: int,
        perturbation: Perturbation | None,
        store: FeatureStore,
        threads: int | None = None,
    ):
        ray = self.ray
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no "progress bars disabled"
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one tqdm bar on the driver instead
        context.execution_options.preserve_order = False  # the assembler takes any order
        context.execution_options.verbose_progress = False
        context.target_max_block_size = None  # a block is one shard: never split it
        chunks = [
            {"shard": s, "start": plan.ranges[s][0], "stop": plan.ranges[s][1]}
            for s in plan.todo_shards
        ]
        resources = ray.cluster_resources()
        if any(bb.device.type == "cuda" for bb in backbones) and not resources.get("GPU"):
            raise EngineError("a backbone is on --device cuda but the Ray cluster has no GPUs")
        shapes, decode_cpus = pool_shapes(
            backbones, float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        )
        local_threads = threads or default_threads(default_workers(backbones))
        ds = ray.data.from_items(chunks, override_num_blocks=len(chunks))
        ds = ds.map_batches(
            read_and_decode,
            batch_size=None,
            batch_format="numpy",
            fn_kwargs={"dataset": dataset, "perturbation": perturbation},
            num_cpus=decode_cpus,
        )
        for b, (backbone, shape) in enumerate(zip(backbones, shapes)):
            ds = ds.map_batches(
                BackboneEncoder,
                batch_size=None,
                batch_format="numpy",
                fn_constructor_kwargs={
                    "index": b,
                    "spec": backbone.info.spec,
                    "fingerprint": backbone.info.fingerprint,
                    "preprocess_repr": repr(backbone.preprocess),
                    "device": "cuda" if backbone.device.type == "cuda" else "cpu",
                    "precision": backbone.precision,
                    "embed_dim": backbone.info.embed_dim,
                    "needs_by_shard": plan.needs_by_shard,
                    "batch_size": batch_size,
                    "shard_size": plan.shard_size,
                    # the local engine's count unless told: oneDNN's convolutions round
                    # differently with another one (zoo:rn-tiny, 1 vs 2 threads: 3,339 of 4,096
                    # float32 differ), and shards must equal the local engine's
                    "threads": local_threads,
                    "keep_images": b < len(backbones) - 1,
                    "store": store,
                    "entry_key": plan.entries[b].key,
                    "dataset": dataset,
                },
                compute=ray.data.ActorPoolStrategy(size=shape.concurrency),
                num_cpus=shape.num_cpus,
                num_gpus=shape.num_gpus,
            )
        return ds


def _commit(batch: dict[str, Any], plan: ExtractionPlan, dataset: ImageDataset) -> set:
    """An output block (positions, decode errors, one receipt per backbone's shard written) ->
    the shards committed and the report updated; returns the `(backbone, shard)` pairs done."""
    report = plan.report
    if report.first_batch_seconds is None:
        report.first_batch_seconds = time.perf_counter() - plan.start_time
    for position, error in zip(batch["position"], batch["error"]):
        if error:
            report.failures.append(
                {"index": int(position), "sample_id": dataset.sample_ids[position], "error": error}
            )
    report.images_processed += len(batch["position"])
    done = set()
    for b, entry in enumerate(plan.entries):
        for text in batch[f"receipt_{b}"]:
            if text:
                receipt = ShardReceipt(**json.loads(text))
                entry.commit_shard(receipt)
                report.shards_written += 1
                done.add((b, receipt.shard))
    return done


def _call(fn, shared, item):
    return fn(shared, item)


class _job_errors:
    """Turn a failed Ray job into one line (the user's own ClipfuseError when that is the cause)."""

    def __init__(self, ray) -> None:
        self.ray = ray

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        if not (isinstance(exc, self.ray.exceptions.RayError) or _from_ray(exc)):
            return False  # the driver's own errors (store, provenance) pass through as they are
        cause = _root_cause(exc)
        if isinstance(cause, ClipfuseError) and not _from_ray(cause):
            raise type(cause)(str(cause)) from None
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
        raise EngineError(f"the Ray job failed: {type(cause).__name__}: {first}") from None


def _from_ray(exc: BaseException) -> bool:
    return any(c.__module__.split(".")[0] == "ray" for c in type(exc).__mro__)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost user exception of a RayTaskError / Ray Data error chain."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if inner is None or not isinstance(inner, BaseException):
            break
        exc = inner
    return exc
