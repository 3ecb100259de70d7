"""Test beds shared by several test modules (so no test module imports another).

- the fusion bed: two tiny random backbones over 200 real CIFAR-10 train and 200 test images, on
  disk as an image folder plus a feature store, built once per session (``build_fusion_bed``);
- the CLI helpers ``run_cli`` and ``fit_cli`` used against it;
- ``class_world``: a class-structured feature world where labelled shots can beat zero-shot.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from conftest import CIFAR10_TEST, CIFAR10_TRAIN, RN_TINY, VIT_TINY

from clipfuse.cli import main

CORE_METHODS = [
    "best_single",
    "mean_logits",
    "mean_proba",
    "majority_vote",
    "max_confidence",
    "calibrated_mean",
    "super_learner",
    "moe",
    "nlc",
]
PER_CLASS = 22  # images per class written per split; extraction keeps a balanced 200 (--limit)
FAST = ["--param", "nlc.steps=50", "--param", "moe.steps=50"]  # fixed small training budgets


@dataclasses.dataclass(frozen=True)
class FusionBed:
    folder: Path  # <folder>/{train,test}/<class>/<file>.jpg
    store: Path  # both tiny backbones over train and test, 200 images each

    @property
    def data(self) -> list[str]:
        return ["--data", f"imagefolder:{self.folder}", "--store", str(self.store)]

    def bundles(self):
        """(train, test) fusion inputs through the Python API, as the CLI loads them."""
        from clipfuse.data import open_dataset
        from clipfuse.logits import load_bundle, resolve_view
        from clipfuse.store import FeatureStore

        store = FeatureStore(self.store)
        out = []
        for split in ("train", "test"):
            dataset = open_dataset(f"imagefolder:{self.folder}", split, limit=200)
            view = resolve_view(store, dataset)
            out.append(
                load_bundle(store, view, classnames=dataset.classnames, templates=dataset.templates)
            )
        return tuple(out)


def _copy_split(archive: Path, split: str, root: Path) -> None:
    """The first PER_CLASS images of every class, read with tarfile (not clipfuse)."""
    taken: dict[str, int] = defaultdict(int)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or taken[parts[1]] >= PER_CLASS:
                continue
            target = root / split / parts[1] / parts[2]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            taken[parts[1]] += 1
            if len(taken) == 10 and min(taken.values()) >= PER_CLASS:
                break


def build_fusion_bed(tmp_path_factory) -> FusionBed:
    """Built once per session on disk; a later call (another module's fixture) reuses it."""
    archives = {"train": CIFAR10_TRAIN, "test": CIFAR10_TEST}
    root = tmp_path_factory.getbasetemp() / "fusion-bed"
    bed = FusionBed(root / "cifar10", root / "store")
    if (root / "done").is_file():
        return bed
    for split, archive in archives.items():
        _copy_split(archive, split, bed.folder)
    for split in ("train", "test"):
        args = ["extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, "--split", split,
                "--limit", "200", *bed.data, "--quiet"]  # fmt: skip
        assert main(args) == 0
    (root / "done").write_text("ok")
    return bed


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def fit_cli(bed, method: str, out, seed: int = 0) -> int:
    args = ["fit", *bed.data, "--train-split", "train", "--limit", "200", "--method", method,
            "--shots", "1", "--seed", str(seed), "--out", str(out), *FAST]  # fmt: skip
    return main(args)


HEAD_STACK_FAST = {"inner_params": {"steps": 60}}  # NLC inner: enough to run, not to converge


def class_world(shots: int, n_test: int, seed: int = 0, classes: int = 10, dims=(16, 24, 32)):
    """(train, test), each (features B x (N, D), zero-shot logits (B, N, C), labels)."""
    gen = torch.Generator().manual_seed(seed)
    centres = [F.normalize(torch.randn(classes, d, generator=gen), dim=1) for d in dims]
    text = [
        F.normalize(m + 1.5 * torch.randn(classes, d, generator=gen) / d**0.5, dim=1)
        for m, d in zip(centres, dims)
    ]

    def split(y: torch.Tensor):
        feats = [
            F.normalize(
                m[y] + (1.0 + 0.3 * i) * torch.randn(len(y), d, generator=gen) / d**0.5, dim=1
            )
            for i, (m, d) in enumerate(zip(centres, dims))
        ]
        return feats, torch.stack([100 * f @ w.T for f, w in zip(feats, text)]), y

    train = split(torch.arange(classes).repeat_interleave(shots))
    return train, split(torch.randint(0, classes, (n_test,), generator=gen))


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean())
