"""Issue 21's task suite: the tasks every default, candidate set and rule is chosen on.

Images (protocol discipline, COMMON rules): per dataset (CIFAR-10, Fashion-MNIST)
- the labelled POOL is the zoo's train hold-out (1,000 class-balanced train images no zoo
  backbone saw, ``clipfuse.zoo.trainset.holdout_positions``); hold-outs are drawn from it and
  the rest of it is given unlabelled to combiners that declare ``uses_unlabelled``;
- the EVALUATION images are the shipped demo test images (2,000, ``src/clipfuse/demo_data``).
No other test image is read. A task = a dataset + an image transformation applied to pool and
evaluation alike (the project's perturbation suite, plus colour inversion and a channel swap
defined here) + optionally meaningless class names ("class 0" ...), which leave the features
intact but make the text classifier near useless, so zero-shot is near chance.
Features are cached in a FeatureStore (the first run extracts, reruns take seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageOps

from clipfuse.extraction.perturbations import Perturbation


def _invert(img: Image.Image) -> Image.Image:
    return ImageOps.invert(img.convert("RGB"))


def _swap(img: Image.Image) -> Image.Image:
    r, g, b = img.convert("RGB").split()
    return Image.merge("RGB", (b, r, g))


EXTRA = {"invert": _invert, "swap": _swap}


class SuiteTransform:
    """A picklable transformation ``t(image, position) -> image`` with a store ``key``: one
    of the project's perturbations, or a colour transformation of ``EXTRA``."""

    def __init__(self, name: str, severity: int = 3) -> None:
        self.name, self.severity = name, severity
        self._pert = None if name in EXTRA else Perturbation(name, severity, seed=0)

    @property
    def key(self) -> str:
        return self._pert.key if self._pert is not None else f"suite-{self.name}"

    def __call__(self, image: Image.Image, position: int) -> Image.Image:
        if self._pert is not None:
            return self._pert(image, position)
        return EXTRA[self.name](image)


@dataclass(frozen=True)
class Task:
    dataset: str  # cifar10 | fashion-mnist
    transform: str | None = None  # perturbation name or EXTRA key; None: clean
    severity: int = 3
    names: str = "true"  # "true" class names, or "meaningless" ("class 0", ...)

    @property
    def label(self) -> str:
        t = "clean" if self.transform is None else f"{self.transform}{self.severity}"
        if self.transform in EXTRA or self.transform in ("grayscale", "rotate90", "flip"):
            t = self.transform
        return f"{self.dataset}/{t}" + ("/nonames" if self.names == "meaningless" else "")


# 13 tasks (the size of the private suite): clean, colour shifts, corruptions, and two where
# the class names are meaningless (zero-shot near chance, features still separate classes).
TASKS: tuple[Task, ...] = (
    Task("cifar10"),
    Task("cifar10", "grayscale"),
    Task("cifar10", "invert"),
    Task("cifar10", "swap"),
    Task("cifar10", "noise", 4),
    Task("cifar10", "downup", 4),
    Task("cifar10", "contrast", 5),
    Task("cifar10", names="meaningless"),
    Task("fashion-mnist"),
    Task("fashion-mnist", "invert"),
    Task("fashion-mnist", "rotate90"),
    Task("fashion-mnist", "downup", 4),
    Task("fashion-mnist", names="meaningless"),
)


def _extract_view(store, specs, dataset, transform, progress):
    from clipfuse.backbones import load_backbone
    from clipfuse.extraction import extract, view_name

    key = None if transform is None else transform.key
    extract(
        [load_backbone(s) for s in specs], dataset, store,
        perturbation=transform, progress=progress,
    )  # fmt: skip
    return view_name(dataset, key)


def _rows(dataset, keep: np.ndarray):
    """``dataset`` restricted to the positions ``keep`` (sorted)."""
    return replace(
        dataset,
        labels=np.asarray(dataset.labels)[keep],
        sample_ids=[dataset.sample_ids[k] for k in keep],
        positions=dataset.positions[keep],
        limit=len(keep),
    )


def report_eval_dataset(name: str, n: int = 2000):
    """FINAL REPORTING ONLY (never for choosing): ``n`` class-balanced test images outside the
    shipped demo subset (which is ``balanced_subset(test labels, 2000, seed=0)``, PROVENANCE.md)."""
    from clipfuse.data import open_dataset
    from clipfuse.data.sampling import balanced_subset
    from clipfuse.zoo.trainset import default_sources

    test = open_dataset(default_sources()[name], "test")
    labels = np.asarray(test.labels)
    rest = np.setdiff1d(np.arange(len(labels)), balanced_subset(labels, 2000, seed=0))
    return _rows(test, np.sort(rest[balanced_subset(labels[rest], n, seed=1)]))


def pool_and_eval_datasets(name: str, report: bool = False):
    """(pool dataset = zoo train hold-out, evaluation dataset = shipped demo test images, or with
    ``report`` the final-report images of ``report_eval_dataset``)."""
    from clipfuse.data import open_dataset
    from clipfuse.demo import DEMO_DATASETS
    from clipfuse.zoo.trainset import default_sources, holdout_positions

    train = open_dataset(default_sources()[name], "train")
    pool = _rows(train, holdout_positions(np.asarray(train.labels)))
    if report:
        return pool, report_eval_dataset(name)
    return pool, open_dataset(DEMO_DATASETS[name], "test")


def load_task(task: Task, store_dir: str, progress: bool = True, report: bool = False):
    """(pool bundle, evaluation bundle) of one task, extracting into the store on first use."""
    from clipfuse.backbones import list_backbones
    from clipfuse.logits import load_bundle
    from clipfuse.store import FeatureStore

    specs = [e.spec for e in list_backbones("zoo:*")]
    store = FeatureStore(store_dir)
    transform = None if task.transform is None else SuiteTransform(task.transform, task.severity)
    out = []
    for dataset in pool_and_eval_datasets(task.dataset, report):
        view = _extract_view(store, specs, dataset, transform, progress)
        names = dataset.classnames
        if task.names == "meaningless":
            names = [f"class {k}" for k in range(len(names))]
        out.append(
            load_bundle(store, view, backbones=specs, classnames=names, templates=dataset.templates)
        )
    return out[0], out[1]
