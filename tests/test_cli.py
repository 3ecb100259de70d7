"""The CLI: bad input is exit code 2 with one `clipfuse: error:` line; listings parse; the issue's
"done when" (extract two tiny backbones over 200 CIFAR-10 images, zeroshot, rerun is a no-op)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch
from conftest import (
    CIFAR10_CLASSES,
    CIFAR10_TEST,
    RN_TINY,
    TINY_SPECS,
    VIT_TINY,
    cli_command,
    cli_env,
)

from clipfuse.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    assert err.startswith("clipfuse: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert needle in err, err


@pytest.fixture
def no_cached_weights(tmp_path, monkeypatch):
    """No Hugging Face or OpenAI weights cached on this 'machine' (downloads are off in tests)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture
def bad_inputs(tmp_path, image_folder, no_cached_weights):
    (tmp_path / "empty").mkdir()
    (tmp_path / "three.txt").write_text("cat\ndog\nbird\n")
    data = ["--data", f"imagefolder:{image_folder}", "--split", "all"]
    store = ["--store", str(tmp_path / "store")]
    tiny = ["--backbone", RN_TINY]
    return {
        "unknown backbone": (
            ["extract", "--backbone", "NotAnArch:openai", *data, *store],
            "unknown open_clip architecture",
        ),
        "missing weights file": (
            ["extract", "--backbone", f"RN50:{tmp_path / 'missing.pt'}", *data, *store],
            "weights file not found",
        ),
        "offline weights": (["extract", "--backbone", "RN50:openai", *data, *store], "not cached"),
        "missing data": (
            [
                "extract",
                *tiny,
                "--data",
                f"imagefolder:{tmp_path / 'nope'}",
                "--split",
                "all",
                *store,
            ],
            "not found",
        ),
        "malformed source": (
            ["extract", *tiny, "--data", "cifar10", "--split", "all", *store],
            "malformed data source",
        ),
        "empty dataset": (
            [
                "extract",
                *tiny,
                "--data",
                f"imagefolder:{tmp_path / 'empty'}",
                "--split",
                "all",
                *store,
            ],
            "no images",
        ),
        "class-count mismatch": (
            ["extract", *tiny, *data, "--classnames", str(tmp_path / "three.txt"), *store],
            "class-count mismatch",
        ),
        "missing templates file": (
            ["extract", *tiny, *data, "--templates", str(tmp_path / "nope.txt"), *store],
            "templates file not found",
        ),
        "zeroshot without a store": (
            ["zeroshot", *data, "--store", str(tmp_path / "no-store")],
            "no feature store",
        ),
    }


CASES = [
    "unknown backbone",
    "missing weights file",
    "offline weights",
    "missing data",
    "malformed source",
    "empty dataset",
    "class-count mismatch",
    "missing templates file",
    "zeroshot without a store",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_and_exit_2(bad_inputs, case, capsys, tmp_path):
    args, needle = bad_inputs[case]
    start = time.perf_counter()
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, needle)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "store" / "views").exists()  # nothing half-made


def test_bad_input_in_a_real_process(tmp_path, image_folder):
    """`python -m clipfuse.cli` too: exit 2, one line, no traceback (weights missing offline)."""
    args = [
        "extract",
        "--backbone",
        "RN50:openai",
        "--data",
        f"imagefolder:{image_folder}",
        "--split",
        "all",
    ]
    env = {**cli_env(), "HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hf")}
    done = subprocess.run(
        cli_command(*args, "--store", str(tmp_path / "s")),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("clipfuse: error:") and done.stderr.count("\n") == 1, done.stderr
    assert "RN50:openai" in done.stderr and "Traceback" not in done.stderr


def test_backbones_listing_json(capsys):
    code, out, _ = run_cli(capsys, "backbones", "RN50*", "--json")
    assert code == 0
    entries = json.loads(out)
    assert entries and all(e["spec"].lower().startswith("rn50") for e in entries)
    assert {"spec", "family", "embed_dim", "image_size"} <= set(entries[0])
    assert any(e["spec"] == "RN50:openai" for e in entries)
    code, out, _ = run_cli(capsys, "backbones", "zoo:*", "--json")
    assert code == 0 and all(e["spec"].startswith("zoo:") for e in json.loads(out))


def test_done_when_extract_zeroshot_and_noop_rerun(cifar200_f16_store, capsys):
    """Issue 2's "done when": per-backbone zero-shot accuracies from the extracted store, and the
    same extract again finds nothing to do (its wall time is printed, not asserted)."""
    data = ["--data", f"imagefolder:{CIFAR10_TEST}", "--split", "test"]
    code, out, err = run_cli(
        capsys, "zeroshot", *data, "--store", str(cifar200_f16_store), "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == "cifar10" and report["split"] == "test"
    rows = {row["spec"]: row for row in report["results"]}
    assert sorted(rows) == sorted(TINY_SPECS)
    for row in rows.values():
        assert row["n"] == 200
        assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
        assert abs(row["top1"] * 200 - round(row["top1"] * 200)) < 1e-4  # a count of 200 samples
        assert 0.0 <= row["mean_per_class_recall"] <= 1.0

    views = cifar200_f16_store / "views"
    files = {p: p.stat().st_mtime_ns for p in views.rglob("*") if p.is_file()}
    start = time.perf_counter()
    code, out, err = run_cli(
        capsys, "extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, *data, "--limit", "200",
        "--store", str(cifar200_f16_store), "--quiet",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert code == 0, err
    assert "nothing to do" in out
    assert {p: p.stat().st_mtime_ns for p in views.rglob("*") if p.is_file()} == files
    top1 = ", ".join(f"{row['backbone']} {row['top1']:.3f}" for row in rows.values())
    print(f"\nzero-shot top-1 on 200 CIFAR-10 test images: {top1}")
    print(f"repeated extract (no-op, in-process, models loaded again): {seconds:.2f}s")


def test_datasets_listing(capsys):
    code, out, _ = run_cli(capsys, "datasets", "cifar*")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert "cifar10" in names and all(n.startswith("cifar") for n in names)


def test_zeroshot_per_class_names_and_templates(cifar200_f16_store, capsys):
    """Issue 23: per-class recall, the class names and templates used, printed and in the JSON;
    a per-class recall is the count of correct rows of that class over its rows."""
    data = ["--data", f"imagefolder:{CIFAR10_TEST}", "--split", "test", "--limit", "200"]
    store = str(cifar200_f16_store)
    code, out, err = run_cli(capsys, "zeroshot", *data, "--store", store, "--per-class", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["classnames"] == CIFAR10_CLASSES and len(report["templates"]) > 1
    per_class = {row["class"]: row for row in report["per_class"]}
    assert set(per_class) == set(CIFAR10_CLASSES) and all(r["n"] == 20 for r in per_class.values())
    for result in report["results"]:
        recalls = [per_class[c][result["backbone"]] for c in CIFAR10_CLASSES]
        assert all(abs(r * 20 - round(r * 20)) < 1e-6 for r in recalls)
        assert abs(sum(recalls) / 10 - result["mean_per_class_recall"]) < 1e-6
    code, out, err = run_cli(capsys, "zeroshot", *data, "--store", store, "--per-class")
    assert code == 0, err
    assert "class names: airplane, automobile" in out and "prompt templates:" in out
    assert "recall per class (%):" in out and "truck" in out.split("recall per class (%):")[1]


def test_never_predicted_class_is_named():
    """A class that no backbone predicts for any image (a name the text towers do not know) is
    reported by name; a class absent from the labels is not."""
    from types import SimpleNamespace

    from clipfuse.evaluation.zeroshot_eval import never_predicted

    labels = torch.tensor([0, 1, 2, 2])
    logits = torch.zeros(2, 4, 4)
    logits[0, :, 0] = 1  # backbone 0 always says "cat"
    logits[1, 2:, 2] = 5  # backbone 1 says "car" never, "ship" for the last two
    logits[1, :2, 0] = 5
    bundle = SimpleNamespace(
        classnames=["cat", "car", "ship", "unused"], labels=labels, logits=logits
    )
    assert never_predicted(bundle) == ["car"]


def test_version(capsys):
    import clipfuse

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"clipfuse {clipfuse.__version__}"


def test_methods_lists_the_registry_with_declared_capabilities(capsys):
    from clipfuse.combiners.registry import RECOMMENDED, combiner_class, list_combiners

    code, out, err = run_cli(capsys, "methods")
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["method", "groups", "tier", "labels/class"]
    listed = [line.split()[0] for line in lines[1:] if line.strip() and not line[0].isdigit()]
    assert listed == list_combiners()
    assert f"recommended: {RECOMMENDED}" in out
    code, out, _ = run_cli(capsys, "methods", "--json")
    doc = json.loads(out)
    assert doc["recommended"] == RECOMMENDED
    for row in doc["methods"]:  # every value comes from the class's declared capabilities
        cls = combiner_class(row["method"])
        assert row["features"] is cls.uses_features
        assert row["unlabelled"] is cls.uses_unlabelled
        assert row["transductive"] is cls.transductive
        assert row["labels/class"] == cls.min_per_class
        assert row["tier"] in ("stable", "experimental")
    rows = {r["method"]: r for r in doc["methods"]}
    assert rows["transclip"]["transductive"] and rows["nlc"]["features"]
    assert rows["transclip"]["tier"] == "experimental" and rows[RECOMMENDED]["tier"] == "stable"
    assert "recommended" in rows[RECOMMENDED]["groups"].split(",")
    assert rows["cascade"]["runs"] == "cheapest first"
    code, out, _ = run_cli(capsys, "methods", "--group", "core", "--json")
    assert [r["method"] for r in json.loads(out)["methods"]] == list_combiners(group="core")
    code, _, err = run_cli(capsys, "methods", "--group", "nope")
    assert_one_line_error(code, err, "unknown method group 'nope'")


def test_one_unit_for_accuracy(tmp_path, capsys):
    """Accuracies are fractions in rows and JSON, percentages with 2 decimals on screen, in
    every command's table (print_table is the one place that formats them)."""
    from clipfuse import demo_source
    from clipfuse.cli.common import format_cell

    assert format_cell("top1", 0.672) == "67.20"
    assert format_cell("oracle", 0.5) == "50.00" and format_cell("drop", -1.234) == "-1.23"
    assert format_cell("temperature", 0.5) == "0.5000"
    store = str(tmp_path / "store")
    data = ["--data", demo_source("cifar10"), "--split", "test", "--limit", "20"]
    assert main(["extract", "--backbone", "zoo:rn-tiny", *data, "--store", store, "--quiet"]) == 0
    code, out, err = run_cli(capsys, "zeroshot", *data, "--store", store, "--json")
    assert code == 0, err
    top1 = json.loads(out)["results"][0]["top1"]
    assert 0.0 <= top1 <= 1.0  # a fraction in JSON
    code, out, err = run_cli(capsys, "zeroshot", *data, "--store", store)
    row = next(line for line in out.splitlines() if line.startswith("zoo:rn-tiny"))
    assert row.split()[1] == f"{100 * top1:.2f}"  # a percentage on screen
    code, out, err = run_cli(capsys, "analyze", *data, "--store", store, "--out",
                             str(tmp_path / "analysis"), "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)[0]["best acc"] == pytest.approx(top1)  # fractions in JSON here too
