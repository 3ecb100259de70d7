"""Faster float32 inference on a CPU, without changing the model: every `nn.Linear` and every
self-attention `nn.MultiheadAttention` computes its products with oneDNN's inner product.

Why: torch's float32 `F.linear` calls MKL's sgemm, which on AMD CPUs runs its AVX2 kernels
(about 210 GFLOP/s on this project's 2-core machines) while oneDNN uses AVX-512 there (about
460 GFLOP/s on the same shapes; BENCHMARKS.md). ViT towers are ~95 % linear layers, so their
encoders run 1.4-1.7x faster. Results differ from MKL's in float rounding only (relative
difference ~1e-6).

Nothing is copied or renamed: the weights stay the modules' own dense parameters (state_dict,
saving and training are unaffected). Each module gets an instance `forward` that falls back to
the class's own forward whenever the fast one does not apply: gradients needed, autocast on,
another dtype or device, attention arguments it does not handle, or under `torch.compile`. Set
`CLIPFUSE_CPU_KERNELS=default` to keep torch's own kernels (bit-parity with plain open_clip).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

ENV = "CLIPFUSE_CPU_KERNELS"


@functools.cache
def onednn_linear_available() -> bool:
    """oneDNN's linear op exists in this torch build and agrees with `F.linear` on a probe
    (the op is internal to torch, so a release that changes it must only cost speed)."""
    has_op = hasattr(torch.ops.mkldnn, "_linear_pointwise")
    if not (torch.backends.mkldnn.is_available() and has_op):
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=generator) for s in ((5, 7), (3, 7), (3,)))
        with torch.inference_mode():
            return bool(torch.allclose(_onednn_linear(x, w, b), F.linear(x, w, b), atol=1e-5))
    except Exception:  # noqa: BLE001 - any failure means "not usable", never an error
        return False


def enabled() -> bool:
    return os.environ.get(ENV, "onednn") != "default" and onednn_linear_available()


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, "none", [], "")
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()  # inductor lowers torch's ops itself
    )


def _linear_forward(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if _applies(x, module.weight):
        return _onednn_linear(x, module.weight, module.bias)
    return type(module).forward(module, x)


def _attention_forward(
    module: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
):
    """Batch-first self-attention without weights out: oneDNN projections around torch's
    scaled_dot_product_attention. Anything else goes to nn.MultiheadAttention itself."""
    simple = (
        query is key
        and key is value
        and query.dim() == 3
        and module.batch_first
        and module._qkv_same_embed_dim
        and module.bias_k is None
        and not module.add_zero_attn
        and not need_weights
        and key_padding_mask is None
        and not is_causal
        and (attn_mask is None or attn_mask.is_floating_point())
        and (not module.training or module.dropout == 0.0)
        and _applies(query, module.in_proj_weight)
    )
    if not simple:
        return type(module).forward(
            module, query, key, value, key_padding_mask, need_weights, attn_mask,
            average_attn_weights, is_causal,
        )  # fmt: skip
    batch, length, width = query.shape
    heads = module.num_heads
    qkv = _onednn_linear(query, module.in_proj_weight, module.in_proj_bias)
    q, k, v = qkv.reshape(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    if attn_mask is not None and attn_mask.dim() == 3:  # (batch * heads, L, S)
        attn_mask = attn_mask.reshape(batch, heads, *attn_mask.shape[1:])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    out = out.transpose(1, 2).reshape(batch, length, width)
    return _onednn_linear(out, module.out_proj.weight, module.out_proj.bias), None


def use_onednn_kernels(model: nn.Module) -> int:
    """Route `model`'s linear and self-attention modules through oneDNN on a CPU (see the module
    docstring); returns how many modules now do. A no-op where oneDNN's op is unavailable or
    `CLIPFUSE_CPU_KERNELS=default`."""
    if not enabled():
        return 0
    count = 0
    for module in model.modules():
        if "forward" in vars(module):  # already patched (or patched by someone else)
            continue
        if isinstance(module, nn.Linear):
            module.forward = functools.partial(_linear_forward, module)
        elif isinstance(module, nn.MultiheadAttention):
            module.forward = functools.partial(_attention_forward, module)
        else:
            continue
        count += 1
    return count


def restore_default_kernels(model: nn.Module) -> int:
    """Undo `use_onednn_kernels` (before moving the model to a GPU, for instance); returns how
    many modules were restored."""
    count = 0
    for module in model.modules():
        forward = vars(module).get("forward")
        if isinstance(forward, functools.partial) and forward.func in (
            _linear_forward,
            _attention_forward,
        ):
            del module.forward
            count += 1
    return count


@contextmanager
def reference_kernels(model: nn.Module) -> Iterator[None]:
    """Inside the block, torch's own kernels and no fused MHA fast path: every multiply-add
    goes through an op that torch's FLOP counter knows (it sees neither oneDNN's linear nor the
    fast path's fused projections, and would count a ViT several times too low)."""
    patched = restore_default_kernels(model)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        if patched:
            use_onednn_kernels(model)
