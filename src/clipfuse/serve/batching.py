"""Micro-batching: requests from many clients wait a few milliseconds in one queue, so the
model runs once on up to `max_batch` images instead of once per request. The model runs in one
dedicated thread (torch never blocks the event loop, and only one model is in memory); while it
runs, new requests pile up and form the next batch, so batches grow with the load by themselves.

The wait is only spent when it can pay: requests announce themselves (`expecting`) when they
start reading their body, and a batch stops waiting as soon as no announced request is still
on its way, so a lone client never waits `max_wait_ms` for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

Pixels = dict[int, torch.Tensor]  # backbone position -> (N, 3, H, W)
RunBatch = Callable[[Pixels], list[dict[str, Any]]]


@dataclass
class _Job:
    pixels: Pixels
    n: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """`await submit(pixels)` -> (one record per image, timing). Jobs are taken in arrival order;
    a job never waits behind the batch limit for a later, smaller one."""

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="clipfuse-model")
        self._task: asyncio.Task | None = None
        self._coming = 0  # requests being read or decoded, not yet submitted

    @contextlib.contextmanager
    def expecting(self):
        """Around reading + decoding a request: a batch may wait for it."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1
            self._arrived.set()  # a waiting batch re-checks whether anyone is still coming

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError("server shutting down"))
        self._executor.shutdown(wait=True)

    async def in_model_thread(self, fn: Callable, *args):
        """Run `fn` in the model thread (warm-up), between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, pixels: Pixels) -> tuple[list[dict[str, Any]], dict[str, float]]:
        n = len(next(iter(pixels.values())))
        job = _Job(pixels, n, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._arrived.set()
        return await job.future

    async def _wait_for_job(self) -> None:
        while not self._jobs:
            await self._wait_for_signal(None)

    async def _wait_for_signal(self, timeout: float | None) -> None:
        """Until a job arrives, an expected request gives up, or `timeout` seconds."""
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_job()
            jobs = [self._jobs.popleft()]
            n = jobs[0].n
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                if not self._jobs:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._coming == 0:
                        break  # the wait is over, or nobody is on the way
                    await self._wait_for_signal(remaining)
                    continue
                if n + self._jobs[0].n > self.max_batch:
                    break  # it starts the next batch
                jobs.append(self._jobs.popleft())
                n += jobs[-1].n
            await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if not j.future.done()]  # a client that went away is skipped
        if not jobs:
            return
        started = time.perf_counter()
        pixels = {b: torch.cat([j.pixels[b] for j in jobs]) for b in jobs[0].pixels}
        try:
            records = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._chunks, pixels
            )
        except Exception as exc:  # the model failed: every waiting request hears it
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        model_ms = 1000 * (time.perf_counter() - started)
        total = sum(j.n for j in jobs)
        offset = 0
        for job in jobs:
            timing = {
                "queue_ms": 1000 * (started - job.enqueued),
                "model_ms": model_ms,
                "batch_images": total,
                "batch_requests": len(jobs),
            }
            if not job.future.done():
                job.future.set_result((records[offset : offset + job.n], timing))
            offset += job.n

    def _chunks(self, pixels: Pixels) -> list[dict[str, Any]]:
        """Model calls of at most max_batch images (a request larger than that is split)."""
        n = len(next(iter(pixels.values())))
        records: list[dict[str, Any]] = []
        for start in range(0, n, self.max_batch):
            chunk = {b: p[start : start + self.max_batch] for b, p in pixels.items()}
            records.extend(self.run_batch(chunk))
            if self.on_batch is not None:
                self.on_batch(min(self.max_batch, n - start))
        return records
