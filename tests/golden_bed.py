"""Golden digests of every registered combiner on the shipped demo data (issue 22).

Frozen before the combiners were rewritten by composition, so the rewrite is checked to the digit:
the same zoo backbones, the same shipped CIFAR-10 demo images, the same hold-out draw and seeds,
the same (small) training budgets. ``python tests/golden_bed.py`` rewrites
``tests/golden/combiners.json`` -- only do that for an intended, named change of behaviour;
``python tests/golden_bed.py --only-new`` adds combiners registered since, leaving the rest;
``--changed NAME=WHY`` (repeatable, implies ``--only-new``) refits NAME for an intended change of
behaviour and records WHY under ``"changes"`` in the golden file.

Digest per combiner: test predictions (one digit per image), top-1 accuracy, mean NLL and the
per-class sums of the probabilities (rounded), which move with any change of the fused scores
beyond float rounding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "combiners.json"
SPECS = ["zoo:rn-tiny", "zoo:vit-p4", "zoo:vit-p8", "zoo:timm-convnext_atto"]
TRAIN_LIMIT, TEST_LIMIT = 200, 400
SHOTS, SEED = 4, 0
# Small fixed training budgets: enough to exercise every code path, a few seconds each.
FAST: dict[str, dict] = {
    "moe": {"steps": 60},
    "nlc": {"steps": 60},
    "lp_nlc": {"inner__steps": 60},
    "tip_nlc": {"inner__steps": 60},
    "tipf": {"head__epochs": 5},
    "tipf_mean": {"head__epochs": 5},
    "tipf_super_learner": {"head__epochs": 5},
    "tipf_nlc": {"head__epochs": 5, "inner__steps": 60},
    "cascade": {"controller__steps": 60},
    "subset_nlc": {"controller__steps": 60},
    "nlc_residual": {"steps": 60},
    "zs_probe_nlc": {"inner__steps": 60},
    "head_stack": {"final": {"name": "nlc", "params": {"steps": 60}}},  # added with issue 22
    "auto": {"candidates": ["safe_conf_mix", "zs_probe"]},  # added with issue 21
}


def load_bed(store: Path):
    """(train, test) ViewBundles of the shipped CIFAR-10 demo data on the four zoo backbones."""
    import clipfuse

    source = clipfuse.demo_source("cifar10")
    train = clipfuse.load_views(SPECS, source, splits="train", store=store, limit=TRAIN_LIMIT)
    test = clipfuse.load_views(SPECS, source, splits="test", store=store, limit=TEST_LIMIT)
    return train, test


def fit_one(name: str, train, params: dict | None = None):
    """The combiner fitted as ``clipfuse fit`` does: one seeded hold-out + unlabelled rest."""
    from clipfuse.protocol import fit_on_draw

    hold = train.holdout(SHOTS, seed=SEED)
    return fit_on_draw(name, train, hold, params=params or FAST.get(name), seed=SEED).combiner


def digest(combiner, test) -> dict:
    """Predictions, accuracy, NLL and per-class probability sums on the whole test view."""
    feats, logits, y = test.fusion_inputs()
    proba = combiner.predict_proba(feats, logits).double().cpu()
    pred = proba.argmax(1)
    nll = -torch.log(proba.gather(1, y.view(-1, 1)).clamp_min(1e-12)).mean()
    return {
        "predictions": "".join(str(int(p)) for p in pred),
        "accuracy": round(float((pred == y).double().mean()), 6),
        "nll": round(float(nll), 5),
        "class_sums": [round(float(s), 3) for s in proba.sum(0)],
    }


def main(store: str, only_new: bool = False, changed: dict[str, str] | None = None) -> None:
    """Write every registered combiner's digest; ``only_new`` keeps the frozen ones and adds the
    names registered since (a new combiner is not a change of an old one's behaviour);
    ``changed`` (name -> why) refits those names and records why."""
    from clipfuse.combiners import list_combiners

    train, test = load_bed(Path(store))
    old = json.loads(GOLDEN.read_text()) if only_new or changed else {}
    out = old.get("combiners", {})
    changes = old.get("changes", {})
    for name, why in (changed or {}).items():
        out.pop(name, None)
        changes[name] = why
    for name in list_combiners():
        if name in out:
            continue
        out[name] = digest(fit_one(name, train), test)
        print(name, out[name]["accuracy"], flush=True)
    meta = {"specs": SPECS, "train_limit": TRAIN_LIMIT, "test_limit": TEST_LIMIT,
            "shots": SHOTS, "seed": SEED, "fast": FAST}  # fmt: skip
    GOLDEN.parent.mkdir(exist_ok=True)
    body = {"bed": meta, "combiners": out, **({"changes": changes} if changes else {})}
    GOLDEN.write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    argv, changed, args = sys.argv[1:], {}, []
    while argv:
        a = argv.pop(0)
        if a == "--changed":
            name, _, why = argv.pop(0).partition("=")
            changed[name] = why
        elif a != "--only-new":
            args.append(a)
    main(args[0] if args else "/tmp/clipfuse-golden-store", "--only-new" in sys.argv, changed)
