"""`Backbone`: one CLIP model with its own preprocessing, normalised encoders and metadata.

Every spec form goes through open_clip's own factory, so a checkpoint loads exactly as it would
in open_clip; clipfuse adds provenance (weights hash + preprocessing -> fingerprint) and metadata.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.backbones.allocator import keep_freed_memory, release_freed_memory
from clipfuse.backbones.built_from import built_from
from clipfuse.backbones.cpu_kernels import restore_default_kernels, use_onednn_kernels
from clipfuse.backbones.devices import check_device
from clipfuse.backbones.spec import ZOO_DIR, BackboneSpec, model_family, parse_backbone_spec
from clipfuse.backbones.weights import resolve_hub_dir, resolve_tag_checkpoint
from clipfuse.errors import BackboneError
from clipfuse.hashing import file_sha256, recorded_hashes, value_hash

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_CONV_CHUNK = 8  # images per forward for a channels-last ResNet on a CPU (see encode_images)
CPU_CONV_CHUNK_BYTES = 128 * 2**20  # at most this much per ResNet activation (`_resnet_chunk`)
CPU_TOKEN_CHUNK = 1600  # tokens per forward for a ViT on a CPU (see encode_images)


@dataclass
class BackboneInfo:
    """What a backbone is, recorded in every manifest and listing."""

    spec: str
    name: str
    family: str  # "resnet" | "vit" | "timm:<model>" | other tower type
    embed_dim: int
    image_size: int
    preprocess: dict[str, Any]
    weights_sha256: str
    logit_scale: float
    logit_bias: float | None
    params_m: float
    image_gflops: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Changes whenever weights or preprocessing change, so cached features never go stale."""
        payload = {"weights": self.weights_sha256, "preprocess": self.preprocess,
                   "dim": self.embed_dim}  # fmt: skip
        slug = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in self.name).strip("-")
        return f"{slug}-{value_hash(payload, 12)}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fingerprint": self.fingerprint}


class Backbone:
    """An open_clip model ready for feature extraction.

    `encode_images` and `encode_texts` return L2-normalised embeddings (docs/method.md §1: normalising
    matters). SigLIP-style models keep their logit bias in `info.logit_bias`; clipfuse's zero-shot
    logits add it (`logits.zeroshot`), so they are the model's own sigmoid log-odds.
    """

    def __init__(
        self, spec: BackboneSpec, model: torch.nn.Module, preprocess, tokenizer, info: BackboneInfo
    ):
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.info = info
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def __repr__(self) -> str:
        return (
            f"Backbone({self.info.name!r}, dim={self.info.embed_dim}, size={self.info.image_size})"
        )

    image_only = False  # set by `load_backbone(image_only=True)`: no text tower
    channels_last = False  # set by `to`: ResNets on a CPU get channels-last pixels
    chunk_images: int | None = None  # set by `to`: images per forward on a CPU (None: all)

    def to(self, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        """Move the model. On a CPU, a ResNet is then fed channels-last pixels, oneDNN's native
        layout for convolutions, linear layers and attention run on oneDNN's kernels
        (`cpu_kernels`) and freed activation memory is reused (`allocator`); parameters are left as they are, so `model.state_dict()` stays
        contiguous (safetensors refuses anything else)."""
        if precision not in PRECISIONS:
            raise BackboneError(f"unknown precision {precision!r} (use fp32, bf16 or fp16)")
        self.device = check_device(device)
        self.precision = precision
        self.model.to(self.device)
        on_cpu = self.device.type == "cpu"
        self.channels_last = on_cpu and self.info.family == "resnet"
        self.chunk_images = _cpu_chunk_images(self.model, self.info.family) if on_cpu else None
        if on_cpu:
            use_onednn_kernels(self.model)
            keep_freed_memory()
        else:
            restore_default_kernels(self.model)
        return self

    def _autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) preprocessed pixels -> (N, D) float32, L2-normalised.

        On a CPU the batch is encoded in chunks (`chunk_images`): the activations of a few images
        stay in cache, and stay below glibc's mmap threshold (32 MB) so that their memory is
        reused instead of being mapped and page-faulted again in every layer (ViT-B/16, batch
        64 on 2 cores: 15.0 s in one forward, 11.9 s in chunks of 8, a fifth of it was kernel
        time). A ResNet's chunks are channels-last: no layout reorder per layer (RN50: 12
        images/s in one NCHW batch of 64, 23 in channels-last chunks of 8; BENCHMARKS.md)."""
        pixels = pixels.to(self.device, non_blocking=True)
        chunks = [pixels] if self.chunk_images is None else list(pixels.split(self.chunk_images))
        if self.channels_last:
            chunks = [c.contiguous(memory_format=torch.channels_last) for c in chunks]
        with self._autocast():
            feats = torch.cat([self.model.encode_image(chunk) for chunk in chunks])
        return F.normalize(feats.float(), dim=-1)

    def require_text(self) -> None:
        """BackboneError unless the text tower is loaded (not an `image_only` backbone)."""
        if self.image_only:
            raise BackboneError(
                f"{self.info.name} was loaded image-only (its text tower freed); load it again "
                "without image_only=True to encode text"
            )

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Strings -> (M, D) float32, L2-normalised."""
        self.require_text()
        tokens = self.tokenizer(texts).to(self.device)
        with self._autocast():
            feats = self.model.encode_text(tokens)
        return F.normalize(feats.float(), dim=-1)


def _cpu_chunk_images(model: torch.nn.Module, family: str) -> int | None:
    """Images per forward on a CPU: CPU_CONV_CHUNK for a ResNet (fewer for the wide, large-input
    ones, see `_resnet_chunk`), CPU_TOKEN_CHUNK tokens' worth for an open_clip ViT (ViT-B/32:
    32 images, ViT-B/16: 8), all at once otherwise."""
    if family == "resnet":
        return _resnet_chunk(getattr(model, "visual", None))
    grid = getattr(getattr(model, "visual", None), "grid_size", None)
    if family == "vit" and grid is not None:
        return max(1, CPU_TOKEN_CHUNK // (int(grid[0]) * int(grid[1]) + 1))
    return None


def _resnet_chunk(visual) -> int:
    """CPU_CONV_CHUNK images, or fewer where a chunk's largest activation would pass
    CPU_CONV_CHUNK_BYTES. A ModifiedResNet's largest activations (stem output at size/2, layer1
    output at size/4 with 4x the channels) hold width x (size/2)² float32 values per image,
    width x size² bytes: 3.2 MB for RN50, 14 MB for RN50x16 (8 per chunk either way), 25.7 MB
    for RN50x64 at 448 px, which runs 5 per chunk (in chunks of 8 its activations took 0.7 GiB
    at peak, the largest single term of a nine-architecture extraction, BENCHMARKS.md). Fewer
    than ~8 images of 224 px worth per chunk is slower (RN50x16 in chunks of 2: 1.5-2x)."""
    stem = getattr(visual, "conv3", None)
    size = getattr(visual, "image_size", None)
    if not isinstance(stem, torch.nn.Conv2d) or size is None:
        return CPU_CONV_CHUNK
    size = size[0] if isinstance(size, (list, tuple)) else int(size)
    per_image = stem.out_channels * size * size  # bytes: (size / 2)² values x 4
    return max(1, min(CPU_CONV_CHUNK, CPU_CONV_CHUNK_BYTES // per_image))


def _random_model(spec: BackboneSpec):
    """A model with random weights from a config file, seeded by the config's content."""
    import open_clip

    text = Path(spec.location).read_text()
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise BackboneError(f"model config {spec.location!r} is not valid JSON ({exc})") from None
    model_cfg = raw.get("model_cfg", raw)
    preprocess_cfg = raw.get("preprocess_cfg", {})
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise BackboneError(
            f"{spec.location!r} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)"
        )
    digest = value_hash(model_cfg)
    name = f"clipfuse-random-{digest[:16]}"
    # open_clip registers configs from files only; it reads the file into memory at once, so a
    # private folder removed right after leaves nothing behind in the system temp dir.
    with tempfile.TemporaryDirectory(prefix="clipfuse-config-") as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(path)
    with torch.random.fork_rng():
        torch.manual_seed(int(digest[:8], 16))
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None, **_pp_kwargs(preprocess_cfg)
        )
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer, model_cfg, f"random:{digest}"


def _pp_kwargs(preprocess_cfg: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "mean": "image_mean",
        "std": "image_std",
        "interpolation": "image_interpolation",
        "resize_mode": "image_resize_mode",
    }
    return {keys[k]: v for k, v in preprocess_cfg.items() if k in keys}


def _create(spec: BackboneSpec):
    """(model, preprocess, tokenizer, model_cfg, weights_id) for any spec kind."""
    import open_clip
    from open_clip.factory import _find_checkpoint_in_dir, get_model_config

    if spec.kind == "random":
        file_sha256(spec.location)  # recorded: the config the weights are seeded from
        return _random_model(spec)
    if spec.kind.startswith("transformers-"):
        from clipfuse.backbones.hf_transformers import create_transformers

        return create_transformers(spec)
    if spec.kind in ("local-dir", "zoo"):
        directory = spec.location if spec.kind == "local-dir" else str(ZOO_DIR / spec.location)
        name = f"local-dir:{directory}"
        model_cfg = _folder_model_cfg(Path(directory, "open_clip_config.json"))
        file_sha256(Path(directory, "open_clip_config.json"))  # recorded: its preprocess_cfg
        # open_clip's own rule, so the hash recorded is of the weights it loads (a folder with no
        # file it accepts, e.g. only a .pt, would otherwise be loaded with random weights)
        weights = _find_checkpoint_in_dir(Path(directory))
        if weights is None:
            raise BackboneError(f"no weights file (*.safetensors, *.bin, *.pth) in {directory!r}")
        model, _, preprocess = open_clip.create_model_and_transforms(name)
        return model, preprocess, open_clip.get_tokenizer(name), model_cfg, file_sha256(weights)
    if spec.kind == "hf-hub":
        config_path, weights = resolve_hub_dir(spec.location)
        directory = str(Path(config_path).parent)
        name = f"local-dir:{directory}"
        model_cfg = _folder_model_cfg(Path(config_path))
        file_sha256(config_path)  # recorded: its preprocess_cfg
        model, _, preprocess = open_clip.create_model_and_transforms(name)
        return model, preprocess, open_clip.get_tokenizer(name), model_cfg, file_sha256(weights)
    # built-in architecture with a tag or a file
    if spec.arch not in open_clip.list_models():
        raise BackboneError(
            f"unknown open_clip architecture {spec.arch!r} (see `clipfuse backbones`)"
        )
    weights = (
        spec.location
        if spec.kind == "local-file"
        else resolve_tag_checkpoint(spec.arch, spec.location)
    )
    extra: dict[str, Any] = {}
    if spec.kind == "pretrained-tag":
        # Load the resolved local file, never the tag: open_clip would look the tag up on the hub
        # again. The tag's preprocessing and QuickGELU setting are applied as the tag path would.
        from open_clip.pretrained import get_pretrained_cfg

        tag_cfg = get_pretrained_cfg(spec.arch, spec.location) or {}
        extra = _pp_kwargs(
            {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        )
        extra["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
    else:
        warnings.warn(
            f"{spec.raw}: a bare weights file carries no preprocessing; using {spec.arch}'s default "
            "(recorded in the backbone fingerprint)",
            stacklevel=3,
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        spec.arch, pretrained=weights, **extra
    )
    return (
        model,
        preprocess,
        open_clip.get_tokenizer(spec.arch),
        get_model_config(spec.arch),
        file_sha256(weights),
    )


def _folder_model_cfg(config_path: Path) -> dict[str, Any]:
    """`model_cfg` of a folder's open_clip_config.json, or a one-line error saying what is wrong."""
    try:
        raw = json.loads(config_path.read_text())
    except ValueError as exc:
        raise BackboneError(f"{str(config_path)!r} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model_cfg"), dict):
        raise BackboneError(
            f'{str(config_path)!r} has no "model_cfg" (an open_clip_config.json holds model_cfg and preprocess_cfg)'
        )
    return raw["model_cfg"]


def load_backbone(
    spec: str | BackboneSpec,
    device: str = "cpu",
    precision: str = "fp32",
    with_gflops: bool = True,
    image_only: bool = False,
) -> Backbone:
    """Build a ready-to-use `Backbone` from any spec string (see `clipfuse.backbones.spec`).

    `image_only`: free the text tower at once (before the next backbone is built), for callers
    that only encode images (extraction); `encode_texts` then says so in one line."""
    parsed = parse_backbone_spec(spec) if isinstance(spec, str) else spec
    logging.disable(logging.WARNING)  # open_clip logs "randomly initialised" etc. at WARNING
    try:
        with recorded_hashes() as inputs:
            model, preprocess, tokenizer, model_cfg, weights_id = _create(parsed)
    except BackboneError:
        raise
    except (RuntimeError, FileNotFoundError, ValueError, KeyError, TypeError, OSError) as exc:
        # TypeError: a config value of the wrong type (e.g. "layers": "abc") inside open_clip
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BackboneError(f"could not load backbone {parsed.raw!r}: {first}") from None
    finally:
        logging.disable(logging.NOTSET)
    model.eval()
    pp_cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    pp_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp_cfg.items()}
    size = pp_cfg.get("size", model_cfg.get("vision_cfg", {}).get("image_size", 224))
    size = size[0] if isinstance(size, (list, tuple)) else int(size)
    scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    bias = getattr(model, "logit_bias", None)
    info = BackboneInfo(
        spec=parsed.canonical,
        name=parsed.name,
        family=model_family(model_cfg),
        embed_dim=int(model_cfg["embed_dim"]),
        image_size=int(size),
        preprocess=pp_cfg,
        weights_sha256=weights_id,
        logit_scale=scale,
        logit_bias=float(bias.item()) if bias is not None else None,
        params_m=sum(p.numel() for p in model.visual.parameters()) / 1e6,
        extra={"built_from": built_from(inputs)},
    )
    if image_only:
        from clipfuse.backbones.text_tower import drop_text_tower

        drop_text_tower(model)
        tokenizer = None  # open_clip's BPE tables: ~20 MB per backbone
        release_freed_memory()  # the text tower's heap pages, before the next model is built
    backbone = Backbone(parsed, model, preprocess, tokenizer, info).to(device, precision)
    backbone.image_only = image_only
    if with_gflops:
        from clipfuse.backbones.flops import image_gflops

        info.image_gflops = image_gflops(backbone)
    return backbone
