"""The Ray engine: extraction as a Ray Data pipeline, evaluation draws as Ray tasks.

Pipeline (one block = `batches_per_block` batch-size slices of one missing shard)::

    from_items(chunks) -> map_batches(read_and_decode)             tasks: bytes read, decoded once
                       -> map_batches(BackboneEncoder, backbone 0)  actor pool, own preprocessing,
                       -> ...                                       own num_cpus / num_gpus
                       -> map_batches(BackboneEncoder, backbone B-1)
                       -> driver: ShardAssembler writes each shard when all its rows arrived

The driver plans the run with `plan_extraction` and writes shards with `ShardAssembler`, the
same code as the local engine, so both engines make the same store. Shards are written when
complete, atomically, under deterministic names; a killed actor is restarted and its block
retried by Ray Data; a killed driver leaves only complete shards, and the rerun does the rest.
"""

from __future__ import annotations

import logging
import os
import socket
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
    DEFAULT_SHARD_SIZE,
    ExtractionPlan,
    ExtractionReport,
    ShardAssembler,
    plan_extraction,
)
from clipfuse.store import FeatureStore

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


def connect(address: str | None, **init_kwargs: Any) -> bool:
    """Join the cluster at `address` (None: start a local Ray); True if this call started Ray.

    An address that does not answer a TCP connect within CONNECT_TIMEOUT_S fails at once with one
    line: `ray.init` itself retries an unreachable head for a minute or more.
    """
    ray = import_ray()
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
    threads: int  # torch intra-op threads per actor


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
    cpu_shape = PoolShape(1.0, 0.0, int(share), 1) if share >= 1 else PoolShape(share, 0.0, 1, 1)
    on_gpu = [bb for bb in backbones if bb.device.type == "cuda"]
    known = [bb.info.image_gflops for bb in on_gpu if bb.info.image_gflops]
    weight = {
        id(bb): (bb.info.image_gflops or 0.0) if len(known) == len(on_gpu) else 1.0 for bb in on_gpu
    }
    total = sum(weight.values()) or 1.0

    def gpu_shape(bb: Backbone) -> PoolShape:
        gpu_share = gpus * weight[id(bb)] / total
        if gpu_share >= 1:
            return PoolShape(1.0, 1.0, int(gpu_share), 1)
        return PoolShape(1.0, max(gpu_share, 0.01), 1, 1)

    shapes = tuple(gpu_shape(bb) if bb.device.type == "cuda" else cpu_shape for bb in backbones)
    return shapes, min(1.0, share)


class RayEngine(Engine):
    """Ray Data extraction and Ray-task evaluation on the cluster at `address`.

    `address=None` starts a local Ray instance (stopped by `close`); an already initialised Ray
    (e.g. `ray.init(num_cpus=2)` in a test) is used as it is and left running.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, batches_per_block: int = 4, **init_kwargs: Any
    ) -> None:
        self.ray = import_ray()
        self.batches_per_block = batches_per_block  # fewer, larger Ray calls; see BENCHMARKS.md
        self.started = connect(address, **init_kwargs)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False

    def map(self, fn: Callable[[Any, T], R], items: Sequence[T], shared: Any = None) -> list[R]:
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
        *,
        batch_size: int = 64,
        num_workers: int | None = None,  # local engine only: Ray sizes its own decode stage
        shard_size: int = DEFAULT_SHARD_SIZE,
        perturbation: Perturbation | None = None,
        perturbation_key: str | None = None,
        feature_dtype: str = "float16",
        progress: bool = True,
        threads: int | None = None,  # per encoder actor (default: its pool shape's, 1)
    ) -> ExtractionReport:
        plan = plan_extraction(
            backbones, dataset, store, shard_size, feature_dtype, perturbation_key
        )
        if not plan.todo_shards:
            return plan.close()
        assembler = ShardAssembler(plan, backbones, dataset)
        pipeline = self._pipeline(backbones, dataset, plan, batch_size, perturbation, threads)
        desc = f"extract {dataset.name}/{dataset.split} (ray)"
        with (
            tqdm(total=len(plan.positions), unit="img", desc=desc, disable=not progress) as bar,
            _job_errors(self.ray),
        ):
            for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
                ok, encoded, failures = _unpack(batch, plan)
                assembler.add(ok, encoded, failures)
                bar.update(len(ok) + len(failures))
        return assembler.close()

    def _pipeline(
        self,
        backbones: Sequence[Backbone],
        dataset: ImageDataset,
        plan: ExtractionPlan,
        batch_size: int,
        perturbation: Perturbation | None,
        threads: int | None = None,
    ):
        ray = self.ray
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no "progress bars disabled"
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one tqdm bar on the driver instead
        context.execution_options.preserve_order = False  # the assembler takes any order
        context.execution_options.verbose_progress = False
        rows = batch_size * self.batches_per_block
        chunks = [
            {"shard": s, "start": a, "stop": min(a + rows, stop)}
            for s in plan.todo_shards
            for start, stop in [plan.ranges[s]]
            for a in range(start, stop, rows)
        ]
        resources = ray.cluster_resources()
        if any(bb.device.type == "cuda" for bb in backbones) and not resources.get("GPU"):
            raise EngineError("a backbone is on --device cuda but the Ray cluster has no GPUs")
        shapes, decode_cpus = pool_shapes(
            backbones, float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        )
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
                    "threads": threads or shape.threads,
                    "keep_images": b < len(backbones) - 1,
                },
                compute=ray.data.ActorPoolStrategy(size=shape.concurrency),
                num_cpus=shape.num_cpus,
                num_gpus=shape.num_gpus,
            )
        return ds


def _unpack(batch: dict[str, Any], plan: ExtractionPlan):
    """An output block -> the (ok positions, {backbone: (positions, features)}, failures) triple
    that `ShardAssembler.add` takes; rows a backbone did not need carry no features."""
    positions = [int(p) for p in batch["position"]]
    errors = [str(e) for e in batch["error"]]
    ok = [p for p, e in zip(positions, errors) if not e]
    failures = [(p, e) for p, e in zip(positions, errors) if e]
    encoded = {}
    for b in range(len(plan.entries)):
        rows = [
            r
            for r, (p, e) in enumerate(zip(positions, errors))
            if not e and b in plan.needs_by_shard[p // plan.shard_size]
        ]
        if rows:
            encoded[b] = ([positions[r] for r in rows], batch[f"features_{b}"][rows])
    return ok, encoded, failures


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
