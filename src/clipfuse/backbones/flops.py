"""Image-tower GFLOPs, counted once with PyTorch's own FLOP counter and memoised: the one FLOP
counter of clipfuse. Every GFLOPs figure (extraction's store metadata, cascade costs, reports,
`clipfuse backbones`, the zoo cards) is this count; a zoo card records ``COUNTER`` beside its
figure, and a figure from another counter version is not shown (tests/test_zoo.py checks the
shipped cards against a live count).

Convention: 2 FLOPs per multiply-add (the convention of a matmul benchmark's 2·M·N·K), so
`gflops × images/s` compares directly with a measured matrix-multiply rate. fvcore-based tables
such as open_clip's model profile count one per multiply-add: divide ours by 2 to compare.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from clipfuse.backbones.cpu_kernels import reference_kernels
from clipfuse.hashing import CACHE_ROOT, read_memo, write_memo

_CACHE = CACHE_ROOT / "gflops.json"


COUNTER = "v2"  # v1 missed the MHA fast path's projections (ViTs were a third too cheap)


def image_gflops(backbone) -> float:
    """GFLOPs of one image through the image tower at the backbone's input size."""
    key = f"{backbone.info.fingerprint}:{COUNTER}"
    cache: dict[str, float] = read_memo(_CACHE) or {}
    if key in cache:
        return cache[key]
    size = backbone.info.image_size
    pixels = torch.zeros(1, 3, size, size, device=backbone.device)
    counter = FlopCounterMode(display=False)
    with reference_kernels(backbone.model), counter, torch.inference_mode():
        backbone.model.encode_image(pixels)
    gflops = counter.get_total_flops() / 1e9
    cache[key] = gflops
    write_memo(_CACHE, cache)
    return gflops
