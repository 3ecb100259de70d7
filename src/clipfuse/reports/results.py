"""The results directory: the files :func:`clipfuse.reports.write_report` reads, and writers.

Every file is optional; the report has one section per file present. Accuracies, their
differences and ratios are fractions in every file (0.0123 = 1.23 points; the report prints
percent): one schema, ``clipfuse.evaluation.schema``.

``analysis.json`` (written by :func:`save_analysis`)::

    {"format": "clipfuse.analysis", "version": 1,
     "datasets": {"<dataset>": {
         "complementarity": ComplementarityResult.to_dict(),   # required
         "cka": CKAResult.to_dict(),                           # optional
         "gflops": {"<backbone>": float},                      # optional, image encoder GFLOPs
         "info": {...}}}}                                      # optional, free-form provenance

``evaluation.json`` (:func:`save_evaluation`): one row per (dataset, method, shots), the
summary rows of ``EvaluationResult.summary()``::

    {"format": "clipfuse.evaluation", "version": 2,
     "rows": [{"dataset": str, "method": str, "shots": int | str, "mean": float,
               "std": float, "gain": float, "gain_relative": float,
               "worst_delta": float, "fit_s": float, "predict_s": float,
               "n_seeds": int, "gflops": float (optional),
               # optional, issue 11: gain vs the backbone best on the evaluated images (a
               # reference, not a method), its worst seed, share of the oracle gap captured,
               # unlabelled train rows given to the method, transductive flag
               "gain_vs_reference": float, "worst_vs_reference": float,
               "oracle_gap_share": float, "unlabelled": int, "transductive": bool}],
     "protocol": {...}}   # optional: splits, seeds, hyperparameters, printed verbatim

Version 1 (gains in points, shares in percent) is read through ``upgrade_rows``; a save into a
version-1 file upgrades its rows.

``robustness.json`` (:func:`save_robustness`)::

    {"format": "clipfuse.robustness", "version": 1,
     "records": [{"dataset": str, "perturbation": str, "severity": float,
                  "method": str, "accuracy": float, "drop": float (optional)}]}

``temperatures.safetensors`` (:func:`save_temperatures`): per dataset the NLC temperatures on
its evaluation samples, tensors ``"<dataset>/temperatures"`` (N, B) float32 and
``"<dataset>/labels"`` (N,) int64; metadata key ``"clipfuse"`` holds JSON
``{"datasets": {"<dataset>": {"backbones": [...], "class_names": [...] | null}}}``.

Written by the report: ``report.md``, ``report.html`` and ``figures/*.png``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from clipfuse._validation import to_tensor
from clipfuse.analysis import CKAResult, ComplementarityResult
from clipfuse.analysis._arrays import ArrayLike, backbone_names, check_labels
from clipfuse.errors import DataError
from clipfuse.evaluation.schema import upgrade_rows
from clipfuse.hashing import CACHE_ROOT, value_hash
from clipfuse.store.atomic import atomic_write_bytes
from clipfuse.store.locking import file_lock

ANALYSIS_FILE = "analysis.json"
EVALUATION_FILE = "evaluation.json"
ROBUSTNESS_FILE = "robustness.json"
TEMPERATURES_FILE = "temperatures.safetensors"
FORMAT_VERSION = 1
EVALUATION_VERSION = 2  # the one result schema (fractions); version 1 held points

EVALUATION_KEY = ("dataset", "method", "shots")
ROBUSTNESS_KEY = ("dataset", "perturbation", "severity", "method")


@dataclass(frozen=True)
class DatasetAnalysis:
    """One dataset's entry of analysis.json."""

    complementarity: ComplementarityResult
    cka: CKAResult | None = None
    gflops: dict[str, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Temperatures:
    """NLC temperatures (N, B) of one dataset with labels and names."""

    temperatures: np.ndarray
    labels: np.ndarray
    backbones: list[str]
    class_names: list[str] | None


@dataclass(frozen=True)
class Results:
    """Everything found in a results directory; None where the file is absent."""

    root: Path
    analysis: dict[str, DatasetAnalysis] | None = None
    evaluation: list[dict[str, Any]] | None = None
    protocol: dict[str, Any] | None = None
    robustness: list[dict[str, Any]] | None = None
    temperatures: dict[str, Temperatures] | None = None


# --- writing ---------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def _read_json(
    path: Path, fmt: str, versions: tuple[int, ...] = (FORMAT_VERSION,)
) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise DataError(f"{path} is not a {fmt} file (missing 'format': {fmt!r})")
    if obj.get("version") not in versions:
        expected = " or ".join(map(str, versions))
        raise DataError(f"{path} has version {obj.get('version')!r}, expected {expected}")
    return obj


def _read_evaluation(path: Path) -> dict[str, Any]:
    """evaluation.json with its rows in the current schema (a version-1 file upgraded)."""
    obj = _read_json(path, "clipfuse.evaluation", (1, EVALUATION_VERSION))
    obj["rows"] = upgrade_rows(obj.get("rows", []), obj["version"])
    obj["version"] = EVALUATION_VERSION
    return obj


RESULTS_LOCK_TIMEOUT_S = 600.0


def results_lock(path: Path):
    """The lock of one results file (several runs may add to one results directory). It lives in
    clipfuse's cache, keyed by the file's absolute path, not beside the results: a lock file is
    never removed (removing one is racy), so there it would outlive every run as clutter. It
    records its holder (pid@host) for the timeout message. Mutual exclusion is per machine (the
    cache is per user and machine), as it is for flock on most network file systems anyway."""
    key = value_hash(str(path.resolve()), 16)
    return file_lock(CACHE_ROOT / "locks" / f"results-{key}.lock", RESULTS_LOCK_TIMEOUT_S)


def _update_json(
    path: Path, fmt: str, update: Any, version: int = FORMAT_VERSION, read=None
) -> None:
    """Read-modify-write under a file lock: several runs may add to one results directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with results_lock(path):
        if not path.exists():
            obj = {"format": fmt, "version": version}
        else:
            obj = read(path) if read is not None else _read_json(path, fmt)
        update(obj)
        _write_json(path, obj)


def save_analysis(
    results_dir: str | os.PathLike[str],
    dataset: str,
    complementarity: ComplementarityResult,
    *,
    cka: CKAResult | None = None,
    gflops: Mapping[str, float] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Add or replace ``dataset`` in ``results_dir/analysis.json``."""
    entry: dict[str, Any] = {"complementarity": complementarity.to_dict()}
    if cka is not None:
        entry["cka"] = cka.to_dict()
    if gflops is not None:
        entry["gflops"] = {str(k): float(v) for k, v in gflops.items()}
    if info:
        entry["info"] = dict(info)
    path = Path(results_dir) / ANALYSIS_FILE
    _update_json(
        path, "clipfuse.analysis", lambda o: o.setdefault("datasets", {}).update({dataset: entry})
    )
    return path


def _merge_rows(
    old: list[dict], new: Iterable[Mapping[str, Any]], key: Sequence[str]
) -> list[dict]:
    """Rows of ``new`` replace rows of ``old`` with the same key; order of first appearance."""
    merged = {tuple(str(r.get(k)) for k in key): dict(r) for r in (*old, *new)}
    return list(merged.values())  # a replaced key keeps its first position


def save_evaluation(
    results_dir: str | os.PathLike[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    protocol: Mapping[str, Any] | None = None,
) -> Path:
    """Merge method-table rows into ``evaluation.json`` (same dataset/method/shots replaced)."""
    new = [_check_evaluation_row(dict(r)) for r in rows]

    def update(obj: dict[str, Any]) -> None:
        obj["rows"] = _merge_rows(obj.get("rows", []), new, EVALUATION_KEY)
        if protocol is not None:
            obj["protocol"] = dict(protocol)

    path = Path(results_dir) / EVALUATION_FILE
    _update_json(path, "clipfuse.evaluation", update, EVALUATION_VERSION, _read_evaluation)
    return path


def save_robustness(
    results_dir: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]
) -> Path:
    """Merge perturbation records into ``robustness.json``."""
    new = [_check_robustness_record(dict(r)) for r in records]
    path = Path(results_dir) / ROBUSTNESS_FILE
    _update_json(
        path,
        "clipfuse.robustness",
        lambda o: o.update(records=_merge_rows(o.get("records", []), new, ROBUSTNESS_KEY)),
    )
    return path


def save_temperatures(
    results_dir: str | os.PathLike[str],
    dataset: str,
    temperatures: ArrayLike,
    labels: ArrayLike,
    backbones: Sequence[str],
    *,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Add or replace one dataset's NLC temperatures in ``temperatures.safetensors``."""
    t = to_tensor(temperatures, torch.float32).contiguous()
    if t.ndim != 2:
        raise DataError(f"temperatures must have shape (samples, backbones), got {tuple(t.shape)}")
    names = backbone_names(backbones, t.shape[1])
    y = check_labels(labels, t.shape[0]).contiguous()
    path = Path(results_dir) / TEMPERATURES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with results_lock(path):
        tensors, meta = _read_temperature_file(path) if path.exists() else ({}, {"datasets": {}})
        tensors[f"{dataset}/temperatures"] = t
        tensors[f"{dataset}/labels"] = y
        meta["datasets"][dataset] = {
            "backbones": names,
            "class_names": None if class_names is None else [str(c) for c in class_names],
        }
        atomic_write_bytes(path, save(tensors, metadata={"clipfuse": json.dumps(meta)}))
    return path


# --- reading ---------------------------------------------------------------------------------


def _check_evaluation_row(row: dict[str, Any]) -> dict[str, Any]:
    for k in ("dataset", "method", "mean"):
        if k not in row:
            raise DataError(f"evaluation row lacks {k!r}: {row}")
    mean = row["mean"]
    if not isinstance(mean, int | float) or not 0.0 <= float(mean) <= 1.0:
        raise DataError(
            f"evaluation row {row['dataset']}/{row['method']}: 'mean' must be an accuracy "
            f"fraction in [0, 1], got {mean!r}"
        )
    return row


def _check_robustness_record(rec: dict[str, Any]) -> dict[str, Any]:
    for k in ("perturbation", "severity", "method", "accuracy"):
        if k not in rec:
            raise DataError(f"robustness record lacks {k!r}: {rec}")
    if not 0.0 <= float(rec["accuracy"]) <= 1.0:
        raise DataError(f"robustness accuracy must be a fraction in [0, 1], got {rec['accuracy']}")
    return rec


def _read_temperature_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("clipfuse", "null"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open API)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("datasets"), dict):
        raise DataError(f"{path} lacks the 'clipfuse' metadata describing its datasets")
    return tensors, meta


def _load_temperatures(path: Path) -> dict[str, Temperatures]:
    tensors, meta = _read_temperature_file(path)
    out = {}
    for name, info in meta["datasets"].items():
        t_key, y_key = f"{name}/temperatures", f"{name}/labels"
        if t_key not in tensors or y_key not in tensors:
            raise DataError(f"{path}: dataset {name!r} lacks {t_key!r} or {y_key!r}")
        out[name] = Temperatures(
            temperatures=tensors[t_key].numpy(),
            labels=tensors[y_key].numpy(),
            backbones=list(info["backbones"]),
            class_names=info.get("class_names"),
        )
    return out


def _load_analysis(path: Path) -> dict[str, DatasetAnalysis]:
    obj = _read_json(path, "clipfuse.analysis")
    out = {}
    for name, entry in obj.get("datasets", {}).items():
        if "complementarity" not in entry:
            raise DataError(f"{path}: dataset {name!r} lacks 'complementarity'")
        out[name] = DatasetAnalysis(
            complementarity=ComplementarityResult.from_dict(entry["complementarity"]),
            cka=CKAResult.from_dict(entry["cka"]) if entry.get("cka") else None,
            gflops={str(k): float(v) for k, v in entry["gflops"].items()}
            if entry.get("gflops")
            else None,
            info=dict(entry.get("info", {})),
        )
    return out


def load_results(results_dir: str | os.PathLike[str]) -> Results:
    """Read every known file of ``results_dir`` (see the module docstring)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"results directory {root} does not exist")
    analysis = evaluation = protocol = robustness = temps = None
    if (root / ANALYSIS_FILE).exists():
        analysis = _load_analysis(root / ANALYSIS_FILE)
    if (root / EVALUATION_FILE).exists():
        obj = _read_evaluation(root / EVALUATION_FILE)
        evaluation = [_check_evaluation_row(dict(r)) for r in obj.get("rows", [])]
        protocol = obj.get("protocol")
    if (root / ROBUSTNESS_FILE).exists():
        obj = _read_json(root / ROBUSTNESS_FILE, "clipfuse.robustness")
        robustness = [_check_robustness_record(dict(r)) for r in obj.get("records", [])]
    if (root / TEMPERATURES_FILE).exists():
        temps = _load_temperatures(root / TEMPERATURES_FILE)
    return Results(root, analysis, evaluation, protocol, robustness, temps)
