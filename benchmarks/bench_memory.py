"""Peak memory of extraction with the paper's nine OpenAI CLIP architectures in one pass (issue 15).

RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336 with random
weights from open_clip's own configs (copied to benchmarks/configs), over 8 ImageNet-sample
images (`--limit 8`), into a fresh store. Each path runs in its own child process, and its peak
resident set size is the kernel's (`os.wait4`'s `ru_maxrss` of that child: exact, not sampled).

  cli   `clipfuse extract --backbone ... x9`: what a user runs; it builds one model at a time
        and frees each text tower before building the next (`load_backbone(image_only=True)`)
  full  the same extraction with the nine full models held at once (text towers included),
        as `extract` did before: the reference the target is measured against

Heavy (the full path holds ~11 GiB): one path per run by default.

    python benchmarks/bench_memory.py                  # the cli path
    python benchmarks/bench_memory.py --paths cli,full # both, one after the other
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import _machine

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).resolve().parent / "configs"
ARCHS = (
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B-32",
    "ViT-B-16",
    "ViT-L-14",
    "ViT-L-14-336",
)
DATA = "imagefolder:/work/shared/data/imagenet-sample/imagenet-sample-1000.tar"
TARGET_GIB = 8.0

FULL_MODELS = """
import sys
from clipfuse.backbones import load_backbone
from clipfuse.data import open_dataset
from clipfuse.extraction import extract
from clipfuse.store import FeatureStore
specs, data, store = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
backbones = [load_backbone(s) for s in specs]  # nine full models at once
report = extract(backbones, open_dataset(data, "all", limit=8), FeatureStore(store), progress=False)
print(f"{report.images_processed} images x {len(backbones)} backbones")
"""


def specs() -> list[str]:
    return [f"{CONFIGS / arch}.json:random" for arch in ARCHS]


def command(path: str, data: str, store: Path) -> list[str]:
    if path == "cli":
        args = [sys.executable, "-m", "clipfuse.cli", "extract"]
        for spec in specs():
            args += ["--backbone", spec]
        return args + [
            "--data",
            data,
            "--split",
            "all",
            "--limit",
            "8",
            "--store",
            str(store),
            "--quiet",
        ]
    return [sys.executable, "-c", FULL_MODELS, *specs(), data, str(store)]


def run_path(path: str, data: str) -> dict:
    """One path in a fresh child process: its own peak RSS (GiB, from `wait4`) and wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    with tempfile.TemporaryDirectory(prefix="clipfuse-bench-memory-") as tmp:
        logs = Path(tmp) / "out.txt", Path(tmp) / "err.txt"
        start = time.perf_counter()
        with logs[0].open("w") as out, logs[1].open("w") as err:
            child = subprocess.Popen(
                command(path, data, Path(tmp) / "store"), env=env, stdout=out, stderr=err
            )
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, exact peak RSS
            child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        stdout, stderr = logs[0].read_text(), logs[1].read_text()
    if child.returncode != 0:
        raise SystemExit(f"{path} path failed ({child.returncode}):\n{stderr[-2000:]}")
    return {
        "path": path,
        "peak_rss_gib": round(usage.ru_maxrss / 1024**2, 2),
        "seconds": round(seconds, 1),
        "output": stdout.strip().splitlines()[-1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="cli", help="comma list of cli, full (order kept)")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if set(paths) - {"cli", "full"}:
        parser.error(f"--paths takes cli and/or full, got {args.paths!r}")
    machine = _machine.describe()
    results = []
    for path in paths:
        result = run_path(path, args.data)
        result["load_1min_after"] = _machine.load_average()
        results.append(result)
        verdict = "meets" if result["peak_rss_gib"] <= TARGET_GIB else "misses"
        print(
            f"{path:5s} peak RSS {result['peak_rss_gib']:.2f} GiB in {result['seconds']:.0f} s "
            f"({verdict} the {TARGET_GIB:g} GiB target; {result['output']})"
        )
    record = {
        "benchmark": "bench_memory",
        "archs": list(ARCHS),
        "images": 8,
        "data": args.data,
        "target_gib": TARGET_GIB,
        "machine": machine,
        "results": results,
    }
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out = Path(args.out) / f"memory-cpu-{day}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"machine: {machine}\nwrote {out}")


if __name__ == "__main__":
    main()
