"""Fusion inputs for one dataset view: every backbone's cached features and zero-shot logits,
aligned sample by sample (the "Fusion inputs" contract of ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from clipfuse.data.dataset import ImageDataset
from clipfuse.data.holdout import HoldoutDraw, draw_holdout
from clipfuse.errors import ProvenanceMismatchError, StoreError
from clipfuse.logits.zeroshot import cached_classifier, text_classifier, zeroshot_logits
from clipfuse.store import FeatureStore


@dataclass
class ViewBundle:
    """Everything the combiners need for one dataset view, aligned sample by sample.

    ``features`` are B tensors ``(N, D_b)`` (L2-normalised image embeddings), ``logits`` the
    zero-shot logits ``(B, N, C)`` and ``labels`` ``(N,)``; ``fusion_inputs()`` returns that
    triple, so ``combiner.fit(*hold.fusion_inputs())`` and ``combiner.score(*test.fusion_inputs())``
    read the same way. Per backbone: ``names``, ``specs``, ``fingerprints``, ``logit_scales``,
    text ``classifiers`` and image-tower ``gflops``. ``indices``/``sample_ids`` name each row in
    the store view. A bundle made by ``holdout()`` carries its seeded, hashed ``draw``.
    """

    view: str
    names: list[str]
    specs: list[str]
    fingerprints: list[str]
    features: list[torch.Tensor]  # B x (N, D_b) float32, L2-normalised
    logits: torch.Tensor  # (B, N, C) float32
    labels: torch.Tensor  # (N,) int64
    indices: np.ndarray  # (N,) positions in the view
    sample_ids: list[str]
    classnames: list[str]
    templates: list[str]
    logit_scales: list[float]
    classifiers: list[torch.Tensor] = field(default_factory=list)  # B x (C, D_b) text classifiers
    gflops: list[float | None] = field(default_factory=list)  # image-tower GFLOPs per backbone
    failures: list[dict[str, Any]] = field(default_factory=list)
    logit_biases: list[float | None] = field(default_factory=list)  # SigLIP's bias, else None
    dataset: str = ""  # the dataset's name (catalog name or guessed from the path)
    draw: HoldoutDraw | None = None  # set on bundles made by holdout()

    @property
    def num_backbones(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def fusion_inputs(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(features, logits, labels)``: the arguments of ``fit`` and ``score``."""
        return self.features, self.logits, self.labels

    def select(self, rows) -> ViewBundle:
        """A bundle restricted to some rows (a hold-out draw, a test subset)."""
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        rows_np = rows_t.numpy()
        return replace(
            self,
            features=[f[rows_t] for f in self.features],
            logits=self.logits[:, rows_t],
            labels=self.labels[rows_t],
            indices=self.indices[rows_np],
            sample_ids=[self.sample_ids[r] for r in rows_np],
            failures=[],
            draw=None,
        )

    def holdout(
        self,
        shots: int | None = None,
        *,
        fraction: float | None = None,
        seed: int = 0,
        clamp: bool = False,
    ) -> ViewBundle:
        """The labelled hold-out of one seeded draw (k shots per class, or a fraction), as a
        bundle whose ``draw`` records exactly which rows were taken. Draw it from a train view,
        never from the data you score on."""
        draw = draw_holdout(
            self.labels.numpy(),
            self.indices,
            len(self.classnames),
            view=self.view,
            seed=seed,
            shots=shots,
            fraction=fraction,
            clamp=clamp,
        )
        hold = self.select(np.searchsorted(self.indices, draw.positions))
        hold.draw = draw
        return hold


def view_info(store: FeatureStore, view: str) -> dict[str, Any]:
    info = store.get_array_set("view-info", view)
    if info is None:
        raise StoreError(
            f"view {view!r} is not in store {store.root}; run `clipfuse extract` first"
        )
    return dict(info.metadata)


def resolve_view(
    store: FeatureStore, dataset: ImageDataset, perturbation_key: str | None = None
) -> str:
    """The store view for this data: the exact selection if extracted, else the only extracted
    selection of the same source and split (so `zeroshot` needs no `--limit` after `extract --limit`)."""
    from clipfuse.extraction.engine import view_name

    exact = view_name(dataset, perturbation_key)
    views = store.views()
    if exact in views:
        return exact
    infos = [(v, store.get_array_set("view-info", v)) for v in views]
    same_split = {  # view -> its view-info, for extractions of this split and perturbation
        v: info.metadata
        for v, info in infos
        if info is not None
        and info.metadata.get("split") == dataset.split
        and info.metadata.get("perturbation") == perturbation_key
    }
    candidates = [
        v for v, m in same_split.items() if m.get("source_fingerprint") == dataset.source_fingerprint
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        _raise_if_changed(list(same_split.values()), dataset)
        raise StoreError(
            f"no features for {dataset.source} split {dataset.split!r} in store {store.root}; run `clipfuse extract` first"
        )
    raise StoreError(
        f"several extractions of {dataset.split!r} in the store ({', '.join(candidates)}); pass --limit to choose"
    )


def _raise_if_changed(same_split: list[dict[str, Any]], dataset: ImageDataset) -> None:
    """The store holds this source and split with other contents: say the data changed (the
    user did extract it) rather than asking for a first extraction."""
    from clipfuse.data.sources import canonical_source

    source = canonical_source(dataset.source)
    for m in same_split:
        if m.get("source") == source and m.get("source_fingerprint") != dataset.source_fingerprint:
            if m.get("columns") and m.get("columns") != dataset.columns:
                raise ProvenanceMismatchError(
                    f"{dataset.source} split {dataset.split!r} was extracted with columns "
                    f"{m['columns']}, not {dataset.columns}; extract it with these columns"
                )
            then = m.get("num_samples")
            raise ProvenanceMismatchError(
                f"{dataset.source} split {dataset.split!r} changed since extraction (images added, "
                f"removed or resized: {then} extracted, {len(dataset)} now); extract it again"
            )


def _load_classifier(store, fingerprint, classnames, templates, backbone_cache):
    hit = cached_classifier(store, fingerprint, classnames, templates)
    if hit is not None:
        return hit
    from clipfuse.backbones import load_backbone

    spec = _spec(store, fingerprint)
    # not kept once its classifier is cached: nine large CLIPs held at once would not fit in RAM
    backbone = backbone_cache.get(spec) or load_backbone(spec, with_gflops=False)
    if backbone.info.fingerprint != fingerprint:
        raise ProvenanceMismatchError(
            f"{spec} now has fingerprint {backbone.info.fingerprint} but the store holds features of "
            f"{fingerprint}: its weights or preprocessing changed since extraction"
        )
    return text_classifier(backbone, classnames, templates, store), backbone.info.logit_scale


def load_bundle(
    store: FeatureStore,
    view: str,
    *,
    backbones: list[str] | None = None,
    classnames: list[str] | None = None,
    templates: list[str] | None = None,
) -> ViewBundle:
    """Features and zero-shot logits of every (or the named) backbone extracted for `view`.

    `backbones` filters by spec, name or fingerprint. Rows are aligned on view positions present
    for every backbone (decode failures are absent from all of them).
    """
    info = view_info(store, view)
    classnames = classnames or info["classnames"]
    templates = templates or info["templates"]
    keys = [k for k in store.entries() if k.view == view]
    if backbones:
        wanted = set(backbones)
        keys = [k for k in keys if {k.backbone, _spec(store, k.backbone)} & wanted]
        if len(keys) < len(wanted):
            raise StoreError(f"not all of {sorted(wanted)} are extracted for view {view}")
    keys = sorted(keys, key=lambda k: _spec(store, k.backbone))
    if not keys:
        raise StoreError(f"no backbone features for view {view!r}; run `clipfuse extract` first")
    datas = [store.entry(k).read() for k in keys]
    common = datas[0].indices
    for d in datas[1:]:
        common = np.intersect1d(common, d.indices)
    cache: dict[str, Any] = {}
    feats, logits, scales, classifiers = [], [], [], []
    for key, data in zip(keys, datas):
        rows = np.searchsorted(data.indices, common)
        f = torch.from_numpy(np.asarray(data.features[rows], dtype=np.float32))
        weights, scale = _load_classifier(store, key.backbone, classnames, templates, cache)
        if weights.shape[1] != f.shape[1]:
            raise StoreError(
                f"text classifier of {key.backbone} has dim {weights.shape[1]}, features {f.shape[1]}"
            )
        feats.append(f)
        bias = _recorded(store, key.backbone, "logit_bias")
        logits.append(zeroshot_logits(f, weights, scale, bias))
        scales.append(scale)
        classifiers.append(weights)
    first_rows = np.searchsorted(datas[0].indices, common)
    specs = [_spec(store, k.backbone) for k in keys]
    return ViewBundle(
        view=view,
        names=[_short_name(s) for s in specs],
        specs=specs,
        fingerprints=[k.backbone for k in keys],
        features=feats,
        logits=torch.stack(logits),
        labels=torch.from_numpy(np.asarray(datas[0].labels[first_rows], dtype=np.int64)),
        indices=common,
        sample_ids=[datas[0].sample_ids[r] for r in first_rows],
        classnames=list(classnames),
        templates=list(templates),
        logit_scales=scales,
        classifiers=classifiers,
        gflops=[_recorded(store, k.backbone, "image_gflops") for k in keys],
        failures=list(datas[0].failures),
        logit_biases=[_recorded(store, k.backbone, "logit_bias") for k in keys],
    )


def _spec(store: FeatureStore, fingerprint: str) -> str:
    """The spec a backbone was extracted with (recorded at extraction, not part of the key)."""
    info = store.get_array_set("backbone-info", fingerprint)
    if info is None:
        raise StoreError(f"store has no backbone-info for {fingerprint}; re-run `clipfuse extract`")
    return str(info.metadata["spec"])


def _recorded(store: FeatureStore, fingerprint: str, key: str) -> Any:
    """One field of a backbone's recorded info ("image_gflops", "logit_bias"); None if absent."""
    info = store.get_array_set("backbone-info", fingerprint)
    return None if info is None else info.metadata.get(key)


def _short_name(spec: str) -> str:
    from clipfuse.backbones.spec import parse_backbone_spec

    try:
        return parse_backbone_spec(spec).name
    except Exception:
        return spec
