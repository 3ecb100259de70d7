"""Classification metrics on logits: top-k accuracy and mean per-class recall (CLIP_benchmark's)."""

from __future__ import annotations

import torch


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose true class is among the k highest scores."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    # float64: exactly correct/n, the same number the runner's chunked count gives
    return (top == y[:, None]).any(dim=-1).double().mean().item()


def mean_per_class_recall(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Average over the classes present in y of the recall of each class."""
    correct = torch.zeros(num_classes).index_add_(0, y, (pred == y).float())
    count = torch.bincount(y, minlength=num_classes).float()
    present = count > 0
    return (correct[present] / count[present]).mean().item()


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    pred = logits.argmax(dim=-1)
    return {
        "top1": topk_accuracy(logits, y, 1),
        "top5": topk_accuracy(logits, y, 5),
        "mean_per_class_recall": mean_per_class_recall(pred, y, logits.shape[-1]),
        "n": int(y.numel()),
    }
