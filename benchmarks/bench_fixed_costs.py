"""Fixed cost of each command when there is (almost) nothing to do, next to `import torch` (issue 23).

Each command runs as a fresh process, the way a user types it, on a store prepared once (the
shipped demo CIFAR-10 train split, `--limit` images, two zoo backbones, their text classifiers
cached, an NLC ensemble fitted): a no-op `extract`, `zeroshot` from the cache, `predict` of 10
images, plus `python -c "import torch"` and `python -c "import clipfuse"`. The commands are
interleaved (`--repeats` rounds), so drifts in the machine's load hit all of them alike; each
reports the median wall time and its ratio to `import torch` (target for the no-op extract: at
most 1.5x).

    python benchmarks/bench_fixed_costs.py                 # 5 rounds
    python benchmarks/bench_fixed_costs.py --repeats 3 --baseline ../main/src   # before vs after
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _machine

from clipfuse import demo_source, open_dataset

SRC = Path(__file__).resolve().parents[1] / "src"
BACKBONES = ("zoo:rn-tiny", "zoo:vit-p4")


def _env(src: Path = SRC) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "CLIPFUSE_OFFLINE": "1"}


def _run(argv: list[str], src: Path = SRC) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=_env(src), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return seconds


def prepare(root: Path, limit: int) -> dict[str, list[str]]:
    """Extract, cache the classifiers, fit an ensemble, write 10 images; the commands to time."""
    cli = [sys.executable, "-m", "clipfuse"]
    source = demo_source("cifar10")
    store = str(root / "store")
    data = ["--data", source, "--limit", str(limit), "--store", store]
    extract = [*cli, "extract", *sum((["--backbone", b] for b in BACKBONES), [])]
    extract += [*data, "--split", "train", "--quiet"]
    zeroshot = [*cli, "zeroshot", *data, "--split", "train"]
    ensemble = str(root / "nlc.safetensors")
    fit = [*cli, "fit", *data, "--train-split", "train", "--method", "nlc", "--shots", "4"]
    images = root / "images"
    images.mkdir()
    dataset = open_dataset(source, "test")
    for i in range(10):
        dataset.load_image(i).save(images / f"{i}.png")
    for argv in (extract, zeroshot, [*fit, "--out", ensemble]):
        _run(argv)
    return {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python -c 'import clipfuse'": [sys.executable, "-c", "import clipfuse"],
        "extract (no-op)": extract,
        "zeroshot (cached)": zeroshot,
        "predict (10 images)": [*cli, "predict", ensemble, str(images), "--quiet"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=200, help="train images extracted")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout's src/ (e.g. before a change): its commands run interleaved too",
    )
    args = parser.parse_args()
    print(_machine.describe())
    with tempfile.TemporaryDirectory() as root:
        commands = {name: (argv, SRC) for name, argv in prepare(Path(root), args.limit).items()}
        if args.baseline is not None:
            for name, (argv, _) in list(commands.items()):
                if "import torch" not in name:
                    commands[f"{name} [baseline]"] = (argv, args.baseline.resolve())
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (argv, src) in commands.items():
                times[name].append(_run(argv, src))
    base = statistics.median(times["python -c 'import torch'"])
    print(f"median of {args.repeats} interleaved rounds; {len(BACKBONES)} zoo backbones")
    print(f"{'command':40s} {'median s':>9s} {'min s':>7s} {'x import torch':>15s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:9.2f} {min(values):7.2f} {median / base:14.2f}x")
    print(f"load average after: {_machine.load_average()}")


if __name__ == "__main__":
    main()
