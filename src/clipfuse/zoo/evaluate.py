"""Zero-shot top-1 of a loaded backbone on a labelled dataset, for the model cards.

Class embeddings follow CLIP: the mean of the L2-normalised embeddings of the dataset's prompt
templates, renormalised (docs/method.md §2); images go through the backbone's own preprocessing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipfuse.backbones import Backbone
from clipfuse.data import ImageDataset


def class_embeddings(
    backbone: Backbone, classnames: list[str], templates: list[str]
) -> torch.Tensor:
    """(C, D) L2-normalised zero-shot classifier."""
    rows = [
        backbone.encode_texts([t.replace("{c}", c) for t in templates]).mean(0) for c in classnames
    ]
    return F.normalize(torch.stack(rows), dim=-1)


def zero_shot_predictions(
    backbone: Backbone, dataset: ImageDataset, batch_size: int = 500
) -> torch.Tensor:
    """(N,) predicted class indices."""
    weights = class_embeddings(backbone, dataset.classnames, dataset.templates)
    preds = []
    for start in range(0, len(dataset), batch_size):
        stop = min(len(dataset), start + batch_size)
        pixels = torch.stack(
            [backbone.preprocess(dataset.load_image(i)) for i in range(start, stop)]
        )
        preds.append((backbone.encode_images(pixels) @ weights.T).argmax(1))
    return torch.cat(preds)


def zero_shot_accuracy(backbone: Backbone, dataset: ImageDataset, batch_size: int = 500) -> float:
    preds = zero_shot_predictions(backbone, dataset, batch_size)
    return float((preds == torch.as_tensor(dataset.labels)).float().mean())
