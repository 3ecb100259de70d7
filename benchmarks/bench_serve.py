"""`clipfuse serve` throughput and latency, side by side: micro-batching on vs off, concurrency
1 vs 8, NLC vs cascade, on the zoo backbones (issue 14).

Setup (cached in --work): the zoo backbones over the shipped CIFAR-10 demo train split, an NLC
and a cascade fitted on a 1-shot hold-out with `clipfuse fit`. Per method, one real `clipfuse
serve` subprocess per mode on 127.0.0.1 (own port, same torch threads), all up together after
/readyz and a few warm-up requests; their runs alternate (on, off, on, off, ...), --reps runs
each, the best (highest images/s) kept, so that other jobs on a shared machine hit both sides
alike. In a run, C client threads (httpx, one connection each) send single-image raw JPEG
requests of shipped demo test images until --requests are answered.

Reported per configuration: images/s (answered images / wall), client-side p50/p95 latency,
the mean images per model call (the answers' `timing.batch_images`), and per image the backbones
run and GFLOPs (a cascade's `cost`; for NLC every backbone's image GFLOPs). "on" is the default
--max-batch 32 --max-wait-ms 5; "off" is --max-batch 1 --max-wait-ms 0 (one image per model
call, the same code path otherwise). Every answer is checked against `clipfuse predict`.

    python benchmarks/bench_serve.py                      # 4 zoo backbones, 3 x 160 requests per configuration
    python benchmarks/bench_serve.py --requests 64 --backbone zoo:rn-tiny --backbone zoo:vit-p4
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _machine
import httpx

from clipfuse.backbones import list_backbones, load_backbone
from clipfuse.cli import main as clipfuse
from clipfuse.demo import DEMO_DATA

DEMO_CIFAR = DEMO_DATA / "cifar10-demo"
MODES = {"on": ["--max-batch", "32", "--max-wait-ms", "5"],
         "off": ["--max-batch", "1", "--max-wait-ms", "0"]}  # fmt: skip


def fitted(work: Path, specs: list[str], method: str) -> Path:
    """An ensemble fitted with the CLI (cached in `work`)."""
    out = work / f"{method}-{hashlib.sha256(' '.join(specs).encode()).hexdigest()[:10]}.safetensors"
    if out.is_file():
        return out
    data = ["--data", f"imagefolder:{DEMO_CIFAR}", "--store", str(work / "store")]
    backbones = [x for s in specs for x in ("--backbone", s)]
    assert clipfuse(["extract", *backbones, *data, "--split", "train", "--quiet"]) == 0
    assert clipfuse(["fit", *data, "--train-split", "train", "--method", method, "--shots", "1",
                     "--out", str(out)]) == 0  # fmt: skip
    return out


def demo_test_images(n: int, folder: Path) -> dict[str, bytes]:
    """The first n shipped demo test JPEGs (archive order), also written under `folder`."""
    images: dict[str, bytes] = {}
    with tarfile.open(DEMO_CIFAR / "test.tar") as tar:
        for member in tar:
            if member.isfile() and len(images) < n:
                path = folder / Path(member.name).name
                path.write_bytes(tar.extractfile(member).read())
                images[str(path)] = path.read_bytes()
    return images


def expected_answers(ensemble: Path, paths: list[str]) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            clipfuse(["predict", str(ensemble), *paths, "--json", "--quiet", "--workers", "0"]) == 0
        )
    return {p["image"]: p["label"] for p in json.loads(out.getvalue())["predictions"]}


@contextlib.contextmanager
def server(ensemble: Path, options: list[str], log: Path, threads: int):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log, "w") as sink:
        cmd = [
            sys.executable,
            "-m",
            "clipfuse.cli",
            "serve",
            str(ensemble),
            "--port",
            "0",
            *options,
        ]
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    started = time.perf_counter()
    try:
        url = None
        while proc.poll() is None and time.perf_counter() - started < 300:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                url = found.group(1)
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start: {log.read_text()[-1000:]}")
        yield url, time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load(url: str, images: dict[str, bytes], expected: dict[str, str], clients: int, requests: int):
    """`requests` single-image requests from `clients` threads: latencies, answers, wall."""
    items = list(images.items())
    per_client = [list(range(k, requests, clients)) for k in range(clients)]

    def client(indices: list[int]):
        out = []
        with httpx.Client(base_url=url, timeout=120) as http:
            for i in indices:
                path, data = items[i % len(items)]
                t0 = time.perf_counter()
                r = http.post("/v1/classify", content=data, headers={"content-type": "image/jpeg"})
                out.append((time.perf_counter() - t0, path, r))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [x for part in pool.map(client, per_client) for x in part]
    wall = time.perf_counter() - start
    wrong = sum(r.status_code != 200 or r.json()["predictions"][0]["label"] != expected[p]
                for _, p, r in results)  # fmt: skip
    return results, wall, wrong


def measure(url, images, expected, clients: int, requests: int, gflops: dict[str, float]) -> dict:
    results, wall, wrong = load(url, images, expected, clients, requests)
    lat = [1000 * t for t, _, _ in results]
    answers = [r.json() for _, _, r in results if r.status_code == 200]
    preds = [a["predictions"][0] for a in answers]
    per_image = [p.get("cost", sum(gflops.values())) for p in preds]  # NLC runs every backbone
    return {
        "requests": len(results), "wrong": wrong, "images_per_s": len(results) / wall,
        "p50_ms": statistics.median(lat), "p95_ms": percentile(lat, 0.95),
        "mean_batch": statistics.fmean(a["timing"]["batch_images"] for a in answers),
        "decode_ms": statistics.fmean(a["timing"]["decode_ms"] for a in answers),
        "model_ms": statistics.fmean(a["timing"]["model_ms"] for a in answers),
        "backbones_per_image": statistics.fmean(len(p["backbones"]) for p in preds),
        "gflops_per_image": statistics.fmean(per_image), "load": _machine.load_average(),
    }  # fmt: skip


def model_calls(ensemble: Path, images: dict[str, bytes], threads: int) -> dict[int, float]:
    """Milliseconds of one `predict_pixels` call in this process (no HTTP), per batch size: what
    batching can gain at most."""
    import torch

    from clipfuse.ensemble.predict import load_needed, predict_pixels, preprocess_images
    from clipfuse.ensemble.saved import SavedEnsemble
    from clipfuse.serve.decoding import Limits, Payload, decode_image

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        saved = SavedEnsemble.load(ensemble)
        backbones = load_needed(saved)
        decoded = [decode_image(Payload(p, d), Limits()) for p, d in images.items()]
        out = {}
        for n in (1, 8, 32):
            pixels = preprocess_images(backbones, (decoded * 32)[:n])
            predict_pixels(saved, backbones, pixels)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                predict_pixels(saved, backbones, pixels)
                times.append(1000 * (time.perf_counter() - start))
            out[n] = min(times)
        return out
    finally:
        torch.set_num_threads(before)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run(args) -> None:
    specs = args.backbone or [e.spec for e in list_backbones("zoo:*")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = _machine.describe("cpu")
    print(f"machine: {json.dumps(machine)}")
    print(f"backbones: {', '.join(specs)}; server torch threads: {args.threads}")
    gflops = {s: load_backbone(s).info.image_gflops or 0.0 for s in specs}
    ensembles = {m: fitted(work, specs, m) for m in args.methods}
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    images = demo_test_images(args.images, folder)
    model_rows: dict[str, dict[int, float]] = {}
    rows, runs = [], []  # rows: the best run (highest img/s) of each configuration
    for method, ensemble in ensembles.items():
        expected = expected_answers(ensemble, list(images))
        calls = model_calls(ensemble, images, args.threads)
        model_rows[method] = calls
        print(f"{method}: one model call in-process (best of 5): "
              + ", ".join(f"{n} images {ms:.1f} ms ({ms / n:.2f} ms/image)" for n, ms in calls.items()), flush=True)  # fmt: skip
        with contextlib.ExitStack() as stack:
            servers = {}  # every mode's server up at once: their runs alternate, same minutes
            for mode in args.modes:
                log = work / f"serve-{method}-{mode}.log"
                servers[mode] = stack.enter_context(
                    server(ensemble, MODES[mode], log, args.threads)
                )
                load(servers[mode][0], images, expected, 2, 8)  # warm-up: connections, caches
            best: dict[tuple[str, int], dict] = {}
            for rep in range(args.reps):
                for clients in args.clients:
                    for mode, (url, startup) in servers.items():
                        r = measure(url, images, expected, clients, args.requests, gflops)
                        r.update(
                            method=method,
                            batching=mode,
                            clients=clients,
                            rep=rep,
                            startup_s=startup,
                        )
                        print(f"{method:8} batching {mode:3} clients {clients} run {rep + 1}: "
                              f"{r['images_per_s']:7.1f} img/s  p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
                              f"batch {r['mean_batch']:4.1f}  decode {r['decode_ms']:4.1f} ms  model {r['model_ms']:5.1f} ms  wrong {r['wrong']}  (server ready in {startup:.1f} s, "
                              f"load {r['load']})", flush=True)  # fmt: skip
                        runs.append(r)
                        if r["images_per_s"] > best.get((mode, clients), {}).get(
                            "images_per_s", -1
                        ):
                            best[(mode, clients)] = r
            rows.extend(best.values())
    print()
    print(f"{'method':8} {'clients':>7} {'img/s on':>9} {'img/s off':>9} {'on/off':>7} "
          f"{'p50 on':>7} {'p50 off':>7} {'p95 on':>7} {'p95 off':>7} {'batch on':>8} {'backbones':>9} {'GFLOPs':>7}")  # fmt: skip
    key = {(r["method"], r["batching"], r["clients"]): r for r in rows}
    for method in ensembles:
        for clients in args.clients:
            on, off = key.get((method, "on", clients)), key.get((method, "off", clients))
            if not (on and off):
                continue
            print(f"{method:8} {clients:>7} {on['images_per_s']:9.1f} {off['images_per_s']:9.1f} "
                  f"{on['images_per_s'] / off['images_per_s']:6.2f}x {on['p50_ms']:7.1f} {off['p50_ms']:7.1f} "
                  f"{on['p95_ms']:7.1f} {off['p95_ms']:7.1f} {on['mean_batch']:8.1f} "
                  f"{on['backbones_per_image']:9.2f} {on['gflops_per_image']:7.4f}")  # fmt: skip
    if {"nlc", "cascade"} <= set(ensembles):
        nlc = [r for r in rows if r["method"] == "nlc"][0]
        cas = [r for r in rows if r["method"] == "cascade"][0]
        print(f"\ncascade / NLC per image: GFLOPs {cas['gflops_per_image'] / nlc['gflops_per_image']:.2f}, "
              f"backbones run {cas['backbones_per_image']:.2f} / {nlc['backbones_per_image']:.0f}")  # fmt: skip
    print(
        f"wrong answers (vs `clipfuse predict`): {sum(r['wrong'] for r in rows)} of {sum(r['requests'] for r in rows)}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "backbones": specs, "rows": rows}, indent=1)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", action="append", help="spec (repeat); default: every zoo backbone"
    )
    parser.add_argument("--methods", nargs="+", default=["nlc", "cascade"])
    parser.add_argument("--modes", nargs="+", default=["on", "off"], choices=list(MODES))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--requests", type=int, default=160, help="requests per run")
    parser.add_argument("--reps", type=int, default=3, help="runs per configuration (best kept)")
    parser.add_argument("--images", type=int, default=40, help="distinct demo test images sent")
    parser.add_argument(
        "--work", default=os.path.join(tempfile.gettempdir(), "clipfuse-bench-serve")
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="the server's torch threads (OMP_NUM_THREADS)"
    )
    parser.add_argument("--json", default=None, help="write the rows here")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
