"""Train the zoo: same data, same order, same CLIP loss and schedule; only the image tower differs.

Entry points: `train_zoo(out_dir, seed, ...)` (Python) and `main(argv)` (the `clipfuse zoo train`
command). Training is deterministic for a seed on a given machine (seeded init, data order and
augmentation derived from (seed, step), deterministic kernels) and resumable: a checkpoint is
written atomically every `checkpoint_every` steps and a rerun with the same arguments continues
from it, giving the same weights as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from clipfuse.errors import ClipfuseError
from clipfuse.hashing import value_hash
from clipfuse.zoo.captions import CaptionBank
from clipfuse.zoo.checkpoint import load_checkpoint, read_meta, save_checkpoint
from clipfuse.zoo.configs import ZOO_NAMES, model_config
from clipfuse.zoo.recipe import Recipe
from clipfuse.zoo.trainset import TrainSet, cache_dir, default_sources

DEFAULT_OUT = Path(__file__).resolve().parent / "weights"


@dataclass
class TrainResult:
    model: torch.nn.Module
    steps_done: int
    wall_time_s: float  # summed over resumed sessions
    final_loss: float | None


def create_model(model_cfg: dict[str, Any], seed: int) -> torch.nn.Module:
    """open_clip's own CLIP class, initialised from `seed` alone."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**model_cfg, output_dict=True)


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW with open_clip's grouping: no weight decay on gains, biases and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exclude = (
            p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        )
        (no_decay if exclude else decay).append(p)
    groups = [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": recipe.weight_decay},
    ]
    return torch.optim.AdamW(
        groups, lr=recipe.lr, betas=(recipe.beta1, recipe.beta2), eps=recipe.eps
    )


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one step (augmentation, caption choice): a pure function of (seed, step)."""
    state = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the duration of training (warn-only on CUDA, where some lack one)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def run_key(
    model_cfg: dict[str, Any], recipe: Recipe, seed: int, trainset: TrainSet, mean: list[float]
) -> str:
    """Identity of a training run; a checkpoint from any other run is never resumed."""
    payload = {
        "cfg": model_cfg,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "data": trainset.counts,
        "mean": mean,
    }
    return value_hash(payload, 16)


def train_model(
    name: str,
    model_cfg: dict[str, Any],
    trainset: TrainSet,
    captions: CaptionBank,
    recipe: Recipe,
    *,
    seed: int = 0,
    mean_std: tuple[list[float], list[float]],
    work_dir: Path,
    device: str = "cpu",
    stop_after: int | None = None,
    progress: bool = True,
    position: int = 0,
) -> TrainResult:
    """Train (or resume, or just reload) one model; `stop_after` ends early, as an interruption would."""
    import open_clip

    dev = torch.device(device)
    mean, std = mean_std
    key = run_key(model_cfg, recipe, seed, trainset, mean)
    model = create_model(model_cfg, seed).to(dev)
    optimizer = make_optimizer(model, recipe)
    meta = read_meta(work_dir)
    start, wall, loss_value = 0, 0.0, None
    if meta is not None:
        if meta.get("run_key") != key:
            raise ClipfuseError(
                f"{str(work_dir)!r} holds a checkpoint of a different run (config, recipe, seed or data changed); "
                "remove it or pass another --work-dir"
            )
        start = load_checkpoint(work_dir, model, optimizer)
        wall, loss_value = float(meta.get("wall_time_s", 0.0)), meta.get("loss")
    end = recipe.steps if stop_after is None else min(recipe.steps, stop_after)
    loss_fn = open_clip.ClipLoss()
    mean_t = torch.tensor(mean, device=dev).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=dev).view(1, 3, 1, 1)
    tokens = captions.tokens.to(dev)
    model.train()
    bar = tqdm(
        total=recipe.steps,
        initial=start,
        desc=name,
        unit="step",
        disable=not progress,
        position=position,
        dynamic_ncols=True,
    )
    t_session = time.perf_counter()

    def checkpoint(step: int) -> None:
        elapsed = wall + time.perf_counter() - t_session
        save_checkpoint(
            work_dir,
            model,
            optimizer,
            step,
            {"run_key": key, "name": name, "wall_time_s": elapsed, "loss": loss_value},
        )

    with deterministic(dev), bar:
        for step in range(start, end):
            idx = trainset.batch_indices(step, recipe.batch_size, seed)
            gen = step_generator(seed, step)
            pixels = trainset.augment(idx, gen).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
            text = tokens[captions.draw(trainset.domains[idx], trainset.labels[idx], gen).to(dev)]
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr_at(step)
            out = model((pixels - mean_t) / std_t, text)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(recipe.max_logit_scale))
            loss_value = float(loss.detach())
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_value:.3f}",
                scale=f"{float(model.logit_scale.detach().exp()):.1f}",
                refresh=False,
            )
            done = step + 1
            if done % recipe.checkpoint_every == 0 or done == end:
                checkpoint(done)
    wall += time.perf_counter() - t_session
    model.eval()
    return TrainResult(model=model, steps_done=end, wall_time_s=wall, final_loss=loss_value)


@dataclass(frozen=True)
class ZooJob:
    """Everything one worker needs to train, export, evaluate and card one model (picklable)."""

    name: str
    out_dir: Path
    work_dir: Path
    seed: int
    recipe: Recipe
    data_root: str | None
    device: str
    evaluate: bool
    limit: int | None
    threads: int | None
    progress: bool
    position: int = 0


def run_job(job: ZooJob) -> dict[str, Any]:
    """Train (or resume) one zoo model, export its folder and write its card; returns the card."""
    from clipfuse.zoo.cards import write_card
    from clipfuse.zoo.export import export_model

    if job.threads:
        torch.set_num_threads(job.threads)
    trainset = TrainSet.build(default_sources(job.data_root), limit=job.limit)
    mean_std = trainset.mean_std()
    cfg = model_config(job.name)
    captions = CaptionBank.build(list(trainset.domain_names), _tokenizer(cfg))
    result = train_model(
        job.name,
        cfg,
        trainset,
        captions,
        job.recipe,
        seed=job.seed,
        mean_std=mean_std,
        work_dir=job.work_dir / job.name,
        device=job.device,
        progress=job.progress,
        position=job.position,
    )
    weights = export_model(result.model, cfg, *mean_std, job.out_dir / job.name)
    return write_card(
        job.out_dir / job.name,
        name=job.name,
        model=result.model,
        model_cfg=cfg,
        recipe=job.recipe,
        seed=job.seed,
        trainset=trainset,
        result=result,
        device=job.device,
        data_root=job.data_root,
        weights=weights,
        evaluate=job.evaluate,
    )


def train_zoo(
    out_dir: str | Path = DEFAULT_OUT,
    seed: int = 0,
    *,
    names: list[str] | tuple[str, ...] = ZOO_NAMES,
    recipe: Recipe | None = None,
    data_root: str | Path | None = None,
    device: str = "cpu",
    work_dir: str | Path | None = None,
    evaluate: bool = True,
    limit: int | None = None,
    jobs: int = 1,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Train every named zoo model on the same data and schedule, export it, evaluate, write its card.

    `jobs` > 1 trains that many models at once in separate processes, each with `threads` torch
    threads (default 1): on a small shared CPU, one thread per process avoids OpenMP threads
    waiting on each other, which measured several times faster than 2 threads in one process.
    Weights are deterministic for a given seed and thread count. Rerunning with the same
    arguments resumes interrupted models and re-exports finished ones without training again.
    Returns {name: card}.
    """
    unknown = [n for n in names if n not in ZOO_NAMES]
    if unknown:
        raise ClipfuseError(
            f"unknown zoo model(s) {', '.join(unknown)} (known: {', '.join(ZOO_NAMES)})"
        )
    TrainSet.build(
        default_sources(data_root), limit=limit
    )  # decode once, before workers read the cache
    base = ZooJob(
        name="",
        out_dir=Path(out_dir),
        seed=seed,
        recipe=recipe or Recipe(),
        device=device,
        work_dir=Path(work_dir) if work_dir else cache_dir() / "runs" / f"seed{seed}",
        data_root=None if data_root is None else str(data_root),
        evaluate=evaluate,
        limit=limit,
        threads=threads if threads or jobs == 1 else 1,
        progress=progress,
    )
    todo = [replace(base, name=n, position=i) for i, n in enumerate(names)]
    if jobs <= 1:
        cards = {job.name: run_job(job) for job in todo}
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {job.name: pool.submit(run_job, job) for job in todo}
            cards = {name: future.result() for name, future in futures.items()}
    if set(cards) == set(ZOO_NAMES):
        from clipfuse.zoo.cards import write_index

        write_index(base.out_dir, cards)
    return cards


def _tokenizer(model_cfg: dict[str, Any]):
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])


def build_parser() -> argparse.ArgumentParser:
    defaults = Recipe()
    p = argparse.ArgumentParser(
        prog="clipfuse zoo train", description="Train the clipfuse zoo of small CLIP backbones."
    )
    p.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        help="folder for the NAME/ weight folders (default: the package's zoo)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", nargs="+", default=list(ZOO_NAMES), choices=list(ZOO_NAMES))
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding cifar10/, fashion-mnist/, mnist/ (default: $CLIPFUSE_DATA or ../shared/data)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--jobs", type=int, default=1, help="models trained at once, one process each (default 1)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: torch's choice; 1 with --jobs > 1)",
    )
    p.add_argument(
        "--work-dir", default=None, help="checkpoints (default: ~/.cache/clipfuse/zoo/runs/seedN)"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="train on at most this many images per dataset"
    )
    p.add_argument(
        "--no-eval", action="store_true", help="skip the zero-shot evaluation of the cards"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipe = Recipe(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
    )
    t0 = time.perf_counter()
    cards = train_zoo(
        args.out,
        args.seed,
        names=args.models,
        recipe=recipe,
        data_root=args.data_root,
        device=args.device,
        work_dir=args.work_dir,
        evaluate=not args.no_eval,
        limit=args.limit,
        jobs=args.jobs,
        threads=args.threads,
    )
    for name, card in cards.items():
        accs = ", ".join(f"{k} {v:.3f}" for k, v in card.get("zero_shot_top1", {}).items())
        print(
            f"{name}: trained {card['training']['wall_time_s']:.0f}s; zero-shot top-1: {accs or 'not evaluated'}"
        )
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
