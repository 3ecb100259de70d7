"""Two 1-shot ideas of issue 21 that were tried on the task suite and not kept (BENCHMARKS.md).

``agreement``: can the backbones' agreement on the unlabelled pool say which backbone is best
without labels? One-coin Dawid-Skene EM over their zero-shot predictions estimates each one's
accuracy; printed beside the true accuracy on the evaluation images.

``self-training``: do heads trained on the 10 labels plus the more confident half (per class) of
``safe_conf_mix``'s pseudo-labels on the unlabelled pool beat their teacher at 1 shot?

Suite images only (the zoo's train hold-out and the shipped demo test images).

    python benchmarks/explore_one_shot.py agreement --store /tmp/labels/store
    python benchmarks/explore_one_shot.py self-training --store /tmp/labels/store
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _suite import TASKS, load_task  # noqa: E402

SELF_TRAINING_TASKS = (
    "cifar10/clean", "cifar10/grayscale", "cifar10/swap", "cifar10/noise4", "cifar10/downup4",
    "fashion-mnist/clean",
)  # fmt: skip


def one_coin_accuracy(pred: torch.Tensor, num_classes: int, iters: int = 50) -> torch.Tensor:
    """(B,) Dawid-Skene accuracies of B labellers from their predictions (B, N), no labels."""
    b, n = pred.shape
    rows = torch.arange(n)
    post = torch.zeros(n, num_classes)
    for k in range(b):
        post[rows, pred[k]] += 1
    post /= post.sum(1, keepdim=True)
    for _ in range(iters):
        acc = torch.stack([post[rows, pred[k]].mean() for k in range(b)]).clamp(1e-3, 1 - 1e-3)
        wrong = ((1 - acc) / (num_classes - 1)).log()
        log_post = post.mean(0).clamp_min(1e-6).log().expand(n, num_classes).clone()
        for k in range(b):
            log_post += wrong[k]
            log_post[rows, pred[k]] += acc[k].log() - wrong[k]
        post = torch.softmax(log_post, 1)
    return acc


def agreement(store: str) -> None:
    right = 0
    for task in TASKS:
        pool, held = load_task(task, store, progress=False)
        estimate = one_coin_accuracy(pool.logits.argmax(-1), pool.logits.shape[2])
        true = (held.logits.argmax(-1) == held.labels).float().mean(1)
        right += int(estimate.argmax() == true.argmax())
        print(f"{task.label:28s} true {np.round(100 * true.numpy(), 1)} "
              f"estimated {np.round(100 * estimate.numpy(), 1)}", flush=True)  # fmt: skip
    print(f"best backbone ranked first by the estimate on {right} of {len(TASKS)} tasks")


def self_training(store: str, seeds: list[int]) -> None:
    from clipfuse.combiners import make_combiner
    from clipfuse.protocol import fit_inputs

    for task in TASKS:
        if task.label not in SELF_TRAINING_TASKS:
            continue
        pool, held = load_task(task, store, progress=False)
        ref = float((held.logits.argmax(-1) == held.labels).float().mean(1).max())
        scores: dict[str, list[float]] = {}
        for seed in seeds:
            teacher = make_combiner("safe_conf_mix")
            f, z, y, _ = fit_inputs(teacher, pool, pool.holdout(1, seed=seed))
            teacher.fit(f, z, y)
            scores.setdefault("teacher", []).append(teacher.score(*held.fusion_inputs()))
            unl = y < 0
            conf, pseudo = torch.softmax(
                teacher.predict_logits([x[unl] for x in f], z[:, unl]), -1
            ).max(-1)
            keep = torch.zeros_like(conf, dtype=torch.bool)
            for c in pseudo.unique():
                mine = pseudo == c
                keep |= mine & (conf >= conf[mine].quantile(0.5))
            rows = torch.cat([torch.nonzero(~unl).flatten(), torch.nonzero(unl).flatten()[keep]])
            labels = torch.cat([y[~unl], pseudo[keep]])
            for name in ("zs_probe", "tipf_super_learner"):
                student = make_combiner(name).fit([x[rows] for x in f], z[:, rows], labels)
                scores.setdefault(name, []).append(student.score(*held.fusion_inputs()))
        print(f"{task.label:22s} ref {100 * ref:.1f} " + " ".join(
            f"{k} {100 * (np.mean(v) - ref):+.2f} [{100 * (min(v) - ref):+.2f}]"
            for k, v in scores.items()
        ), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("agreement", "self-training"))
    parser.add_argument("--store", default="clipfuse-suite-store")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what == "agreement":
        agreement(args.store)
    else:
        self_training(args.store, [int(s) for s in args.seeds.split(",")])


if __name__ == "__main__":
    main()
