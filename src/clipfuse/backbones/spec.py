"""Backbone spec strings: one parser, so every command accepts the same forms.

Forms (see README):
  ARCH:PRETRAINED_TAG      open_clip built-in architecture with a named pretrained tag (RN50:openai)
  ARCH:/path/to/weights    open_clip built-in architecture with a local checkpoint file
  hf-hub:ORG/NAME          an open_clip model on the Hugging Face hub (config + weights)
  local-dir:/path/to/dir   a folder with open_clip_config.json and a weights file
  zoo:NAME                 a small backbone trained by this project (shipped in clipfuse/zoo/weights)
  PATH/config.json:random  an open_clip model config with random weights, seeded from the spec
  transformers:ORG/NAME    a Hugging Face transformers CLIPModel / SiglipModel (local cache first)
  transformers:/path/dir   a `save_pretrained` folder with model, image processor and tokenizer
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfuse.errors import BackboneError

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo" / "weights"


def model_family(model_cfg: dict[str, Any]) -> str:
    """The image tower's family from an open_clip model config: resnet, vit or timm:<model>."""
    vision = model_cfg.get("vision_cfg", {})
    if "timm_model_name" in vision:
        return f"timm:{vision['timm_model_name']}"
    return "resnet" if isinstance(vision.get("layers"), (list, tuple)) else "vit"


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed spec. `kind` says which loader applies; `raw` is what the user typed."""

    raw: str
    kind: str  # "pretrained-tag" | "local-file" | "hf-hub" | "local-dir" | "zoo" | "random"
    # | "transformers-hub" | "transformers-dir"
    arch: str | None = None  # built-in open_clip architecture (pretrained-tag, local-file)
    location: str | None = None  # tag, file path, hub id, or directory

    @property
    def name(self) -> str:
        """A short readable name for tables and file names."""
        if self.kind in ("pretrained-tag", "local-file"):
            tail = self.location if self.kind == "pretrained-tag" else Path(self.location).stem
            return f"{self.arch}:{tail}"
        if self.kind == "random":
            return f"{Path(self.location).stem}:random"
        if self.kind == "zoo":
            return f"zoo:{self.location}"
        if self.kind == "transformers-hub":
            return f"transformers:{self.location}"
        if self.kind == "transformers-dir":
            return f"transformers:{Path(self.location).resolve().name}"
        return f"{self.kind}:{self.location}"

    @property
    def canonical(self) -> str:
        """The spec with absolute paths: what a store records, so that the same model named from
        another working directory (or as ./x vs x) matches, and the store can reload it from anywhere."""
        if self.kind in ("pretrained-tag", "hf-hub", "zoo", "transformers-hub"):
            return self.raw
        if self.kind == "transformers-dir":
            return f"transformers:{Path(self.location).resolve()}"
        path = str(Path(self.location).resolve())
        if self.kind == "local-file":
            return f"{self.arch}:{path}"
        if self.kind == "random":
            return f"{path}:random"
        return f"local-dir:{path}"


def parse_backbone_spec(spec: str) -> BackboneSpec:
    """Parse a spec string; raise BackboneError with one line on anything malformed."""
    spec = spec.strip()
    if not spec:
        raise BackboneError("empty backbone spec")
    if spec.startswith("hf-hub:"):
        ident = spec[len("hf-hub:") :]
        if ident.count("/") != 1 or not all(ident.split("/")):
            raise BackboneError(f"malformed hub id in {spec!r}: expected hf-hub:ORG/NAME")
        return BackboneSpec(spec, "hf-hub", location=ident)
    if spec.startswith("transformers:"):
        return _transformers_spec(spec)
    if spec.startswith("local-dir:"):
        path = os.path.expanduser(spec[len("local-dir:") :])
        if not Path(path, "open_clip_config.json").is_file():
            raise BackboneError(f"no open_clip_config.json in {path!r} (spec {spec!r})")
        return BackboneSpec(spec, "local-dir", location=path)
    if spec.startswith("zoo:"):
        name = spec[len("zoo:") :]
        if not (ZOO_DIR / name / "open_clip_config.json").is_file():
            known = ", ".join(sorted(p.name for p in ZOO_DIR.glob("*") if p.is_dir())) or "none"
            raise BackboneError(f"unknown zoo backbone {name!r} (known: {known})")
        return BackboneSpec(spec, "zoo", location=name)
    if spec.endswith(":random"):
        path = os.path.expanduser(spec[: -len(":random")])
        if not Path(path).is_file():
            raise BackboneError(f"model config file not found: {path!r} (spec {spec!r})")
        return BackboneSpec(spec, "random", location=path)
    if ":" not in spec:
        raise BackboneError(
            f"malformed backbone spec {spec!r}: expected ARCH:PRETRAINED, ARCH:/path/to/weights, "
            "hf-hub:ORG/NAME, local-dir:DIR, zoo:NAME, CONFIG.json:random or transformers:ORG/NAME"
        )
    arch, location = spec.split(":", 1)
    arch = arch.replace("/", "-")
    if not arch or not location:
        raise BackboneError(f"malformed backbone spec {spec!r}: expected ARCH:PRETRAINED")
    looks_like_path = (
        os.sep in location
        or location.startswith(".")
        or Path(location).suffix
        in (
            ".pt",
            ".pth",
            ".bin",
            ".safetensors",
        )
    )
    if looks_like_path:
        path = os.path.expanduser(location)
        if not Path(path).is_file():
            raise BackboneError(f"weights file not found: {path!r} (spec {spec!r})")
        return BackboneSpec(spec, "local-file", arch=arch, location=path)
    return BackboneSpec(spec, "pretrained-tag", arch=arch, location=location)


def _transformers_spec(spec: str) -> BackboneSpec:
    """`transformers:ORG/NAME` (hub id) or `transformers:DIR` (absolute, ./relative, ~ or an
    existing folder): a folder is checked here, a hub id when it is resolved in the cache."""
    location = os.path.expanduser(spec[len("transformers:") :])
    is_path = location.startswith((os.sep, ".")) or Path(location).is_dir()
    if is_path:
        if not Path(location, "config.json").is_file():
            raise BackboneError(
                f"no config.json in {location!r} (spec {spec!r}): expected a folder written by "
                "model.save_pretrained(DIR) and processor.save_pretrained(DIR)"
            )
        return BackboneSpec(spec, "transformers-dir", location=location)
    if location.count("/") != 1 or not all(location.split("/")):
        raise BackboneError(
            f"malformed transformers spec {spec!r}: expected transformers:ORG/NAME or "
            "transformers:/path/to/dir"
        )
    return BackboneSpec(spec, "transformers-hub", location=location)
