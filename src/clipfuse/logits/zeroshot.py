"""Zero-shot text classifiers and logits from cached image features (docs/method.md §2).

`z_b(x) = s_b · normalize(h_b(x)) · W_bᵀ`, W_b built exactly as open_clip's
`build_zero_shot_classifier` (mean of normalised template embeddings, renormalised): we call it,
so our logits are open_clip's by construction.

SigLIP-style models (a logit bias b, sigmoid scores): `z = s · cos + b`, exactly the model's own
`logits_per_image` (transformers and open_clip), whose sigmoid is its per-class probability. The
combiners fuse through softmaxes over classes, and b is the same for every class of a row, so it
changes neither softmax nor argmax: what they fuse is `s · cos`, the footing every CLIP has
(s ≈ 100 for OpenAI CLIP, ≈ 110-120 for trained SigLIPs).
"""

from __future__ import annotations

import numpy as np
import torch

from clipfuse.backbones.backbone import Backbone
from clipfuse.hashing import value_hash
from clipfuse.store import FeatureStore


def classifier_key(fingerprint: str, classnames: list[str], templates: list[str]) -> str:
    return f"{fingerprint}-{value_hash([classnames, templates], 12)}"


def cached_classifier(
    store: FeatureStore, fingerprint: str, classnames: list[str], templates: list[str]
) -> tuple[torch.Tensor, float] | None:
    """(classifier, logit scale) from the store without loading the model, or None."""
    cached = store.get_array_set("text", classifier_key(fingerprint, classnames, templates))
    if cached is None:
        return None
    weights = torch.from_numpy(np.array(cached.arrays["weights"], dtype=np.float32))
    return weights, float(cached.metadata["logit_scale"])


def text_classifier(
    backbone: Backbone,
    classnames: list[str],
    templates: list[str],
    store: FeatureStore | None = None,
) -> torch.Tensor:
    """(C, D) float32 class embeddings; cached in the store's "text" namespace when given."""
    from open_clip import build_zero_shot_classifier

    key = classifier_key(backbone.info.fingerprint, classnames, templates)
    if store is not None:
        hit = cached_classifier(store, backbone.info.fingerprint, classnames, templates)
        if hit is not None:
            return hit[0]
    backbone.require_text()
    with torch.inference_mode():
        weights = build_zero_shot_classifier(
            backbone.model,
            backbone.tokenizer,
            classnames,
            [_fill(t) for t in templates],
            num_classes_per_batch=max(1, 4096 // max(1, len(templates))),
            device=backbone.device,
        )
    weights = weights.T.float().cpu().contiguous()
    if store is not None:
        store.put_array_set(
            "text",
            key,
            {"weights": weights.numpy()},
            {
                "backbone": backbone.info.fingerprint,
                "spec": backbone.info.spec,
                "classnames": classnames,
                "templates": templates,
                "logit_scale": backbone.info.logit_scale,
                "logit_bias": backbone.info.logit_bias,
            },
        )
    return weights


def _fill(template: str):
    """open_clip formats positional "{}" templates; ours use CLIP_benchmark's "{c}"."""
    return lambda classname: template.replace("{c}", classname)


def zeroshot_logits(
    features, classifier: torch.Tensor, logit_scale: float, logit_bias: float | None = None
) -> torch.Tensor:
    """(N, D) normalised features (any float dtype) -> (N, C) float32 logits (+ SigLIP's bias)."""
    feats = torch.as_tensor(np.asarray(features, dtype=np.float32))
    logits = logit_scale * feats @ classifier.T
    return logits + logit_bias if logit_bias else logits
