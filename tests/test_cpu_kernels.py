"""CPU inference settings: oneDNN linear/attention kernels, chunked forwards, malloc tuning.

They may change float rounding only: every test compares against torch's own kernels on the
same model, and checks that what must not change (parameters, training, other dtypes) does not.
"""

from __future__ import annotations

import pytest
import torch
from conftest import RN_TINY, VIT_TINY
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clipfuse.backbones import cpu_kernels, load_backbone
from clipfuse.backbones.allocator import keep_freed_memory
from clipfuse.backbones.backbone import CPU_CONV_CHUNK, CPU_TOKEN_CHUNK
from clipfuse.backbones.cpu_kernels import (
    reference_kernels,
    restore_default_kernels,
    use_onednn_kernels,
)
from clipfuse.extraction.engine import preprocess_key

needs_onednn = pytest.mark.skipif(
    not cpu_kernels.onednn_linear_available(),
    reason="this torch build has no usable oneDNN linear op (torch.ops.mkldnn._linear_pointwise)",
)


def pixels(backbone, n: int = 5) -> torch.Tensor:
    size = backbone.info.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@needs_onednn
@pytest.mark.parametrize("spec", [RN_TINY, VIT_TINY])
def test_onednn_kernels_match_torch_kernels_on_both_towers(spec):
    backbone = load_backbone(spec)
    x = pixels(backbone)
    texts = ["a photo of a cat.", "a dog", ""]  # the text tower's attention has a causal mask
    fast_images, fast_texts = backbone.encode_images(x), backbone.encode_texts(texts)
    restored = restore_default_kernels(backbone.model)
    assert restored > 0  # every backbone has linear layers (the ViT also attention)
    ref_images, ref_texts = backbone.encode_images(x), backbone.encode_texts(texts)
    torch.testing.assert_close(fast_images, ref_images, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast_texts, ref_texts, atol=1e-5, rtol=1e-4)
    assert use_onednn_kernels(backbone.model) == restored


@needs_onednn
def test_patching_keeps_parameters_and_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_onednn_kernels(model) == 2
    assert use_onednn_kernels(model) == 0  # idempotent
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    model(torch.randn(4, 6)).sum().backward()  # gradients needed: torch's own forward runs
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@needs_onednn
def test_other_dtypes_and_autocast_fall_back_to_torch():
    layer = nn.Linear(6, 4)
    use_onednn_kernels(layer)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 6)).dtype == torch.bfloat16
    layer64 = nn.Linear(6, 4).double()
    use_onednn_kernels(layer64)
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    with torch.inference_mode():
        torch.testing.assert_close(
            layer64(x), nn.functional.linear(x, layer64.weight, layer64.bias)
        )


@needs_onednn
def test_attention_with_weights_or_padding_mask_uses_torch():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 16)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[:, -1] = True
    with torch.inference_mode():
        ref = [attn(x, x, x, need_weights=True), attn(x, x, x, key_padding_mask=pad)]
        use_onednn_kernels(attn)
        fast = [attn(x, x, x, need_weights=True), attn(x, x, x, key_padding_mask=pad)]
        plain = attn(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(fast[0][1], ref[0][1])  # weights returned: torch's path ran
    torch.testing.assert_close(fast[1][0], ref[1][0])
    torch.testing.assert_close(plain, ref[0][0], atol=1e-5, rtol=1e-4)


def test_switch_keeps_torch_kernels(monkeypatch):
    monkeypatch.setenv(cpu_kernels.ENV, "default")
    assert use_onednn_kernels(nn.Linear(3, 3)) == 0


def test_flops_are_counted_with_torch_kernels():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    patched = use_onednn_kernels(model)
    counter = FlopCounterMode(display=False)
    with reference_kernels(model), counter, torch.inference_mode():
        model(torch.randn(10, 8))
    assert counter.get_total_flops() == 2 * 10 * (8 * 16 + 16 * 4)
    assert sum("forward" in vars(m) for m in model.modules()) == patched  # re-installed


def test_backbone_gflops_count_attention_projections():
    """A ViT's attention projections are counted (the MHA fast path and oneDNN hide them from
    torch's counter): the tiny ViT's GFLOPs equal a count made with both switched off."""
    backbone = load_backbone(VIT_TINY)
    restore_default_kernels(backbone.model)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            backbone.model.encode_image(pixels(backbone, 1))
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert backbone.info.image_gflops == pytest.approx(counter.get_total_flops() / 1e9)


def test_chunked_forward_gives_the_same_features():
    for spec, expected in ((RN_TINY, CPU_CONV_CHUNK), (VIT_TINY, CPU_TOKEN_CHUNK // (4 * 4 + 1))):
        backbone = load_backbone(spec)
        assert backbone.chunk_images == expected  # vit-tiny: 32 px / patch 8 -> 16 tokens + 1
        x = pixels(backbone, 2 * expected + 3)  # two whole chunks and a remainder
        chunked = backbone.encode_images(x)
        backbone.chunk_images = None
        torch.testing.assert_close(chunked, backbone.encode_images(x), atol=1e-5, rtol=1e-4)


def test_allocator_setting_is_applied_once_or_skipped_on_request(monkeypatch):
    keep_freed_memory.cache_clear()
    monkeypatch.setenv(cpu_kernels.ENV, "default")
    assert keep_freed_memory() is False
    keep_freed_memory.cache_clear()
    monkeypatch.delenv(cpu_kernels.ENV)
    assert isinstance(keep_freed_memory(), bool)  # False only off glibc


def test_square_sizes_written_two_ways_share_preprocessing(tiny_backbones):
    class Same:  # a backbone whose config spells the size as a pair
        def __init__(self, backbone, size):
            self.preprocess = backbone.preprocess
            self.info = type("Info", (), {"preprocess": {**backbone.info.preprocess, "size": size}})

    vit = tiny_backbones["vit"]
    size = vit.info.image_size
    assert preprocess_key(Same(vit, [size, size])) == preprocess_key(Same(vit, size))
    assert preprocess_key(Same(vit, [size, size + 1])) != preprocess_key(Same(vit, size))
