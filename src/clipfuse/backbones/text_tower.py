"""Dropping a model's text tower when only its image tower will run (extraction).

A CLIP's text tower is a large share of its weights (RN50x64: 203 M of 623 M parameters,
ViT-L/14: 124 M of 428 M; 0.92 G of 2.47 G for the paper's nine OpenAI architectures) and extraction never runs it: text classifiers are built later, by
`zeroshot` / `evaluate`, from a fresh load, and cached in the store. Extracting the paper's nine
OpenAI architectures in one pass held all nine full models (11.3 GiB); holding image towers
only is what keeps it within 8 GiB (BENCHMARKS.md, `benchmarks/bench_memory.py`).
"""

from __future__ import annotations

from torch import nn

# open_clip's CLIP keeps its text tower in these attributes; CustomTextCLIP (SigLIP, CoCa,
# timm/HF text towers) in `text` (+ `text_decoder` for CoCa)
OPEN_CLIP_TEXT = (
    "transformer",
    "token_embedding",
    "positional_embedding",
    "ln_final",
    "text_projection",
    "attn_mask",
    "text",
    "text_decoder",
)
TRANSFORMERS_TEXT = ("text_model", "text_projection")


def drop_text_tower(model: nn.Module) -> int:
    """Delete the text tower's modules, parameters and buffers from `model`; returns how many
    parameters were freed. The image tower, logit scale and bias are untouched."""
    owner, names = model, OPEN_CLIP_TEXT
    hf = getattr(model, "hf", None)
    if isinstance(hf, nn.Module):  # clipfuse's TransformersCLIP adapter
        owner, names = hf, TRANSFORMERS_TEXT
    freed = 0
    for name in names:
        if (
            name not in owner._modules
            and name not in owner._parameters
            and name not in owner._buffers
        ):
            continue
        value = getattr(owner, name)
        if isinstance(value, nn.Module):
            freed += sum(p.numel() for p in value.parameters())
        elif value is not None:
            freed += value.numel() if name in owner._parameters else 0
        delattr(owner, name)
    return freed
