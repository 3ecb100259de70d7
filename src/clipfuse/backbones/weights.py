"""Where a spec's weights live, whether they are on this machine, and their content hash.

Offline is the normal case on many research machines, so a named tag whose file is not cached
fails at once with a line that says what is missing and how to supply it, unless downloads are
allowed (they are, unless CLIPFUSE_OFFLINE=1 or HF_HUB_OFFLINE=1) and actually succeed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from clipfuse.errors import BackboneError
from clipfuse.hashing import file_sha256  # noqa: F401  (re-exported for loaders)


def offline() -> bool:
    """Downloads are refused when either clipfuse's or Hugging Face's offline switch is set."""
    return any(
        os.environ.get(v, "") not in ("", "0") for v in ("CLIPFUSE_OFFLINE", "HF_HUB_OFFLINE")
    )


def _cached_hub_file(repo_id: str, filenames: list[str]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


def resolve_tag_checkpoint(arch: str, tag: str) -> str:
    """Local path of the weights for an open_clip (arch, tag); download only when allowed."""
    import open_clip
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    if arch not in open_clip.list_models():
        raise BackboneError(
            f"unknown open_clip architecture {arch!r} (try `clipfuse backbones '{arch[:3]}*'`)"
        )
    cfg = get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise BackboneError(f"unknown pretrained tag {tag!r} for {arch} (known: {tags})")
    hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    where = hub or url
    cached = None
    if hub:
        repo_id, filename = (
            os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        )
        names = (
            [filename]
            if filename
            else [
                "open_clip_model.safetensors",
                "open_clip_pytorch_model.safetensors",
                "open_clip_pytorch_model.bin",
            ]
        )
        cached = _cached_hub_file(repo_id, names)
    if cached is None and url:
        candidate = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        cached = str(candidate) if candidate.is_file() else None
    if cached:
        return cached
    return _download_or_fail(
        f"{arch}:{tag}", where, lambda: download_pretrained(cfg), f"{arch}:/path/to/weights"
    )


def resolve_hub_dir(repo_id: str) -> tuple[str, str]:
    """(config path, weights path) of an hf-hub model, from the local cache or a download."""
    from open_clip.pretrained import download_pretrained_from_hf

    config = _cached_hub_file(repo_id, ["open_clip_config.json"])
    weights = _cached_hub_file(
        repo_id,
        [
            "open_clip_model.safetensors",
            "open_clip_pytorch_model.safetensors",
            "open_clip_pytorch_model.bin",
        ],
    )
    if config and weights:
        return config, weights

    def fetch() -> tuple[str, str]:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, "open_clip_config.json"), download_pretrained_from_hf(
            repo_id
        )

    return _download_or_fail(
        f"hf-hub:{repo_id}", f"huggingface.co/{repo_id}", fetch, "local-dir:DIR"
    )


def _download_or_fail(what: str, where: str, fetch, alternative: str):
    hint = (
        f"put the files in the Hugging Face / open_clip cache on this machine, or pass {alternative} "
        "pointing at a local copy"
    )
    if offline():
        raise BackboneError(
            f"weights for {what} are not cached locally and downloads are off (offline); {hint}"
        )
    print(f"clipfuse: downloading weights for {what} from {where} ...", file=sys.stderr)
    try:
        return fetch()
    except Exception as exc:  # network libraries raise many types; all mean the same here
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise BackboneError(
            f"weights for {what} are not cached and could not be downloaded ({reason}); {hint}"
        ) from None
