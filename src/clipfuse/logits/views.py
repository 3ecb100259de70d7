"""Opening fusion inputs by name: data source + split (+ backbones) -> ViewBundle.

``open_view`` reads what a store already holds (what every command that reads the store does);
``load_views`` is the notebook verb: it extracts whatever is missing first (each image decoded
once for all backbones, cached, so a second call reads the store in seconds), then opens the
views.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clipfuse.data import open_dataset
from clipfuse.data.dataset import ImageDataset
from clipfuse.errors import ClipfuseError
from clipfuse.logits.bundle import ViewBundle, load_bundle, resolve_view
from clipfuse.store import FeatureStore


def as_store(store: str | Path | FeatureStore, *, create: bool = False) -> FeatureStore:
    """A FeatureStore from a path; a path without a store is an error unless ``create``."""
    if isinstance(store, FeatureStore):
        return store
    if not create and not (Path(store) / "store.json").is_file():
        raise ClipfuseError(
            f"no feature store at {str(store)!r}; run `clipfuse extract --store {store} ...` first"
        )
    return FeatureStore(store)


def bundle_for(
    store: FeatureStore, dataset: ImageDataset, backbones: Sequence[str] | None = None
) -> ViewBundle:
    """The cached fusion inputs of an opened dataset (its own class names and templates)."""
    bundle = load_bundle(
        store,
        resolve_view(store, dataset),
        backbones=list(backbones) if backbones else None,
        classnames=dataset.classnames,
        templates=dataset.templates,
    )
    bundle.dataset = dataset.name
    return bundle


def open_view(
    store: str | Path | FeatureStore,
    source: str,
    split: str,
    *,
    backbones: Sequence[str] | None = None,
    limit: int | None = None,
    name: str | None = None,
    classnames: str | Sequence[str] | None = None,
    templates: str | Sequence[str] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> ViewBundle:
    """Fusion inputs of one extracted split: ``open_view("store/", "imagefolder:data", "test")``.

    ``backbones`` keeps only those (spec, name or fingerprint); ``limit`` picks the same
    class-balanced subset as ``extract --limit``; ``image_column``/``label_column`` choose a
    Parquet source's columns. Nothing is extracted here.
    """
    dataset = open_dataset(
        source,
        split,
        name=name,
        classnames=classnames,
        templates=templates,
        limit=limit,
        image_column=image_column,
        label_column=label_column,
    )
    return bundle_for(as_store(store), dataset, backbones)


def load_views(
    backbones: Sequence[str],
    source: str,
    *,
    splits: str | Sequence[str] = ("train", "test"),
    store: str | Path | FeatureStore = "clipfuse-store",
    limit: int | None = None,
    name: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    threads: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> ViewBundle | tuple[ViewBundle, ...]:
    """Extract what is missing, then open the views: one bundle per split (one for a str).

    ``backbones`` are specs (``zoo:rn-tiny``, ``ViT-B-32:openai``, ...); the store is created if
    needed. Interrupting keeps every finished shard; calling again resumes. Extraction shows a
    progress bar (images/s, ETA) unless ``progress=False``; ``threads`` is the encoders' CPU
    threads (default: the cores beside the decode workers, `clipfuse.extraction.threads`).
    """
    from clipfuse.backbones import load_backbone
    from clipfuse.extraction import extract
    from clipfuse.extraction.noop import finished_extraction

    if not backbones:
        raise ClipfuseError("load_views needs at least one backbone spec")
    feature_store = as_store(store, create=True)
    names = [splits] if isinstance(splits, str) else list(splits)
    columns = dict(image_column=image_column, label_column=label_column)
    datasets = [open_dataset(source, s, name=name, limit=limit, **columns) for s in names]
    loaded = None
    for dataset in datasets:
        if finished_extraction(backbones, dataset, feature_store) is None:  # told without models
            loaded = loaded or [load_backbone(b, device=device) for b in backbones]
            extract(
                loaded,
                dataset,
                feature_store,
                batch_size=batch_size,
                progress=progress,
                threads=threads,
            )
    bundles = tuple(bundle_for(feature_store, d, backbones) for d in datasets)
    return bundles[0] if isinstance(splits, str) else bundles

