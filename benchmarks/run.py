"""Run clipfuse's extraction benchmarks and print their ratios on the last line.

    python benchmarks/run.py --quick          # < 1 min: 2 architectures, 32 images
    python benchmarks/run.py                  # BENCHMARKS.md's figures (ViT-B/32, ViT-B/16, RN50
                                              # and the zoo; 128 images, best of 3 runs; then the trade-offs)
    python benchmarks/run.py --wait-quiet     # first wait for an idle machine (load < 1)

Other options are passed to bench_extraction.py (see its --help). The combiner, analysis and
cascade benchmarks have their own scripts (bench_combiners.py, bench_analysis.py,
bench_heads_cascade.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _machine  # noqa: E402
import bench_extraction  # noqa: E402
import bench_tradeoffs  # noqa: E402

QUICK = ["--images", "32", "--batch-size", "16", "--reps", "1"]
QUICK_SPECS = ("ViT-B-32", "RN50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced run, under a minute")
    parser.add_argument("--wait-quiet", action="store_true", help="wait for load < 1 (max 45 min)")
    parser.add_argument("--skip-tradeoffs", action="store_true")
    args, rest = parser.parse_known_args()
    if args.wait_quiet and not _machine.wait_until_quiet():
        print("WARNING: the machine never became quiet; figures are taken under load")
    if args.quick:
        specs = [f"{bench_extraction.CONFIGS / name}.json:random" for name in QUICK_SPECS]
        rest = [*QUICK, *(a for s in specs for a in ("--backbone", s)), *rest]
    figures = bench_extraction.main(rest)
    line = bench_extraction.ratio_line(figures)
    if not (args.quick or args.skip_tradeoffs):
        bench_tradeoffs.main([])
    print(line)


if __name__ == "__main__":
    main()
