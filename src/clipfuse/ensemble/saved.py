"""A self-contained, code-free ensemble file: backbone specs and provenance, text classifiers,
the fitted combiner and class names, in one safetensors file (tensors + a JSON header).

Loading parses JSON and reads tensors; nothing is unpickled, so a file from elsewhere cannot run
code. The header carries a sha256 of the whole file (`ensemble.checksum`): a file with any edited
byte is refused before anything in it is used. The backbones' weights are not copied in: they are loaded by spec and must have the
recorded fingerprint (same weights, same preprocessing), or loading stops with a clear error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from clipfuse.combiners import Combiner, combiner_from_state
from clipfuse.data.holdout import HoldoutDraw
from clipfuse.ensemble.checksum import save_sealed, verify
from clipfuse.ensemble.inputs import Images, images_dataset
from clipfuse.errors import ClipfuseError, DataError, FitError, ProvenanceMismatchError
from clipfuse.paths import ensure_dir
from clipfuse.store.atomic import atomic_write_bytes

FORMAT = "clipfuse.ensemble"
VERSION = 2  # 2: sha256 checksum in the header


@dataclass
class SavedEnsemble:
    """A fitted combiner with everything needed to run it on new images, as one file.

    ``backbones`` are provenance records (spec, name, fingerprint, logit scale) -- the weights
    are loaded by spec and checked against the fingerprint; ``classifiers`` are the per-backbone
    text classifiers ``(C, D_b)``; ``training`` records the view, label budget, seed and the
    hashed hold-out the combiner learnt from. Build one with ``from_fitted``, write it with
    ``save``, read it back with ``load`` (or ``clipfuse.load_ensemble``), run it with
    ``predict``.
    """

    backbones: list[dict[str, Any]]  # spec, name, fingerprint, logit_scale
    classnames: list[str]
    templates: list[str]
    classifiers: list[torch.Tensor]  # B x (C, D_b)
    combiner: Combiner
    training: dict[str, Any] = field(default_factory=dict)  # view, budget, seed, hold-out hash
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_fitted(
        cls,
        combiner: Combiner,
        bundle: Any,
        *,
        draw: HoldoutDraw | None = None,
        allow_transductive: bool = False,
    ) -> SavedEnsemble:
        """The ensemble of a combiner fitted on ``bundle`` (a ViewBundle; a bundle made by
        ``holdout()`` brings its draw, which is recorded as the training provenance). A
        transductive combiner needs ``allow_transductive=True``, recorded as
        ``training["transductive"]``."""
        combiner._check_fitted()
        check_transductive(combiner, allow_transductive)
        draw = draw if draw is not None else bundle.draw
        training: dict[str, Any] = {"view": bundle.view, "dataset": bundle.dataset}
        if combiner.transductive:
            training["transductive"] = True
        training["fit_notes"] = json.loads(json.dumps(combiner.fit_notes(), default=float))
        if draw is not None:
            training.update(
                budget=draw.budget,
                seed=draw.seed,
                num_labels=draw.num_labels,
                holdout_sha256=draw.content_hash,
                holdout_positions=draw.positions,
            )
        return cls(
            backbones=backbone_records(bundle),
            classnames=list(bundle.classnames),
            templates=list(bundle.templates),
            classifiers=list(bundle.classifiers),
            combiner=combiner,
            training=training,
        )

    @property
    def classes_(self) -> np.ndarray:
        """The class names, in the order of ``predict_proba``'s columns (scikit-learn's name)."""
        return np.array(self.classnames)

    def _backbones(self, device: str) -> dict[int, Any]:
        """The loaded backbones the combiner reads (loaded once per device, then reused)."""
        from clipfuse.ensemble.predict import load_needed

        if device not in self._loaded:
            self._loaded[device] = load_needed(self, device)
        return self._loaded[device]

    def predict(
        self,
        images: Images,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        top_k: int = 1,
        skip_unreadable: bool = False,
        progress: bool = False,
        transductive: bool = False,
    ) -> list[dict[str, Any]]:
        """One record per image, in input order (image, label, probability, top-k, temperatures
        where the method has them). ``images``: a path (file or folder), PIL image or uint8
        array (HWC, HW, or a batch), or a list of these. An unreadable image is a DataError
        unless ``skip_unreadable``, which lists it as ``{"image", "kind", "error"}`` in its place
        (the policy of `clipfuse predict` and `clipfuse serve`). A transductive ensemble is
        scored on all ``images`` together, and only with ``transductive=True``."""
        from clipfuse.ensemble.predict import predict_dataset

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise DataError(f"top_k must be a positive integer; got {top_k!r}")
        dataset = images_dataset(images)
        predictions, failures = predict_dataset(
            self, dataset, backbones=self._backbones(device), batch_size=batch_size,
            top_k=top_k, progress=progress, transductive=transductive,
        )  # fmt: skip
        if failures and not skip_unreadable:
            _raise_unreadable(failures)
        order = {image: k for k, image in enumerate(dataset.sample_ids)}
        return sorted(predictions + failures, key=lambda r: order[r["image"]])

    def predict_proba(
        self, images: Images, *, device: str = "cpu", batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """(N, C) float32 class probabilities, one row per image in input order, columns in
        ``classes_`` order. Every image must be readable (a DataError names the first that is
        not): rows must line up with the caller's images."""
        from clipfuse.ensemble.predict import fused_batches

        dataset = images_dataset(images)
        proba = np.zeros((len(dataset), len(self.classnames)), dtype=np.float32)
        failures: list[dict[str, Any]] = []
        for positions, fused, batch_failures in fused_batches(
            self, dataset, self._backbones(device), batch_size=batch_size, progress=progress
        ):
            failures.extend(batch_failures)
            if fused is not None:
                proba[positions] = fused.proba.float().numpy()
        if failures:
            _raise_unreadable(failures)
        return proba

    def score(
        self, images: Images, labels: Any, *, device: str = "cpu", batch_size: int = 32
    ) -> float:
        """Top-1 accuracy (a fraction) on labelled images; ``labels`` are class names or
        indices into ``classnames``, one per image (scikit-learn's ``score``)."""
        proba = self.predict_proba(images, device=device, batch_size=batch_size)
        y = self._label_indices(labels, len(proba))
        return float((proba.argmax(axis=1) == y).mean())

    def _label_indices(self, labels: Any, n: int) -> np.ndarray:
        values = list(labels.tolist() if hasattr(labels, "tolist") else labels)
        if len(values) != n:
            raise DataError(f"got {len(values)} labels for {n} images")
        index = {name: k for k, name in enumerate(self.classnames)}
        out = np.empty(n, dtype=np.int64)
        for k, v in enumerate(values):
            if isinstance(v, str):
                if v not in index:
                    raise DataError(
                        f"label {v!r} is not a class of this ensemble ({', '.join(self.classnames[:5])}, ...)"
                    )
                out[k] = index[v]
            elif isinstance(v, (int, np.integer)) and 0 <= int(v) < len(self.classnames):
                out[k] = int(v)
            else:
                raise DataError(
                    f"label {v!r} is neither a class name nor an index in [0, {len(self.classnames)})"
                )
        return out

    def save(self, path: str | Path) -> Path:
        """Write the ensemble to `path` and a readable copy of its header to `path` with .json."""
        path = Path(path)
        if path.suffix == ".json":
            raise ClipfuseError(
                f"{str(path)!r}: an ensemble is a .safetensors file (its .json header copy goes next to it)"
            )
        if self.combiner.transductive and not self.training.get("transductive"):
            check_transductive(self.combiner, False)
        ensure_dir(path.parent)
        tensors = {
            f"classifier.{b}": w.contiguous().float() for b, w in enumerate(self.classifiers)
        }
        tensors.update({f"combiner.{k}": v for k, v in self.combiner.state_dict().items()})
        header = {
            "format": FORMAT,
            "version": VERSION,
            "backbones": self.backbones,
            "classnames": self.classnames,
            "templates": self.templates,
            "combiner": self.combiner.config(),
            "transductive": bool(self.combiner.transductive),
            "training": self.training,
        }
        save_sealed(tensors, path, {"clipfuse": json.dumps(header)})
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(header, indent=1).encode())
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> SavedEnsemble:
        path = Path(path)
        if not path.is_file():
            raise ClipfuseError(f"ensemble file not found: {str(path)!r}")
        verify(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
            header = json.loads(meta["clipfuse"])
        except (SafetensorError, KeyError, ValueError, OSError) as exc:
            raise ClipfuseError(
                f"{str(path)!r} is not a clipfuse ensemble file ({_one_line(exc)})"
            ) from None
        if not isinstance(header, dict) or (header.get("format"), header.get("version")) != (
            FORMAT,
            VERSION,
        ):
            found = header if not isinstance(header, dict) else header.get("format")
            raise ClipfuseError(f"{str(path)!r}: not a clipfuse ensemble v{VERSION} ({found!r})")
        try:
            num = len(header["backbones"])
            classifiers = [tensors[f"classifier.{b}"] for b in range(num)]
            state = {
                k[len("combiner.") :]: v for k, v in tensors.items() if k.startswith("combiner.")
            }
            combiner = combiner_from_state(header["combiner"], state, device=device)
            return cls(
                list(header["backbones"]),
                list(header["classnames"]),
                list(header["templates"]),
                classifiers,
                combiner,
                dict(header.get("training", {})),
            )
        except ClipfuseError as exc:  # e.g. an unknown combiner name: say which file
            raise ClipfuseError(f"{str(path)!r}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            # a damaged or hand-edited file: say so in one line, whatever broke inside
            raise ClipfuseError(
                f"{str(path)!r} is a damaged clipfuse ensemble ({_one_line(exc)})"
            ) from None

    def load_backbones(
        self, device: str = "cpu", precision: str = "fp32", only: list[int] | None = None
    ):
        """The recorded backbones (or those at positions `only`), each checked against its
        fingerprint. Image towers only: the text classifiers are saved in the ensemble."""
        from clipfuse.backbones import load_backbone

        loaded = []
        for record in self.backbones if only is None else [self.backbones[b] for b in only]:
            backbone = load_backbone(
                record["spec"],
                device=device,
                precision=precision,
                with_gflops=False,
                image_only=True,
            )
            if backbone.info.fingerprint != record["fingerprint"]:
                raise ProvenanceMismatchError(
                    f"backbone {record['spec']} now has fingerprint {backbone.info.fingerprint}, but the ensemble "
                    f"was fitted on {record['fingerprint']} (different weights or preprocessing)"
                )
            loaded.append(backbone)
        return loaded

    def backbone_logits(self, b: int, features: torch.Tensor) -> torch.Tensor:
        """(N, C) zero-shot logits of backbone `b` alone (cascades run backbones one by one)."""
        w = self.classifiers[b]
        rec = self.backbones[b]
        return rec["logit_scale"] * features.float().to(w.device) @ w.T + (
            rec.get("logit_bias") or 0.0
        )

    def logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        """(B, N, C) zero-shot logits from per-backbone normalised features."""
        return torch.stack([self.backbone_logits(b, f) for b, f in enumerate(features)])


def check_transductive(combiner: Combiner, allowed: bool) -> None:
    """Refuse a transductive combiner unless its user opted in (its answers for one image depend
    on the other images predicted with it)."""
    if combiner.transductive and not allowed:
        raise FitError(
            f"{combiner.name} is transductive (an image's prediction depends on the other images "
            "given with it); opt in with allow_transductive=True (CLI: --allow-transductive)"
        )


def _raise_unreadable(failures: list[dict[str, Any]]) -> None:
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    raise DataError(
        f"cannot read image {first['image']!r} ({first['kind']}): {first['error']}{more}"
    )


def _one_line(exc: BaseException) -> str:
    """An exception as one short line (torch's state-dict errors span several)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def backbone_records(bundle) -> list[dict[str, Any]]:
    """Per-backbone provenance from a ViewBundle and the store manifests."""
    return [
        {"spec": spec, "name": name, "fingerprint": fp, "logit_scale": scale, "logit_bias": bias}
        for spec, name, fp, scale, bias in zip(
            bundle.specs,
            bundle.names,
            bundle.fingerprints,
            bundle.logit_scales,
            bundle.logit_biases or [None] * len(bundle.specs),
        )
    ]


def load_ensemble(path: str | Path, device: str = "cpu") -> SavedEnsemble:
    """Read a saved ensemble (no code runs: JSON + tensors); ``SavedEnsemble.load``."""
    return SavedEnsemble.load(path, device=device)
