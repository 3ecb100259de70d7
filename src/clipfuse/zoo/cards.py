"""Model cards: `card.json` (read by `clipfuse.backbones.registry`) and a human `README.md`.

Accuracies are measured on the exported folder through `load_backbone`, i.e. the float16 weights
and open_clip's own eval transform that users get, on the full test splits.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from clipfuse.backbones.flops import COUNTER
from clipfuse.backbones.spec import model_family
from clipfuse.hashing import file_sha256
from clipfuse.store.atomic import atomic_write_bytes
from clipfuse.zoo.captions import training_templates
from clipfuse.zoo.trainset import HOLDOUT_PER_DATASET, HOLDOUT_SEED, default_data_root

EVAL_SETS = {  # dataset -> (source kind, folder under the data root)
    "cifar10": ("imagefolder", "cifar10"),
    "fashion-mnist": ("idx", "fashion-mnist"),
    "mnist": ("idx", "mnist"),
}
LICENSES = {
    "cifar10": "CIFAR-10 (Krizhevsky 2009): no explicit license",
    "fashion-mnist": "Fashion-MNIST (Zalando SE 2017): MIT",
    "mnist": "MNIST (LeCun, Cortes, Burges): CC BY-SA 3.0 (evaluation only)",
}
TOWERS = {
    "resnet": "open_clip ModifiedResNet (CLIP RN design: 3-conv stem, avg-pool downsampling, attention pooling)",
    "vit": "open_clip VisionTransformer (class token, learned position embeddings)",
}
TEXT_TOWER_NOTE = (
    "open_clip's native causal text transformer, trained from scratch with the image tower. A frozen "
    "pretrained text tower cannot be downloaded offline, and the native tower keeps every zoo model "
    "loadable by plain open_clip with the standard CLIP tokenizer."
)


def spec_for(directory: Path) -> str:
    """`zoo:NAME` for the package's own zoo (so the card's fingerprint is the one users get)."""
    from clipfuse.backbones.spec import ZOO_DIR

    inside = directory.resolve().parent == ZOO_DIR.resolve()
    return f"zoo:{directory.name}" if inside else f"local-dir:{directory}"


def evaluate_folder(
    directory: Path, data_root: str | Path | None
) -> tuple[dict[str, float], dict[str, int], Any]:
    from clipfuse.backbones import load_backbone
    from clipfuse.data import open_dataset
    from clipfuse.zoo.evaluate import zero_shot_accuracy

    backbone = load_backbone(spec_for(directory))
    root = Path(data_root) if data_root else default_data_root()
    accs, sizes = {}, {}
    for name, (kind, folder) in EVAL_SETS.items():
        dataset = open_dataset(f"{kind}:{root / folder}", "test")
        accs[name] = round(zero_shot_accuracy(backbone, dataset), 4)
        sizes[name] = len(dataset)
    return accs, sizes, backbone


def write_card(
    directory: Path,
    *,
    name: str,
    model,
    model_cfg,
    recipe,
    seed,
    trainset,
    result,
    device,
    data_root,
    weights,
    evaluate,
) -> dict[str, Any]:
    """Write card.json and README.md for one exported model; returns the card."""
    import open_clip
    import timm

    vision = model_cfg["vision_cfg"]
    family = model_family(model_cfg)
    image_params = sum(p.numel() for p in model.visual.parameters())
    total_params = sum(p.numel() for p in model.parameters())
    card: dict[str, Any] = {
        "name": name,
        "spec": f"zoo:{name}",
        "family": family,
        "architecture": {
            "image_tower": TOWERS.get(
                family,
                f"timm {vision.get('timm_model_name')} trunk (random init) + open_clip linear projection",
            ),
            "text_tower": TEXT_TOWER_NOTE,
            "embed_dim": model_cfg["embed_dim"],
            "vision_cfg": vision,
            "text_cfg": model_cfg["text_cfg"],
        },
        "params": {
            "image_tower": image_params,
            "text_tower": total_params - image_params,
            "total": total_params,
        },
        "input": {
            "size": 32,
            "note": "Fashion-MNIST/MNIST: 28->32 bicubic resize, gray->RGB (open_clip's eval transform)",
        },
        "data": {
            "train": {k: {"split": "train", "images": v} for k, v in trainset.counts.items()},
            "excluded_holdout": f"{HOLDOUT_PER_DATASET} class-balanced train images per dataset (balanced_subset seed {HOLDOUT_SEED}), never trained on",
            "captions": {
                d: {"classes": 10, "templates": len(training_templates(d))}
                for d in trainset.domain_names
            },
            "never_trained_on": ["all test splits", "MNIST"],
            "licenses": LICENSES,
        },
        "objective": "open_clip.ClipLoss: symmetric image-text InfoNCE within the batch, learnable logit scale (clamped at 100)",
        "augmentation": "random 32x32 crop of the 4-pixel zero-padded image; horizontal flip (p=0.5) for CIFAR-10 only",
        "schedule": {
            **recipe.to_dict(),
            "optimizer": "AdamW (no decay on gains, biases, logit scale)",
            "lr_schedule": "linear warmup, cosine to 0",
        },
        "seed": seed,
        "training": {
            "device": device,
            "host_cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "steps": result.steps_done,
            "images_seen": result.steps_done * recipe.batch_size,
            "wall_time_s": round(result.wall_time_s, 1),
            "final_loss": None if result.final_loss is None else round(result.final_loss, 4),
            "versions": {
                "torch": torch.__version__,
                "open_clip": open_clip.__version__,
                "timm": timm.__version__,
            },
        },
        "weights_sha256": file_sha256(weights),
        "weights_dtype": "float16",
    }
    if evaluate:
        accs, sizes, backbone = evaluate_folder(directory, data_root)
        card["zero_shot_top1"] = accs
        card["eval"] = {
            "split": "test",
            "images": sizes,
            "templates": "the dataset's CLIP templates (clipfuse.data.catalog)",
        }
        card["image_gflops"] = (
            round(backbone.info.image_gflops, 5) if backbone.info.image_gflops else None
        )
        card["image_gflops_counter"] = COUNTER  # backbones/flops.py: the one counter
        card["fingerprint"] = backbone.info.fingerprint
        card["logit_scale"] = round(backbone.info.logit_scale, 3)
    atomic_write_bytes(directory / "card.json", (json.dumps(card, indent=2) + "\n").encode())
    atomic_write_bytes(directory / "README.md", render_readme(card).encode())
    return card


def render_readme(card: dict[str, Any]) -> str:
    arch, data, tr, sched = card["architecture"], card["data"], card["training"], card["schedule"]
    lines = [
        f"# zoo:{card['name']} — a small CLIP model trained by clipfuse",
        "",
        "A miniature of the setting in Rodriguez-Opazo et al. (ICLR 2025): CLIP backbones with different",
        "image towers trained on the same data with the same objective. Trained here, on CPU, by",
        "`clipfuse zoo train` (`clipfuse.zoo.train`); for tests, demos and the fusion method, not for real use.",
        "",
        "## Model",
        f"- Image tower: {arch['image_tower']}; config `{json.dumps(arch['vision_cfg'])}`.",
        f"- Text tower: {arch['text_tower']} Config `{json.dumps(arch['text_cfg'])}`.",
        f"- Embedding dim {arch['embed_dim']}; parameters: image {card['params']['image_tower'] / 1e6:.2f} M, "
        f"text {card['params']['text_tower'] / 1e6:.2f} M (mostly the 49,408-token embedding table).",
        f"- Input 32x32 RGB; {card['input']['note']}. Weights stored as {card['weights_dtype']} "
        f"(sha256 `{card['weights_sha256'][:16]}…`).",
    ]
    if card.get("image_gflops") is not None:
        lines.append(
            f"- Image tower: {card['image_gflops'] * 1000:.1f} MFLOPs per image (2 FLOPs per multiply-add)."
        )
    lines += [
        "",
        "## Training",
        "- Data: "
        + ", ".join(f"{k} train ({v['images']:,} images)" for k, v in data["train"].items())
        + f"; excluded: {data['excluded_holdout']}. Never trained on: {', '.join(data['never_trained_on'])}.",
        "- Captions: the class name in a prompt template drawn per sample and step ("
        + ", ".join(f"{k}: {v['templates']} templates" for k, v in data["captions"].items())
        + ").",
        f"- Objective: {card['objective']}.",
        f"- Augmentation: {card['augmentation']}.",
        f"- Schedule (identical for every zoo model): {sched['steps']} steps of batch {sched['batch_size']}, "
        f"{sched['optimizer']}, lr {sched['lr']}, weight decay {sched['weight_decay']}, betas "
        f"({sched['beta1']}, {sched['beta2']}), {sched['warmup']} warmup steps, {sched['lr_schedule']}; seed {card['seed']}.",
        f"- Trained on {tr['device']} ({tr['torch_threads']} threads) in {tr['wall_time_s'] / 60:.1f} min; "
        f"final batch loss {tr['final_loss']}; torch {tr['versions']['torch']}, open_clip {tr['versions']['open_clip']}, "
        f"timm {tr['versions']['timm']}.",
    ]
    if "zero_shot_top1" in card:
        lines += [
            "",
            "## Zero-shot top-1 (full test splits, dataset CLIP templates)",
            "",
            "| dataset | images | top-1 | chance |",
            "|---|---|---|---|",
        ]
        for k, v in card["zero_shot_top1"].items():
            lines.append(f"| {k} | {card['eval']['images'][k]:,} | {v:.3f} | 0.100 |")
        lines += [
            "",
            "MNIST is not in the training data and its class names (digits) never appear in the",
            "captions: it shows how a tiny CLIP fails out of distribution, not a skill.",
        ]
    lines += [
        "",
        "## Data licenses",
        *[f"- {v}" for v in data["licenses"].values()],
        "",
        "## Use",
        "```python",
        "from clipfuse.backbones import load_backbone",
        "",
        f'backbone = load_backbone("zoo:{card["name"]}")  # open_clip local-dir: folder',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_index(out_dir: Path, cards: dict[str, dict[str, Any]]) -> None:
    """`README.md` beside the model folders: one table comparing every zoo model."""
    lines = [
        "# clipfuse zoo: small CLIP backbones trained here",
        "",
        "Same data (CIFAR-10 + Fashion-MNIST train, same order), same text tower, same CLIP loss and",
        "schedule; only the image tower differs. Each folder is an open_clip `local-dir:` model with a",
        "`card.json` and a `README.md` model card. Zero-shot top-1 on the full test splits:",
        "",
        "| model | image tower | image params | MFLOPs/image | CIFAR-10 | Fashion-MNIST | MNIST (unseen) | train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, card in cards.items():
        acc = card.get("zero_shot_top1", {})
        flops = card.get("image_gflops")
        lines.append(
            f"| `zoo:{name}` | {card['family']} | {card['params']['image_tower'] / 1e6:.2f} M | "
            f"{'-' if flops is None else f'{flops * 1000:.1f}'} | "
            + " | ".join(f"{acc[k]:.3f}" if k in acc else "-" for k in EVAL_SETS)
            + f" | {card['training']['wall_time_s'] / 60:.1f} min |"
        )
    lines += [
        "",
        "Rebuild: `clipfuse zoo train` (see `clipfuse.zoo.train`). Chance is 0.100 everywhere.",
        "",
    ]
    atomic_write_bytes(out_dir / "README.md", "\n".join(lines).encode())
