"""Hugging Face *transformers* CLIP and SigLIP checkpoints behind open_clip's model interface.

open_clip cannot load a `save_pretrained` folder (its `hf-hub:` needs `open_clip_config.json`), and
many users hold exactly those (`openai/clip-vit-base-patch32`, `google/siglip-base-patch16-224`,
fine-tuned CLIPs). `TransformersCLIP` gives a `CLIPModel` or `SiglipModel` the three things the
rest of clipfuse calls: `encode_image`, `encode_text`, `logit_scale` (+ `logit_bias`), so
extraction, zero-shot classifiers (open_clip's own builder), GFLOPs and CPU kernels work as for
any other backbone. Images go through the checkpoint's own image processor and prompts through
its own tokenizer, both recorded in the backbone's preprocessing (hence in its fingerprint), so
features equal what transformers itself computes.

SigLIP is scored as transformers scores it: `logits_per_image = exp(logit_scale) * cos + logit_bias`
(a sigmoid of that is SigLIP's per-class probability), with prompts lowercased and padded to the
text tower's full length (`padding="max_length"`, 64 tokens): SigLIP was trained that way and
pools the last position, so shorter padding gives different text embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipfuse.backbones.spec import BackboneSpec
from clipfuse.backbones.weights import _cached_hub_file, _download_or_fail
from clipfuse.errors import BackboneError
from clipfuse.hashing import file_sha256, value_hash

SUPPORTED = {"clip": "CLIPModel", "siglip": "SiglipModel"}
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")
HUB_FILES = [
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer*",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "spiece.model",
    "*.safetensors",
    "*.safetensors.index.json",
]


def _transformers():
    try:
        import transformers
    except ImportError:
        raise BackboneError(
            "transformers:* backbones need the transformers package: "
            "pip install 'clipfuse[transformers]'"
        ) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


class _VisionTower(nn.Module):
    """The image half (for parameter counts and the CPU chunk size); shares the model's modules."""

    def __init__(self, modules: list[nn.Module], grid: int, preprocess_cfg: dict[str, Any]):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self.grid_size = (grid, grid)
        self.preprocess_cfg = preprocess_cfg


class TransformersCLIP(nn.Module):
    """A transformers `CLIPModel` / `SiglipModel` with open_clip's `encode_image`/`encode_text`."""

    def __init__(self, hf_model: nn.Module, model_type: str, preprocess_cfg: dict[str, Any]):
        super().__init__()
        self.hf = hf_model
        self.model_type = model_type
        vision_cfg = hf_model.config.vision_config
        parts = [hf_model.vision_model]
        if hasattr(hf_model, "visual_projection"):
            parts.append(hf_model.visual_projection)
        grid = int(vision_cfg.image_size) // int(vision_cfg.patch_size)
        # not a registered submodule: the same parameters must not appear twice in state_dict
        object.__setattr__(self, "visual", _VisionTower(parts, grid, preprocess_cfg))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.hf.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return getattr(self.hf, "logit_bias", None)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        out = _pooled(self.hf.get_image_features(pixel_values=pixels))
        return nn.functional.normalize(out, dim=-1) if normalize else out

    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor:
        """`tokens`: what `TransformersTokenizer` returns (passed on as the tokenizer made it, as
        transformers' own zero-shot pipeline does), or a tensor of input ids."""
        if isinstance(tokens, torch.Tensor):
            inputs = {"input_ids": tokens}
        else:
            inputs = {k: tokens[k] for k in ("input_ids", "attention_mask") if k in tokens}
        out = _pooled(self.hf.get_text_features(**inputs))
        return nn.functional.normalize(out, dim=-1) if normalize else out


def _pooled(out) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the embedding; 4 a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersImageProcessor:
    """PIL image -> (3, H, W) float pixels through the checkpoint's own image processor."""

    def __init__(self, processor, config: dict[str, Any]):
        self.processor = processor
        self.config = config

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:  # stable: extraction shares one transform among equal reprs
        return f"TransformersImageProcessor({value_hash(self.config, 16)})"


class TransformersTokenizer:
    """Prompts -> the checkpoint tokenizer's batch (`.to(device)` works, as for open_clip's tensor)."""

    def __init__(self, tokenizer, max_length: int, padding: str | bool, lowercase: bool):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding = padding
        self.lowercase = lowercase

    def __call__(self, texts: str | list[str]):
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.lowercase:
            texts = [t.lower() for t in texts]
        return self.tokenizer(
            texts,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )


def resolve_transformers_dir(spec: BackboneSpec) -> Path:
    """The folder of a transformers checkpoint: the spec's own folder, or the cached hub snapshot
    (downloaded only when downloads are allowed, with the same one-line failures as open_clip tags)."""
    if spec.kind == "transformers-dir":
        return Path(spec.location)
    repo_id = spec.location
    config = _cached_hub_file(repo_id, ["config.json"])
    if config and _weight_files(Path(config).parent):
        return Path(config).parent

    def fetch() -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))

    return _download_or_fail(
        f"transformers:{repo_id}", f"huggingface.co/{repo_id}", fetch, "transformers:/path/to/dir"
    )


def _weight_files(directory: Path) -> list[Path]:
    """The weights transformers loads from a folder (safetensors first, as it does)."""
    for pattern in WEIGHT_PATTERNS:
        found = sorted(p for p in directory.glob(pattern) if not p.name.endswith(".json"))
        if found:
            return found
    return []


def _weights_id(directory: Path) -> str:
    files = _weight_files(directory)
    if not files:
        raise BackboneError(
            f"no weights (model.safetensors or pytorch_model.bin) in {str(directory)!r}"
        )
    if len(files) == 1:
        return file_sha256(files[0])
    return value_hash([[f.name, file_sha256(f)] for f in files])


def _tokenizer_files_id(directory: Path) -> str:
    names = [
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "special_tokens_map.json",
    ]
    return value_hash([[n, file_sha256(directory / n)] for n in names if (directory / n).is_file()])


PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def _require_image_processor(directory: Path) -> None:
    """Fail in one line unless the folder holds an image processor in either layout:
    `preprocessor_config.json` (an image processor saved alone, or transformers 4's processor) or
    `processor_config.json` with an `image_processor` entry (transformers 5's processor)."""
    if (directory / PROCESSOR_FILES[0]).is_file():
        return
    combined = directory / PROCESSOR_FILES[1]
    if combined.is_file():
        try:
            entry = json.loads(combined.read_text()).get("image_processor")
        except (OSError, ValueError, AttributeError) as exc:
            raise BackboneError(f"unreadable {combined} ({exc})") from None
        if isinstance(entry, dict):
            return
        raise BackboneError(
            f"{combined} has no image_processor entry: save the CLIP/SigLIP processor itself "
            "(AutoProcessor.from_pretrained(...).save_pretrained(DIR)), not only its tokenizer"
        )
    raise BackboneError(
        f"no image processor in {str(directory)!r} (neither preprocessor_config.json nor "
        "processor_config.json): copy the one the checkpoint came with, e.g. "
        "AutoProcessor.from_pretrained(ORIGINAL_ID).save_pretrained(DIR)"
    )


def create_transformers(spec: BackboneSpec):
    """(model, preprocess, tokenizer, model_cfg, weights_id) for a transformers spec, in the
    shape `backbone._create` returns for open_clip specs."""
    transformers = _transformers()
    directory = resolve_transformers_dir(spec)
    try:
        raw_config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackboneError(f"unreadable config.json in {str(directory)!r} ({exc})") from None
    model_type = raw_config.get("model_type")
    if model_type not in SUPPORTED:
        known = ", ".join(f"{v} ({k})" for k, v in SUPPORTED.items())
        raise BackboneError(
            f"{spec.raw}: transformers model type {model_type!r} is not supported (supported: {known})"
        )
    _require_image_processor(directory)
    for name in ("config.json", *PROCESSOR_FILES):  # recorded: what the model is built from
        if (directory / name).is_file():
            file_sha256(directory / name)
    weights_id = _weights_id(directory)
    model_cls = getattr(transformers, SUPPORTED[model_type])
    hf_model = model_cls.from_pretrained(str(directory), local_files_only=True).float().eval()
    image_processor = transformers.AutoImageProcessor.from_pretrained(
        str(directory), local_files_only=True
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    siglip = model_type == "siglip"
    text_cfg, vision_cfg = hf_model.config.text_config, hf_model.config.vision_config
    max_length = int(text_cfg.max_position_embeddings)
    padding: str | bool = "max_length" if siglip else True
    image_cfg = json.loads(image_processor.to_json_string())
    text = {
        "tokenizer": type(tokenizer).__name__,
        "files_sha256": _tokenizer_files_id(directory),
        "padding": padding,
        "max_length": max_length,
        "lowercase": siglip,
    }
    size = int(vision_cfg.image_size)
    preprocess_cfg = {
        "size": size,
        "transformers_model": SUPPORTED[model_type],
        "image_processor": image_cfg,
        "text": text,
    }
    model = TransformersCLIP(hf_model, model_type, preprocess_cfg)
    embed_dim = int(vision_cfg.hidden_size if siglip else hf_model.config.projection_dim)
    model_cfg = {"embed_dim": embed_dim, "vision_cfg": {"image_size": size}}
    return (
        model,
        TransformersImageProcessor(image_processor, image_cfg),
        TransformersTokenizer(tokenizer, max_length, padding, lowercase=siglip),
        model_cfg,
        weights_id,
    )


def cached_transformers_models() -> list[dict[str, Any]]:
    """CLIP / SigLIP checkpoints in the local Hugging Face cache (for `clipfuse backbones`)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return []
    found: dict[str, dict[str, Any]] = {}
    for config in sorted(Path(constants.HF_HUB_CACHE).glob("models--*--*/snapshots/*/config.json")):
        try:
            raw = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        if raw.get("model_type") not in SUPPORTED:
            continue
        repo = config.parents[2].name[len("models--") :].replace("--", "/", 1)
        vision = raw.get("vision_config") or {}
        siglip = raw["model_type"] == "siglip"
        found[repo] = {
            "spec": f"transformers:{repo}",
            "embed_dim": vision.get("hidden_size") if siglip else raw.get("projection_dim"),
            "image_size": vision.get("image_size"),
        }
    return list(found.values())
