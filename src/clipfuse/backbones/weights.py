"""Where a spec's weights live, whether they are on this machine, and their content hash.

Offline is the normal case on many research machines, so a named tag whose file is not cached
fails at once with a line that says what is missing and how to supply it, unless downloads are
allowed (they are, unless CLIPFUSE_OFFLINE=1 or HF_HUB_OFFLINE=1) and actually succeed.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from clipfuse.errors import BackboneError

# what open_clip loads from a hub repository, in its order of preference
HUB_WEIGHTS = [
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
]


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
        cached = _cached_hub_file(repo_id, [filename] if filename else HUB_WEIGHTS)
    if cached is None and url:
        candidate = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        cached = str(candidate) if candidate.is_file() else None
    if cached:
        return cached
    return _download_or_fail(
        f"{arch}:{tag}",
        where,
        lambda: download_pretrained(cfg),
        f"{arch}:/path/to/weights",
        host=_hub_host() if hub else urlparse(url).hostname,
    )


def resolve_hub_dir(repo_id: str) -> tuple[str, str]:
    """(config path, weights path) of an hf-hub model, from the local cache or a download."""
    from open_clip.pretrained import download_pretrained_from_hf

    config = _cached_hub_file(repo_id, ["open_clip_config.json"])
    weights = _cached_hub_file(repo_id, HUB_WEIGHTS)
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


CONNECT_TIMEOUT_S = float(os.environ.get("CLIPFUSE_CONNECT_TIMEOUT", "3"))


def _hub_host() -> str:
    """The Hugging Face endpoint's host (HF_ENDPOINT for mirrors)."""
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or ""


def _unreachable(host: str | None) -> str | None:
    """Why `host` (or the HTTPS proxy, when one is set) cannot be reached within
    CONNECT_TIMEOUT_S, or None. One look before downloading: unreachable, the hub client would
    retry for about a minute before failing (issue 23: 55 s for an uncached RN50:openai)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else None
    name, port = (target.hostname, target.port or 80) if target else (host, 443)
    if not name:
        return None
    try:
        socket.create_connection((name, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"cannot reach {name}:{port}: {_one_line(exc)}"
    return None


def _one_line(exc: BaseException) -> str:
    """The whole message of an exception on one line (never cut: the cause is at the end)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _download_or_fail(what: str, where: str, fetch, alternative: str, host: str | None = None):
    hint = (
        f"put the files in the Hugging Face / open_clip cache on this machine, or pass {alternative} "
        "pointing at a local copy"
    )
    if offline():
        raise BackboneError(
            f"weights for {what} are not cached locally and downloads are off (offline); {hint}"
        )
    reason = _unreachable(host or _hub_host())
    if reason is None:
        print(f"clipfuse: downloading weights for {what} from {where} ...", file=sys.stderr)
        try:
            return fetch()
        except Exception as exc:  # network libraries raise many types; all mean the same here
            reason = _one_line(exc)
    raise BackboneError(
        f"weights for {what} are not cached and could not be downloaded ({reason}); {hint}"
    ) from None
