"""`load_backbone(image_only=True)` (issue 15, memory): the text tower is freed, image features
are unchanged, and asking for text afterwards is one clear error. `extract` loads this way."""

from __future__ import annotations

import pytest
import torch
from conftest import RN_TINY, VIT_TINY

from clipfuse.backbones import load_backbone
from clipfuse.errors import BackboneError


@pytest.mark.parametrize("spec", [RN_TINY, VIT_TINY, "zoo:timm-convnext_atto", "zoo:vit-p4"])
def test_image_only_frees_text_and_keeps_image_features(spec):
    full = load_backbone(spec, with_gflops=False)
    lean = load_backbone(spec, with_gflops=False, image_only=True)
    n_full = sum(p.numel() for p in full.model.parameters())
    n_lean = sum(p.numel() for p in lean.model.parameters())
    n_visual = sum(p.numel() for p in full.model.visual.parameters())
    assert n_lean == n_visual + 1  # the image tower and the logit scale, nothing else
    assert n_lean < n_full
    size = full.info.image_size
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lean.encode_images(pixels), full.encode_images(pixels))
    assert lean.info.fingerprint == full.info.fingerprint
    assert lean.info.logit_scale == full.info.logit_scale
    with pytest.raises(BackboneError, match="image-only"):
        lean.encode_texts(["a photo of a cat"])


def test_extract_cli_uses_image_only(monkeypatch, tmp_path, image_folder):
    from clipfuse.backbones import backbone as backbone_module
    from clipfuse.cli import main

    seen = []
    original = backbone_module.load_backbone

    def spy(*args, **kwargs):
        seen.append(kwargs.get("image_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr("clipfuse.backbones.load_backbone", spy)
    args = ["extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, "--data"]
    args += [f"imagefolder:{image_folder}", "--split", "all", "--store", str(tmp_path / "s")]
    assert main([*args, "--quiet"]) == 0
    assert seen == [True, True]
    assert main(["zeroshot", *args[5:-2], "--store", str(tmp_path / "s")]) == 0  # text later
