"""Display objects, the results-directory files and the Markdown/HTML report (with Chromium)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from clipfuse.analysis import (
    analyze_complementarity,
    cka_matrix,
    complementarity_from_predictions,
    diversity_gain_correlation,
)
from clipfuse.cascade.curves import pareto_indices as pareto_front  # the one Pareto rule
from clipfuse.errors import DataError
from clipfuse.reports import (
    AccuracyDisplay,
    AgreementDisplay,
    BudgetCurveDisplay,
    CKADisplay,
    ClassTemperatureDisplay,
    ComputeDisplay,
    DiversityGainDisplay,
    IntersectionDisplay,
    RobustnessDisplay,
    TemperatureDisplay,
    load_results,
    save_analysis,
    save_evaluation,
    save_robustness,
    save_temperatures,
    write_report,
)

NAMES = ["RN50", "ViT-B-32", "ViT-B-16", "ViT-L-14"]
GFLOPS = [6.2, 4.4, 17.6, 81.1]
PERTURBATIONS = ["blur", "jpeg", "rotation"]
METHODS = ["RN50", "ViT-B-32", "nlc"]


def _synthetic(seed: int, n: int = 240, c: int = 5, strength: float = 1.0):
    """Logits (B, N, C) with backbones of increasing skill, labels, and features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(len(NAMES), n, c, generator=g) * 2
    for b in range(len(NAMES)):
        logits[b, torch.arange(n), y] += strength * (1.0 + 0.5 * b)
    latent = torch.randn(n, 6, generator=g)
    feats = [
        latent @ torch.randn(6, 8 + 4 * b, generator=g) + torch.randn(n, 8 + 4 * b, generator=g)
        for b in range(len(NAMES))
    ]
    return logits, y, feats


@pytest.fixture(scope="module")
def result():
    logits, y, _ = _synthetic(0)
    return analyze_complementarity(logits, y, NAMES)


def _robustness_records(dataset: str) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "perturbation": p,
            "severity": s,
            "method": m,
            "accuracy": 0.9 - 0.05 * s * (1 + i),
        }
        for p in PERTURBATIONS
        for i, m in enumerate(METHODS)
        for s in range(4)
    ]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    """A results directory with every file: 3 datasets, evaluation rows, robustness, temperatures."""
    root = tmp_path_factory.mktemp("results")
    rows = []
    for k, ds in enumerate(["cifar10", "eurosat", "dtd"]):
        logits, y, feats = _synthetic(k + 1, strength=1.0 - 0.2 * k)
        r = analyze_complementarity(logits, y, NAMES)
        save_analysis(root, ds, r, cka=cka_matrix(feats, NAMES), gflops=dict(zip(NAMES, GFLOPS)))
        for method, gain in (("nlc", 0.04 + 0.03 * k), ("mean_logits", 0.01)):
            rows.append(
                {
                    "dataset": ds,
                    "method": method,
                    "shots": 1,
                    "mean": r.best_accuracy + gain,
                    "std": 0.01,
                    "gain": gain,
                    "gain_relative": gain / r.best_accuracy,
                    "worst_delta": gain - 0.015,
                    "fit_s": 0.8,
                    "predict_s": 0.01,
                    "n_seeds": 5,
                }
            )
    save_evaluation(root, rows, protocol={"seeds": [0, 1, 2, 3, 4], "nlc": {"hidden": 128}})
    save_robustness(root, _robustness_records("cifar10"))
    t = torch.nn.functional.softplus(torch.randn(240, len(NAMES))) + 0.05
    save_temperatures(root, "cifar10", t, _synthetic(1)[1], NAMES, class_names=list("abcde"))
    write_report(root, dpi=60)
    return root


# --- displays ----------------------------------------------------------------------------------


def test_accuracy_display(result) -> None:
    disp = AccuracyDisplay.from_result(result, methods={"nlc": (0.8, 0.02), "mean": (0.7, 0.01)})
    assert len(disp.bars_) == len(NAMES) and len(disp.method_bars_) == 2
    heights = [b.get_height() for b in disp.bars_]
    np.testing.assert_allclose(heights, 100 * result.accuracy)
    assert disp.oracle_line_.get_ydata()[0] == pytest.approx(100 * result.oracle_accuracy)
    assert disp.figure_ is disp.ax_.figure


@pytest.mark.parametrize("kind", ["agreement", "error_overlap", "js_divergence"])
def test_agreement_display(result, kind: str) -> None:
    disp = AgreementDisplay.from_result(result, kind=kind)
    assert disp.text_.shape == (len(NAMES), len(NAMES))
    np.testing.assert_allclose(disp.im_.get_array(), getattr(result, kind))
    assert len(disp.ax_.texts) == len(NAMES) ** 2


def test_agreement_display_without_logits_has_no_js() -> None:
    r = complementarity_from_predictions(torch.tensor([[0, 1], [1, 1]]), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="js_divergence"):
        AgreementDisplay.from_result(r, kind="js_divergence")


def test_cka_display_from_features() -> None:
    _, _, feats = _synthetic(3)
    disp = CKADisplay.from_features(feats, NAMES, method="exact")
    matrix = disp.im_.get_array()
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert len(disp.ax_.texts) == len(NAMES) ** 2
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == NAMES


def test_intersection_display(result) -> None:
    disp = IntersectionDisplay.from_result(result, top_k=5)
    shown = result.intersections[:5]
    assert len(disp.bars_) == len(shown)
    assert [b.get_height() for b in disp.bars_] == [c for _, c in shown]
    assert len(disp.dots_.get_offsets()) == sum(sum(p) for p, _ in shown)
    assert disp.matrix_ax_.figure is disp.figure_


def test_temperature_displays() -> None:
    g = torch.Generator().manual_seed(4)
    t = torch.rand(120, 3, generator=g) + 0.5
    y = torch.randint(0, 4, (120,), generator=g)
    y[y == 2] = 3  # class 2 has no sample: it gets no row
    violin = TemperatureDisplay.from_temperatures(t, ["a", "b", "c"])
    assert len(violin.violins_) == 3
    heat = ClassTemperatureDisplay.from_temperatures(
        t, y, ["a", "b", "c"], class_names=list("wxyz")
    )
    expected = np.stack([t[y == k].double().mean(0).numpy() for k in (0, 1, 3)])
    np.testing.assert_allclose(heat.im_.get_array(), expected)
    assert [tl.get_text() for tl in heat.ax_.get_yticklabels()] == ["w", "x", "z"]


def test_compute_display_and_pareto_front() -> None:
    assert pareto_front([1, 2, 3, 4], [0.5, 0.4, 0.7, 0.7]).tolist() == [0, 2]
    disp = ComputeDisplay.from_points(
        ["a", "b", "c", "fused"],
        [1, 2, 3, 6],
        [0.5, 0.4, 0.7, 0.8],
        kinds=["single backbone"] * 3 + ["fusion"],
    )
    assert [len(s.get_offsets()) for s in disp.scatter_] == [3, 1]
    assert disp.pareto_.tolist() == [0, 2, 3]
    assert len(disp.pareto_line_.get_xdata()) == 3
    with pytest.raises(DataError, match="positive"):
        ComputeDisplay.from_points(["a"], [0.0], [0.5])


def test_robustness_display() -> None:
    disp = RobustnessDisplay.from_records(
        _robustness_records("x") + _robustness_records("y"), dataset="x"
    )
    visible = [a for a in disp.axes_.flat if a.get_visible()]
    assert len(visible) == len(PERTURBATIONS)
    assert len(disp.lines_) == len(PERTURBATIONS) * len(METHODS)
    assert all(len(a.get_lines()) == len(METHODS) for a in visible)
    line = disp.lines_[("blur", "nlc")]
    np.testing.assert_allclose(line.get_xdata(), [0, 1, 2, 3])


def test_diversity_gain_display() -> None:
    corr = diversity_gain_correlation(
        {"a": 0.1, "b": 0.4, "c": 0.3}, {"a": 1.0, "b": 5.0, "c": 2.0}
    )
    disp = DiversityGainDisplay.from_correlation(corr)
    assert len(disp.scatter_.get_offsets()) == 3
    assert "Spearman" in disp.ax_.get_title()


def test_displays_draw_on_caller_axes(result) -> None:
    """Like scikit-learn: plot(ax=...) draws into the caller's figure, panel by panel."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 3)
    acc = AccuracyDisplay.from_result(result, ax=axes[0, 0])
    agree = AgreementDisplay.from_result(result, ax=axes[0, 1])
    upset = IntersectionDisplay.from_result(result, top_k=4, ax=axes[0, 2])
    robust = RobustnessDisplay.from_records(_robustness_records("x"), ax=axes[1])
    for disp in (acc, agree, upset, robust):
        assert disp.figure_ is fig
    assert acc.ax_ is axes[0, 0] and agree.ax_ is axes[0, 1]
    assert upset.matrix_ax_ in axes[0, 2].child_axes
    assert [a.get_title() for a in axes[1]] == PERTURBATIONS


# --- results directory and report --------------------------------------------------------------


def test_results_round_trip(results_dir: Path) -> None:
    res = load_results(results_dir)
    assert list(res.analysis) == ["cifar10", "eurosat", "dtd"]
    assert res.analysis["dtd"].cka.matrix.shape == (4, 4)
    assert len(res.evaluation) == 6 and res.protocol["nlc"] == {"hidden": 128}
    assert len(res.robustness) == len(PERTURBATIONS) * len(METHODS) * 4
    temps = res.temperatures["cifar10"]
    assert temps.temperatures.shape == (240, 4) and temps.class_names == list("abcde")


def test_evaluation_rows_merge_and_validation(tmp_path: Path) -> None:
    row = {"dataset": "d", "method": "nlc", "shots": 1, "mean": 0.5}
    save_evaluation(tmp_path, [row, {**row, "shots": 2}])
    save_evaluation(tmp_path, [{**row, "mean": 0.6}])  # same key: replaced, not duplicated
    rows = load_results(tmp_path).evaluation
    assert [(r["shots"], r["mean"]) for r in rows] == [(1, 0.6), (2, 0.5)]
    with pytest.raises(DataError, match="fraction"):
        save_evaluation(tmp_path, [{**row, "mean": 61.3}])  # percent instead of fraction


def test_version_1_evaluation_json_reads_and_merges_as_fractions(tmp_path: Path) -> None:
    """A report folder written before the one schema (gains in points, shares in percent) still
    reads, through the legacy adapter, and a new save into it upgrades the old rows."""
    old = {"format": "clipfuse.evaluation", "version": 1, "rows": [
        {"dataset": "d", "method": "nlc", "shots": 1, "mean": 0.55, "std": 0.01,
         "gain_points": 2.5, "gain_relative": 5.0, "worst_delta": -0.5,
         "gain_vs_reference": 1.25, "oracle_gap_share": 12.5}]}  # fmt: skip
    (tmp_path / "evaluation.json").write_text(json.dumps(old))
    (row,) = load_results(tmp_path).evaluation
    assert row["mean"] == 0.55 and row["std"] == 0.01  # already fractions in version 1
    assert row["gain"] == pytest.approx(0.025) and "gain_points" not in row
    assert row["gain_relative"] == pytest.approx(0.05) and row["worst_delta"] == -0.005
    assert row["gain_vs_reference"] == 0.0125 and row["oracle_gap_share"] == 0.125
    save_evaluation(tmp_path, [{"dataset": "d", "method": "nlc", "shots": 4, "mean": 0.6}])
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["version"] == 2 and saved["rows"][0]["gain"] == pytest.approx(0.025)


def test_report_refuses_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing to report"):
        write_report(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_report_writes_markdown_and_html_with_every_figure(results_dir: Path) -> None:
    md = (results_dir / "report.md").read_text()
    page = (results_dir / "report.html").read_text()
    pngs = sorted((results_dir / "figures").glob("*.png"))
    # per dataset: accuracy, 3 matrices, CKA, intersections, compute = 7; + diversity-gain,
    # robustness, 2 temperature figures
    assert len(pngs) == 3 * 7 + 1 + 1 + 2
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert sorted(linked) == sorted(f"figures/{p.name}" for p in pngs)
    embedded = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)
    # self-contained: no link or source outside the page
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    for heading in (
        "Dataset: cifar10",
        "Evaluation",
        "Diversity vs nlc gain",
        "Robustness",
        "NLC temperatures",
    ):
        assert f"## {heading}" in md and f">{heading}</h2>" in page
    # 3 per-dataset tables, methods, diversity-gain correlation, temperatures
    assert (
        page.count('<table class="sortable">') == md.count("\n|:--") == 6
    )  # every table starts with a text column


def test_report_sections_follow_files_present(tmp_path: Path) -> None:
    save_robustness(tmp_path, _robustness_records("only"))
    files = write_report(tmp_path, dpi=50)
    md = files.markdown.read_text()
    assert "## Robustness" in md and "## Evaluation" not in md and "Dataset:" not in md
    assert [p.name for p in files.figures] == ["only-robustness.png"]


def _budget_rows(dataset: str) -> list[dict]:
    """evaluation.json rows (fractions) of two methods at 1 / 4 / 16 shots with issue 11's
    reference columns."""
    rows = []
    for method, base in (("safe_conf_mix", 2.0), ("nlc", 0.5)):
        for shots in (16, 1, 4):  # unsorted on purpose
            gain = (base + 0.1 * shots) / 100
            rows.append({"dataset": dataset, "method": method, "shots": shots, "mean": 0.5,
                         "std": 0.004, "n_seeds": 5, "gain_vs_reference": gain,
                         "worst_vs_reference": gain - 0.006, "oracle_gap_share": 0.1})  # fmt: skip
    rows.append(
        {
            "dataset": dataset,
            "method": "nlc",
            "shots": "10%",
            "mean": 0.5,
            "std": 0.0,
            "n_seeds": 5,
            "gain_vs_reference": 0.09,
        }
    )  # fmt: skip  (a fraction: not drawn)
    return rows


def test_budget_curve_display_draws_gain_std_and_worst_seed() -> None:
    disp = BudgetCurveDisplay.from_rows(_budget_rows("cifar10"))
    assert list(disp.lines_) == ["safe_conf_mix", "nlc"]
    shots, mean, std, worst = disp.curves["safe_conf_mix"]
    assert shots.tolist() == [1, 4, 16]  # sorted, the fraction row skipped
    assert mean.tolist() == pytest.approx([2.1, 2.4, 3.6])
    assert std.tolist() == pytest.approx([0.4] * 3)  # top-1 std (fraction) drawn in points
    assert (mean - worst).tolist() == pytest.approx([0.6] * 3)
    assert disp.reference_line_.get_ydata()[0] == 0.0
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == ["1", "4", "16"]
    only = BudgetCurveDisplay.from_rows(_budget_rows("cifar10"), methods=["nlc"])
    assert list(only.curves) == ["nlc"]
    old_rows = [{k: v for k, v in r.items() if "reference" not in k} for r in _budget_rows("x")]
    with pytest.raises(DataError, match="no budget curves"):
        BudgetCurveDisplay.from_rows(old_rows)  # evaluation.json written before issue 11


def test_report_draws_the_budget_figure_and_reference_columns(tmp_path: Path) -> None:
    save_evaluation(tmp_path, _budget_rows("cifar10"))
    files = write_report(tmp_path, dpi=50)
    md = files.markdown.read_text()
    assert [p.name for p in files.figures] == ["cifar10-budgets.png"]
    assert "vs reference (points)" in md and "worst seed vs reference" in md
    assert "| +3.60 | +3.00 | +10.0 |" in md  # safe_conf_mix at 16 shots


# --- the HTML in a real browser ----------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium)"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "Uncaught" in ln or ":CONSOLE" in ln]


@needs_chromium
def test_console_error_detection_works(tmp_path: Path) -> None:
    """Negative control: a throwing inline script must show up in Chromium's log."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    proc = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert _console_errors(proc.stderr), proc.stderr[-2000:]


@needs_chromium
def test_html_report_in_headless_chromium(results_dir: Path, tmp_path: Path) -> None:
    n_figures = len(list((results_dir / "figures").glob("*.png")))
    proc = _chromium(tmp_path, "--dump-dom", (results_dir / "report.html").as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _console_errors(proc.stderr) == []
    body = re.search(r"<body([^>]*)>", proc.stdout).group(1)
    assert 'data-report-js="ready"' in body
    assert f'data-images="{n_figures}"' in body
    assert f'data-images-loaded="{n_figures}"' in body  # every figure decoded and visible

    # Sorting: click the accuracy header of the method table, in the page itself.
    probe = tmp_path / "probe.html"
    probe.write_text(
        (results_dir / "report.html")
        .read_text()
        .replace(
            "</body>",
            "<script>window.addEventListener('load', function () {"
            "var t = document.querySelectorAll('#evaluation ~ table')[0];"
            "var th = t.tHead.rows[0].cells[3]; th.click(); th.click();"
            "var v = Array.prototype.map.call(t.tBodies[0].rows,"
            " function (r) { return r.cells[3].getAttribute('data-sort'); });"
            "document.body.setAttribute('data-probe', v.join(','));});</script></body>",
        )
    )
    proc = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    values = [float(v) for v in re.search(r'data-probe="([^"]*)"', proc.stdout).group(1).split(",")]
    assert len(values) == 6 and values == sorted(values, reverse=True)

    shot = tmp_path / "report.png"
    proc = _chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1280,2000",
        f"--screenshot={shot}",
        (results_dir / "report.html").as_uri(),
    )
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        # a rendered page, not a blank one: plenty of non-white pixels
        assert np.mean(np.asarray(im.convert("L")) < 200) > 0.02


def test_report_json_is_strict(results_dir: Path) -> None:
    """analysis.json must be plain JSON (no NaN/Infinity), readable by any tool."""
    text = (results_dir / "analysis.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_report_shows_recall_per_class_and_flags_a_class_nobody_recalls(tmp_path: Path) -> None:
    """Issue 23: a class every backbone misses (a name the text towers do not know) is visible in
    the report by name, not hidden in the mean."""
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.zeros(2, 6, 3)
    logits[:, :, 0] = 1.0  # both backbones say class 0 for everything
    result = analyze_complementarity(logits, y, ["a", "b"])
    per_class = [
        {"class": "cat", "n": 2, "a": 1.0, "b": 1.0},
        {"class": "car", "n": 2, "a": 0.0, "b": 0.0},
        {"class": "ship", "n": 2, "a": 0.0, "b": 0.5},
    ]
    save_analysis(tmp_path, "toy", result, info={"per_class": per_class})
    md = write_report(tmp_path, dpi=50).markdown.read_text()
    assert "Zero-shot recall per class" in md
    assert "car (no backbone recalls it)" in md and "ship (no backbone" not in md


# --- figures a person can read (issue 23): no text drawn over other text -----------------------


def _overlaps(texts) -> list[tuple[str, str]]:
    """Pairs of visible texts whose drawn boxes intersect (after a real draw); an annotation's
    own box, without its leader line."""
    from matplotlib.text import Text

    fig = texts[0].figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in texts if t.get_text()]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def test_compute_display_labels_do_not_overlap() -> None:
    """Eight fusions at the cost of all backbones within one point of accuracy (the report's
    usual case) plus four backbones: every label readable, each joined to its own point."""
    fusions = [f"fusion_method_{k}" for k in range(8)]
    names = ["rn", "vit-p4", "vit-p8", "convnext"] + fusions
    gflops = [0.010, 0.026, 0.041, 0.022] + [0.099] * 8
    acc = [0.519, 0.466, 0.505, 0.434] + [0.535 + 0.0012 * k for k in range(8)]
    kinds = ["single backbone"] * 4 + ["fusion"] * 8
    disp = ComputeDisplay.from_points(
        names, gflops, acc, kinds=kinds, errors=[0.0] * 4 + [0.004] * 8
    )
    assert [t.get_text() for t in disp.labels_] and len(disp.labels_) == len(names)
    assert _overlaps(disp.labels_) == []
    by_name = {t.get_text(): t for t in disp.labels_}
    for k, name in enumerate(fusions):  # the leader line ends at the label's own point
        assert by_name[name].xy == pytest.approx((0.099, 100 * acc[4 + k]))
    heights = [by_name[n].get_window_extent().y0 for n in fusions]
    assert heights == sorted(heights)  # stacked in accuracy order: leader lines do not cross
    alone = by_name["rn"]
    assert alone.arrow_patch is None  # an isolated point keeps a plain label beside it


def test_budget_display_many_methods_one_row_each() -> None:
    rows = []
    methods = [f"method_{k:02d}" for k in range(19)]
    for k, method in enumerate(methods):
        for shots in (1, 4, 16):
            gain = 0.001 * k + 0.0005 * shots
            rows.append({"dataset": "x", "method": method, "shots": shots, "std": 0.004,
                         "gain_vs_reference": gain, "worst_vs_reference": gain - 0.005})  # fmt: skip
    disp = BudgetCurveDisplay.from_rows(rows)
    assert disp.layout == "rows"
    ticks = [t.get_text() for t in disp.ax_.get_yticklabels()]
    assert ticks == methods  # sorted by the 16-shot gain, the best on top
    assert _overlaps(disp.ax_.get_yticklabels()) == []
    assert all(len(bars) == 3 for bars in disp.lines_.values())  # one marker per budget
    assert disp.reference_line_.get_xdata()[0] == 0.0
    assert BudgetCurveDisplay.from_rows(_budget_rows("x")).layout == "lines"  # few: lines
    with pytest.raises(DataError, match="layout"):
        BudgetCurveDisplay.from_rows(rows, layout="pie")
