"""`clipfuse evaluate` and the runner behind it: hold-outs come from train only (shuffling the test
labels changes scores, never what was fitted), the tables' statistics can be recomputed from the
per-seed records, the baseline is the hold-out-chosen backbone, and bad input is one error line.

The fusion test bed (two tiny random backbones over 200 real CIFAR-10 train and 200 test images)
is built once per session (tests/beds.py) and shared with other test modules.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import shlex
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from beds import CORE_METHODS, FAST, FusionBed, build_fusion_bed, run_cli
from conftest import CIFAR10_CLASSES, RN_TINY, TINY_SPECS, VIT_TINY

from clipfuse import protocol
from clipfuse.cli import build_parser, main
from clipfuse.combiners import list_combiners
from clipfuse.combiners._compose import build_combiner
from clipfuse.data.holdout import HoldoutDraw, draw_holdout
from clipfuse.evaluation.runner import evaluate_methods


@pytest.fixture(scope="module")
def fusion_bed(tmp_path_factory) -> FusionBed:
    return build_fusion_bed(tmp_path_factory)


# ---- no test leakage ---------------------------------------------------------------------------


def _traced_run(monkeypatch, train, test):
    """evaluate_methods on a few learned methods, keeping every combiner it fitted."""
    fitted = []

    def spy(name, *args, **params):
        combiner = build_combiner(name, *args, **params)
        fitted.append((name, combiner))
        return combiner

    monkeypatch.setattr(protocol, "build_combiner", spy)
    result = evaluate_methods(
        train,
        test,
        ["best_single", "calibrated_mean", "super_learner", "moe", "nlc"],
        [(1, None)],
        [0, 1],
        dataset="cifar10",
        method_params={"nlc": {"steps": 30}, "moe": {"steps": 30}},
        progress=False,
    )
    return result, fitted


def test_shuffled_test_labels_change_scores_not_fits(fusion_bed, monkeypatch):
    train, test = fusion_bed.bundles()
    shuffled = dataclasses.replace(
        test, labels=test.labels[torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(0))]
    )  # fmt: skip
    assert not torch.equal(shuffled.labels, test.labels)
    real, fitted_real = _traced_run(monkeypatch, train, test)
    fake, fitted_fake = _traced_run(monkeypatch, train, shuffled)

    assert [d.positions for d in real.draws] == [d.positions for d in fake.draws]
    assert [n for n, _ in fitted_real] == [n for n, _ in fitted_fake]
    assert len(fitted_real) == 2 * 5  # 5 methods x 2 seeds
    for (name, a), (_, b) in zip(fitted_real, fitted_fake):
        assert a.config() == b.config(), name
        state_a, state_b = a.state_dict(), b.state_dict()
        assert state_a.keys() == state_b.keys()
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), name
    assert torch.equal(real.temperatures["nlc"], fake.temperatures["nlc"])
    assert [r.baseline for r in real.records] == [r.baseline for r in fake.records]
    assert [r.top1 for r in real.records] != [r.top1 for r in fake.records]

    train_ids = dict(zip(train.indices.tolist(), train.sample_ids))
    for draw in real.draws:
        assert draw.view == train.view != test.view
        assert set(draw.positions) <= set(train_ids)
        assert all(train_ids[p].startswith("train/") for p in draw.positions)


# ---- the CLI's evaluate: tables, statistics, hold-out files ------------------------------------


@pytest.fixture(scope="module")
def evaluated(fusion_bed, tmp_path_factory):
    """`clipfuse evaluate --methods all --shots 1 --seeds 3 --json` run once, in-process
    (capsys is per test, so output is captured by hand); slow heads get small budgets too."""
    out = tmp_path_factory.mktemp("evaluate") / "results"
    heavy = {"lp_nlc": "inner_params", "tip_nlc": "inner_params", "tipf_nlc": "inner_params",
             "cascade": "controller_params", "subset_nlc": "controller_params"}  # fmt: skip
    small = [
        f"{m}.{p}={json.dumps({'steps': 50})}" for m, p in heavy.items() if m in list_combiners()
    ]
    args = ["evaluate", *fusion_bed.data, "--train-split", "train", "--test-split", "test",
            "--limit", "200", "--methods", "all", "--shots", "1", "--seeds", "3", "--out", str(out),
            *FAST, *[x for p in small for x in ("--param", p)], "--json", "--quiet"]  # fmt: skip
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(args)
    return code, stdout.getvalue(), stderr.getvalue(), out, args


def _method_rows(summary):
    return {r["method"]: r for r in summary if r["kind"] == "method"}


def test_evaluate_writes_every_method_with_three_seeds(evaluated):
    code, stdout, stderr, out, _ = evaluated
    assert code == 0, stderr
    for name in ("results.md", "results.csv", "results.json", "evaluation.json",
                 "temperatures.safetensors"):  # fmt: skip
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    printed = json.loads(stdout)  # --json: the summary, parseable
    assert printed == results["summary"]
    rows = _method_rows(results["summary"])
    assert set(rows) == set(list_combiners())  # 'all' is every registered combiner
    for method in CORE_METHODS:
        assert rows[method]["n_seeds"] == 3 and rows[method]["seeds"] == [0, 1, 2]
        assert rows[method]["budget"] == "1-shot" and rows[method]["labels"] == 10
    kinds = [r["kind"] for r in results["summary"]]
    assert kinds.count("oracle") == 1 and kinds.count("reference") == 1
    assert kinds.count("single") == 2
    singles = [r["mean"] for r in results["summary"] if r["kind"] == "single"]
    oracle = next(r for r in results["summary"] if r["kind"] == "oracle")
    assert oracle["mean"] >= max(singles)
    assert results["command"][:2] == ["clipfuse", "evaluate"] and "all" in results["command"]
    assert results["config"]["method_params"]["nlc"] == {"steps": 50}
    assert results["config"]["seeds"] == [0, 1, 2]

    md = (out / "results.md").read_text()
    assert "`clipfuse evaluate " in md and all(f"| {m} | 1-shot |" in md for m in CORE_METHODS)
    with open(out / "results.csv", newline="") as f:
        csv_rows = {r["method"]: r for r in csv.DictReader(f) if r["kind"] == "method"}
    for method in CORE_METHODS:
        assert float(csv_rows[method]["mean"]) == pytest.approx(rows[method]["mean"])


def test_statistics_recompute_from_per_seed_records(evaluated):
    _, _, _, out, _ = evaluated
    results = json.loads((out / "results.json").read_text())
    rows = _method_rows(results["summary"])
    per_method = defaultdict(list)
    for record in results["records"]:
        per_method[record["method"]].append(record)
    for method in CORE_METHODS:
        records = sorted(per_method[method], key=lambda r: r["seed"])
        assert [r["seed"] for r in records] == [0, 1, 2]
        acc = np.array([r["top1"] for r in records])
        base = np.array([r["baseline_top1"] for r in records])
        row = rows[method]
        assert row["mean"] == pytest.approx(acc.mean())  # fractions, like the records
        assert row["std"] == pytest.approx(acc.std(ddof=1))
        assert row["gain"] == pytest.approx((acc - base).mean())
        assert row["gain_relative"] == pytest.approx(((acc - base) / base).mean())
        assert row["worst_delta"] == pytest.approx((acc - base).min())
        assert row["fit_s"] == pytest.approx(np.mean([r["fit_s"] for r in records]))
        for r in records:  # the baseline's accuracy is that backbone's zero-shot test accuracy
            assert r["baseline_top1"] == results["singles"][r["baseline"]]
    # best_single is the baseline itself: same choice, so no gain on any seed
    for record in per_method["best_single"]:
        assert record["info"]["chosen"] == record["baseline"]
        assert record["top1"] == record["baseline_top1"]
    assert rows["best_single"]["gain"] == 0 == rows["best_single"]["worst_delta"]


def test_results_json_holds_fractions_and_the_schema_marker(evaluated):
    """One result schema: results.json, results.csv and evaluation.json hold fractions (the
    records', the singles' and the summary's top-1 alike) and results.json says schema 2."""
    from clipfuse.evaluation.schema import SCHEMA

    _, _, _, out, _ = evaluated
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == SCHEMA == 2
    for row in results["summary"]:
        assert 0.0 <= row["mean"] <= 1.0 and 0.0 <= row["worst"] <= 1.0, row
        assert not any(k.startswith("top1_") or k.endswith(("_points", "_pct")) for k in row)
        if row["ci_low"] is not None:
            assert 0.0 <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= 1.0
        for key in ("gain", "worst_delta", "gain_vs_reference", "worst_vs_reference"):
            assert row.get(key) is None or -1.0 <= row[key] <= 1.0
    singles = {r["method"]: r["mean"] for r in results["summary"] if r["kind"] == "single"}
    assert singles == results["singles"]  # the same number, not 100x it
    report = json.loads((out / "evaluation.json").read_text())
    assert report["version"] == 2
    by_key = {(r["method"], r["budget"]): r for r in results["summary"] if r["kind"] == "method"}
    for row in report["rows"]:
        if row["kind"] == "method":
            assert row["mean"] == by_key[(row["method"], row["budget"])]["mean"]


def test_legacy_adapter_reads_a_recorded_percent_file_to_the_same_numbers():
    """benchmarks/results/*.json were written before schema 2 (percent, no marker) and are not
    rewritten: `summary_rows` reads them as fractions, equal to the mean of their own per-seed
    records (which were always fractions), and a schema-2 summary passes unchanged."""
    from clipfuse.evaluation.schema import summary_rows

    path = Path(__file__).resolve().parents[1] / "benchmarks/results/labels-demo-auto-cifar10.json"
    old = json.loads(path.read_text())
    assert "schema" not in old and "top1_mean" in old["summary"][0]
    rows = summary_rows(old)
    per_seed = defaultdict(list)
    for r in old["records"]:
        per_seed[(r["method"], r["budget"])].append(r["top1"])
    ref, methods = max(old["singles"].values()), 0
    for new, legacy in zip(rows, old["summary"]):
        assert new["mean"] == pytest.approx(legacy["top1_mean"] / 100, abs=1e-12)
        if new["kind"] == "single":
            assert new["mean"] == pytest.approx(old["singles"][new["method"]], abs=1e-12)
        if new["kind"] == "method":
            methods += 1
            accs = per_seed[(new["method"], new["budget"])]
            assert new["mean"] == pytest.approx(np.mean(accs), abs=1e-12)
            assert new["worst"] == pytest.approx(min(accs), abs=1e-12)
            assert new["gain_vs_reference"] == pytest.approx(np.mean(accs) - ref, abs=1e-12)
            assert new["worst_vs_reference"] == pytest.approx(min(accs) - ref, abs=1e-12)
            assert new["ci_low"] <= new["mean"] <= new["ci_high"] <= 1.0
            assert "gain_vs_reference_points" not in new and "top1_mean" not in new
    assert methods == 3  # auto at 1, 4 and 16 shots
    assert summary_rows({"schema": 2, "summary": rows}) == rows


def test_holdout_files_match_the_draws_and_baselines(evaluated, fusion_bed):
    _, _, _, out, _ = evaluated
    results = json.loads((out / "results.json").read_text())
    train, test = fusion_bed.bundles()
    files = sorted((out / "holdouts").iterdir())
    assert sorted(results["holdout_files"]) == [f.name for f in files] and len(files) == 3
    recorded = {(h["seed"], h["content_sha256"]) for h in results["holdouts"]}
    baselines = {r["seed"]: r["baseline"] for r in results["records"]}
    for path in files:
        draw = HoldoutDraw.load(path)  # refuses a file whose content does not match its hash
        assert (draw.seed, draw.content_hash) in recorded
        assert draw == draw_holdout(
            train.labels.numpy(), train.indices, 10, view=train.view, seed=draw.seed, shots=1
        )
        rows = np.searchsorted(train.indices, draw.positions)
        assert np.array_equal(train.indices[rows], draw.positions)
        y = train.labels[rows]
        assert sorted(y.tolist()) == list(range(10))
        # the baseline recomputed by hand: best hold-out accuracy, ties to the lower NLL
        z = train.logits[:, rows]
        acc = (z.argmax(-1) == y).double().mean(1)
        nll = torch.stack([torch.nn.functional.cross_entropy(z[b], y) for b in range(len(z))])
        best = torch.where(acc == acc.max(), nll, torch.full_like(nll, float("inf"))).argmin()
        assert baselines[draw.seed] == test.names[int(best)]


def test_recorded_command_reparses_to_the_same_options(evaluated):
    """The command in the results is rebuilt from the parsed options (in-process, sys.argv is
    pytest's), so it must parse back to exactly what ran."""
    _, _, _, out, args = evaluated
    command = json.loads((out / "results.json").read_text())["command"]
    assert command[:2] == ["clipfuse", "evaluate"]
    assert vars(build_parser().parse_args(command[1:])) == vars(build_parser().parse_args(args))
    assert shlex.join(command) in (out / "results.md").read_text()


def test_limit_chooses_between_extractions(fusion_bed, tmp_path, capsys):
    """--limit picks the view for both splits when a split was extracted twice."""
    store = tmp_path / "store"
    shutil.copytree(fusion_bed.store, store)
    data = ["--data", f"imagefolder:{fusion_bed.folder}", "--store", str(store)]
    assert main(["extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, "--split", "train",
                 "--limit", "100", *data, "--quiet"]) == 0  # fmt: skip
    ev = ["evaluate", *data, "--train-split", "train", "--test-split", "test", "--methods",
          "mean_logits", "--shots", "1", "--seeds", "1", "--out", str(tmp_path / "o"), "--quiet"]  # fmt: skip
    code, _, err = run_cli(capsys, *ev)
    assert code == 2 and "pass --limit" in err and err.count("\n") == 1, err
    for limit, train_limit in [("200", None), ("200", "100")]:
        extra = ["--limit", limit] + (["--train-limit", train_limit] if train_limit else [])
        code, _, err = run_cli(capsys, *ev, *extra)
        assert code == 0, err
        results = json.loads((tmp_path / "o" / "results.json").read_text())
        assert f"-limit{train_limit or limit}-" in results["train_view"]
        assert "-limit200-" in results["test_view"]
        assert results["config"]["train_samples"] == int(train_limit or limit)


# ---- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_store(fusion_bed, tmp_path_factory) -> Path:
    """Train extracted with both backbones, test with only one."""
    store = tmp_path_factory.mktemp("mixed") / "store"
    data = ["--data", f"imagefolder:{fusion_bed.folder}", "--store", str(store), "--quiet"]
    assert main(["extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, "--split", "train",
                 "--limit", "20", *data]) == 0  # fmt: skip
    assert main(["extract", "--backbone", RN_TINY, "--split", "test", "--limit", "20", *data]) == 0
    return store


def _bad_cases(bed: FusionBed, mixed: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    ev = ["evaluate", *bed.data, "--train-split", "train", "--test-split", "test",
          "--out", str(tmp / "out"), "--quiet"]  # fmt: skip
    fit = ["fit", *bed.data, "--train-split", "train", "--out", str(tmp / "e.safetensors")]
    mixed_args = ["--data", f"imagefolder:{bed.folder}", "--store", str(mixed)]
    return {
        "unknown method": ([*ev, "--methods", "nlc,bogus", "--shots", "1"], "unknown method"),
        "zero shots": ([*ev, "--shots", "0"], "shots must be >= 1"),
        "no budget": (ev, "label budget"),
        "non-integer shots": ([*ev, "--shots", "one"], "--shots takes integers"),
        "fraction above 1": ([*ev, "--fraction", "1.5"], "fraction must be in (0, 1]"),
        "zero seeds": ([*ev, "--shots", "1", "--seeds", "0"], "--seeds"),
        "too few shots": ([*ev, "--shots", "23"], "fewer than the 23 requested"),
        "unknown parameter": ([*ev, "--shots", "1", "--param", "nlc.stepz=5"], "stepz"),
        "malformed parameter": ([*ev, "--shots", "1", "--param", "steps=5"], "METHOD.NAME"),
        "missing store": (
            [
                "evaluate",
                "--data",
                f"imagefolder:{bed.folder}",
                "--store",
                str(tmp / "none"),
                "--train-split",
                "train",
                "--test-split",
                "test",
                "--shots",
                "1",
                "--out",
                str(tmp),
            ],
            "no feature store",
        ),  # fmt: skip
        "split never extracted": (
            [*ev, "--shots", "1", "--test-split", "validation"],
            "split 'validation' not in",
        ),
        "different backbones": (
            [
                "evaluate",
                *mixed_args,
                "--train-split",
                "train",
                "--test-split",
                "test",
                "--shots",
                "1",
                "--out",
                str(tmp / "o"),
            ],
            "different backbones",
        ),  # fmt: skip
        "fit unknown method": ([*fit, "--method", "bogus", "--shots", "1"], "unknown combiner"),
        "fit zero shots": ([*fit, "--shots", "0"], "shots must be >= 1"),
        "fit no budget": (fit, "label budget"),
        "fit two budgets": ([*fit, "--shots", "1,2"], "one label budget"),
        "fit too few shots": ([*fit, "--shots", "50"], "lower --shots"),
        "fit missing store": (
            [
                "fit",
                "--data",
                f"imagefolder:{bed.folder}",
                "--store",
                str(tmp / "none"),
                "--train-split",
                "train",
                "--shots",
                "1",
                "--out",
                str(tmp / "e.safetensors"),
            ],
            "no feature store",
        ),  # fmt: skip
        "fit to a .json path": (
            [
                "fit",
                *bed.data,
                "--train-split",
                "train",
                "--shots",
                "1",
                "--method",
                "mean_logits",
                "--out",
                str(tmp / "e.json"),
            ],
            ".safetensors file",
        ),  # fmt: skip
    }


BAD_CASES = [
    "unknown method", "zero shots", "no budget", "non-integer shots", "fraction above 1",
    "zero seeds", "too few shots", "unknown parameter", "malformed parameter", "missing store",
    "split never extracted", "different backbones", "fit unknown method", "fit zero shots",
    "fit no budget", "fit two budgets", "fit too few shots", "fit missing store",
    "fit to a .json path",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_error_line_and_exit_2(fusion_bed, mixed_store, tmp_path, capsys, case):
    args, needle = _bad_cases(fusion_bed, mixed_store, tmp_path)[case]
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (out, err)
    assert err.startswith("clipfuse: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err and needle in err, err
    assert not (tmp_path / "out" / "results.json").exists()
    assert not (tmp_path / "e.safetensors").exists() and not (tmp_path / "e.json").exists()


def test_specs_of_the_bed_are_the_tiny_backbones(fusion_bed):
    """Guard for the tests above: the bed holds exactly the two tiny backbones and CIFAR-10."""
    train, test = fusion_bed.bundles()
    assert sorted(train.specs) == sorted(TINY_SPECS) and train.fingerprints == test.fingerprints
    assert train.classnames == CIFAR10_CLASSES and len(train.labels) == len(test.labels) == 200


def _summary_row(method, kind, budget="-", gain=None, worst=None, top1=50.0):
    """A summary row from points (as the test reads), stored as fractions (schema 2)."""
    frac = [None if v is None else v / 100 for v in (top1, gain, worst)]
    return {"method": method, "kind": kind, "budget": budget, "mean": frac[0],
            "gain_vs_reference": frac[1], "worst_vs_reference": frac[2]}  # fmt: skip


def test_compact_table_answers_which_method_and_how_much_better():
    """Issue 23: at most 8 columns, zero-shot per backbone and the oracle on one line, the
    recommended method first and marked, gains with the worst seed, one 'use:' line."""
    from clipfuse.evaluation.tables import format_compact

    rows = [_summary_row("a", "single", top1=52.05), _summary_row("b", "single", top1=41.0),
            _summary_row("oracle (upper bound)", "oracle", top1=71.9)]  # fmt: skip
    for budget, g in (("1-shot", 1.0), ("4-shot", 2.0)):
        rows += [_summary_row("nlc", "method", budget, g - 1, g - 2),
                 _summary_row("rec", "method", budget, g, g - 0.5),
                 _summary_row("lp", "method", budget, 9.0, 9.0)]  # fmt: skip
    text = format_compact(rows, "rec")
    assert text.splitlines()[0] == "zero-shot top-1 (%): a 52.05 · b 41.00 · oracle 71.90"
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| method | 1-shot | 4-shot |" and len(table) == 4  # header, rule, 2 methods
    assert table[2] == "| **rec** (recommended) | +1.00 (+0.50) | +2.00 (+1.50) |"
    assert table[3] == "| nlc | +0.00 (-1.00) | +1.00 (+0.00) |" and "lp" not in text
    assert "the reference; chosen with their labels): a, 52.05 %" in text
    assert text.splitlines()[-1].startswith("use: rec") and "+2.00 points" in text.splitlines()[-1]


def test_evaluate_default_methods_include_the_recommended_one():
    from clipfuse.cli import build_parser

    args = build_parser().parse_args(
        ["evaluate", "--data", "x", "--store", "s", "--train-split", "a", "--test-split", "b",
         "--out", "o"]  # fmt: skip
    )
    assert "recommended" in args.methods.split(",")
