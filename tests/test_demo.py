"""`clipfuse demo` runs offline from the clone: zoo backbones + shipped data -> tables + report.

Small settings (1 shot, 2 seeds, two methods) keep it quick; the full demo is the README's
first command. A second run must reuse the feature store (no image is encoded again).
"""

from __future__ import annotations

import json

import pytest

from clipfuse.backbones import list_backbones
from clipfuse.demo import DEMO_DATASETS, run_demo

pytestmark = pytest.mark.skipif(not list_backbones("zoo:*"), reason="no zoo weights shipped")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    first = run_demo(
        out, shots=(1,), seeds=2, methods=["mean_logits", "nlc"], progress=False, log=lines.append
    )
    return out, first, lines


def test_demo_writes_tables_and_report(demo_run):
    out, first, _ = demo_run
    assert set(first["tables"]) == set(DEMO_DATASETS)
    for name in DEMO_DATASETS:
        results = json.loads((out / name / "results.json").read_text())
        methods = {r["method"] for r in results["summary"] if r["kind"] == "method"}
        assert methods == {"mean_logits", "nlc"}
        singles = [r for r in results["summary"] if r["kind"] == "single"]
        assert len(singles) == len(list_backbones("zoo:*"))
        assert all(r["n_seeds"] == 2 for r in results["summary"] if r["kind"] == "method")
    html = (out / "report.html").read_text()
    assert "<img" in html and all(name in html for name in DEMO_DATASETS)
    analysis = json.loads((out / "analysis.json").read_text())
    assert set(analysis["datasets"]) == set(DEMO_DATASETS)


def test_zoo_backbones_beat_chance_on_shipped_data(demo_run):
    out, _, _ = demo_run
    for name in DEMO_DATASETS:
        singles = [
            r
            for r in json.loads((out / name / "results.json").read_text())["summary"]
            if r["kind"] == "single"
        ]
        # 10 classes: chance is 10 %; every trained backbone must be well above it
        assert all(r["mean"] > 0.30 for r in singles), singles  # fractions (schema 2)


def test_demo_rerun_reuses_the_cache(demo_run):
    out, _, _ = demo_run
    lines: list[str] = []
    run_demo(out, shots=(1,), seeds=2, methods=["mean_logits"], progress=False, log=lines.append)
    extraction_lines = [line for line in lines if "images x" in line]
    assert extraction_lines and all("(cached)" in line for line in extraction_lines)
