"""Issue 23: an uncached hub model fails fast and says why in full. Offline (CLIPFUSE_OFFLINE /
HF_HUB_OFFLINE) it fails at once; online but with the hub unreachable it fails within seconds
(not after a minute of retries), and a download error's whole message is kept on one line."""

from __future__ import annotations

import time

import pytest

from clipfuse.backbones import load_backbone
from clipfuse.backbones import weights as weights_module
from clipfuse.errors import BackboneError


@pytest.fixture
def online_empty_caches(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("CLIPFUSE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    # a hub endpoint on this machine with nothing listening: refused at once, never the network
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1")


@pytest.mark.parametrize("spec", ["RN50:openai", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"])
def test_unreachable_hub_fails_within_seconds(online_empty_caches, spec):
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        load_backbone(spec, with_gflops=False)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 8.0, f"took {elapsed:.1f}s"
    assert "\n" not in message
    assert spec in message and "cannot reach 127.0.0.1:443" in message
    assert "ConnectionRefusedError" in message


def test_download_error_message_is_whole(online_empty_caches, monkeypatch):
    monkeypatch.setattr(weights_module, "_unreachable", lambda host: None)
    cause = "first line\n" + "x" * 300 + " and the real cause at the very end"

    def fetch():
        raise RuntimeError(cause)

    with pytest.raises(BackboneError) as info:
        weights_module._download_or_fail("RN50:openai", "somewhere", fetch, "RN50:/path")
    message = str(info.value)
    assert "\n" not in message and "the real cause at the very end" in message
    assert message.count("x" * 300) == 1
