"""Backbone specs: every form parses or fails in one line; saved weights reload exactly; offline
fails at once instead of hanging or falling back to random weights."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import open_clip
import pytest
import torch
from conftest import CONFIGS, RN_TINY, VIT_TINY, save_local_dir
from safetensors.torch import save_file

from clipfuse.backbones import list_backbones, load_backbone, parse_backbone_spec
from clipfuse.backbones.spec import ZOO_DIR
from clipfuse.errors import BackboneError


def probe_pixels(backbone, n: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    size = backbone.info.image_size
    return torch.randn(n, 3, size, size, generator=gen)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_spec_forms_parse(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    local = tmp_path / "model"
    local.mkdir()
    (local / "open_clip_config.json").write_text("{}")
    cases = {
        "RN50:openai": ("pretrained-tag", "RN50", "openai"),
        "ViT-B/32:laion2b_s34b_b79k": ("pretrained-tag", "ViT-B-32", "laion2b_s34b_b79k"),
        f"RN50:{weights}": ("local-file", "RN50", str(weights)),
        "hf-hub:timm/some-model": ("hf-hub", None, "timm/some-model"),
        f"local-dir:{local}": ("local-dir", None, str(local)),
        RN_TINY: ("random", None, str(CONFIGS["rn"])),
    }
    for spec, (kind, arch, location) in cases.items():
        parsed = parse_backbone_spec(spec)
        assert (parsed.kind, parsed.arch, parsed.location) == (kind, arch, location), spec
        assert parsed.raw == spec
    assert parse_backbone_spec(RN_TINY).name == "rn-tiny:random"


def test_spec_canonical_form_is_absolute(tmp_path, monkeypatch):
    """The same file named relative to another directory has one canonical spec (stores record it)."""
    monkeypatch.chdir(CONFIGS["rn"].parent)
    relative = parse_backbone_spec("rn-tiny.json:random")
    dotted = parse_backbone_spec("./rn-tiny.json:random")
    assert relative.canonical == dotted.canonical == RN_TINY
    assert parse_backbone_spec("RN50:openai").canonical == "RN50:openai"


@pytest.mark.parametrize(
    "spec",
    ["", "   ", "RN50", "hf-hub:org", "hf-hub:a/b/c", "hf-hub:/name", "local-dir:/no/such/dir", "zoo:no-such-model",
     "/no/such/config.json:random", "RN50:/no/such/weights.safetensors", ":openai", "RN50:"],
)  # fmt: skip
def test_malformed_specs_fail_in_one_line(spec):
    with pytest.raises(BackboneError) as info:
        parse_backbone_spec(spec)
    assert str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("NotAnArch:openai", "unknown open_clip architecture 'NotAnArch'"),
     ("RN50:not_a_tag", "unknown pretrained tag 'not_a_tag' for RN50"),
     ("RN50:/no/such/file.pt", "weights file not found")],
)  # fmt: skip
def test_unknown_arch_tag_or_file_is_a_clear_error(spec, needle):
    start = time.perf_counter()
    with pytest.raises(BackboneError, match=needle) as info:
        load_backbone(spec)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - start < 2.0
    if "tag" in needle:
        assert "openai" in str(info.value)  # the known tags are listed


def test_random_weights_are_reproducible_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a = load_backbone(RN_TINY, with_gflops=False)
    assert torch.equal(torch.rand(3), expected_draw)
    b = load_backbone(RN_TINY, with_gflops=False)
    assert a.info.fingerprint == b.info.fingerprint
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.info.fingerprint != load_backbone(VIT_TINY, with_gflops=False).info.fingerprint


@pytest.mark.parametrize("which", ["rn", "vit"])
def test_local_dir_reloads_the_saved_model_exactly(tmp_path, tiny_backbones, which):
    source = tiny_backbones[which]
    directory = save_local_dir(source, CONFIGS[which], tmp_path / which)
    loaded = load_backbone(f"local-dir:{directory}", with_gflops=False)
    pixels = probe_pixels(source)
    assert torch.equal(loaded.encode_images(pixels), source.encode_images(pixels))
    texts = ["a photo of a cat.", "a photo of a dog."]
    assert torch.equal(loaded.encode_texts(texts), source.encode_texts(texts))
    assert loaded.info.weights_sha256 == sha256(directory / "open_clip_model.safetensors")
    assert loaded.info.preprocess == source.info.preprocess
    assert loaded.info.embed_dim == source.info.embed_dim
    assert loaded.info.logit_scale == pytest.approx(source.info.logit_scale)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("not json", "not valid JSON"),
        ('{"x": 1}', 'no "model_cfg"'),
        ('{"model_cfg": 3}', 'no "model_cfg"'),
    ],
)
def test_local_dir_with_a_bad_config_is_a_clear_error(tmp_path, config, needle):
    (tmp_path / "open_clip_config.json").write_text(config)
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"")
    with pytest.raises(BackboneError, match=needle) as info:
        load_backbone(f"local-dir:{tmp_path}")
    assert "\n" not in str(info.value)


def test_random_config_with_wrong_types_is_a_clear_error(tmp_path):
    config = json.loads(CONFIGS["rn"].read_text())
    config["vision_cfg"]["layers"] = "four"
    (tmp_path / "bad.json").write_text(json.dumps(config))
    with pytest.raises(BackboneError, match="could not load backbone") as info:
        load_backbone(f"{tmp_path / 'bad.json'}:random")
    assert "\n" not in str(info.value)
    (tmp_path / "plain.json").write_text('{"embed_dim": 8}')
    with pytest.raises(BackboneError, match="not an open_clip model config"):
        load_backbone(f"{tmp_path / 'plain.json'}:random")


def test_local_dir_hashes_the_file_open_clip_loads(tmp_path, tiny_backbones):
    """With several weight files, the recorded hash is that of the file open_clip actually loads."""
    directory = save_local_dir(tiny_backbones["rn"], CONFIGS["rn"], tmp_path / "m")
    decoy = {k: torch.zeros_like(v) for k, v in tiny_backbones["rn"].model.state_dict().items()}
    save_file(decoy, str(directory / "a-decoy.safetensors"))  # sorts first
    loaded = load_backbone(f"local-dir:{directory}", with_gflops=False)
    assert loaded.info.weights_sha256 == sha256(directory / "open_clip_model.safetensors")
    pixels = probe_pixels(loaded)
    assert torch.equal(loaded.encode_images(pixels), tiny_backbones["rn"].encode_images(pixels))


def test_local_dir_without_loadable_weights_is_an_error_not_random_weights(
    tmp_path, tiny_backbones
):
    directory = save_local_dir(tiny_backbones["rn"], CONFIGS["rn"], tmp_path / "m")
    (directory / "open_clip_model.safetensors").rename(
        directory / "weights.pt"
    )  # open_clip ignores .pt
    with pytest.raises(BackboneError, match="no weights file"):
        load_backbone(f"local-dir:{directory}")


def test_arch_with_weights_file(tmp_path, tiny_backbones):
    """`ARCH:/path/file.safetensors` for a registered open_clip architecture (a tiny one, registered
    here the way open_clip registers its built-in configs) gives the saved model's embeddings."""
    source = tiny_backbones["vit"]
    arch = "clipfuse-test-vit-tiny"
    config = tmp_path / f"{arch}.json"
    config.write_text(CONFIGS["vit"].read_text())
    open_clip.add_model_config(config)
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(weights))
    with pytest.warns(UserWarning, match="carries no preprocessing"):
        loaded = load_backbone(f"{arch}:{weights}", with_gflops=False)
    pixels = probe_pixels(source)
    assert torch.equal(loaded.encode_images(pixels), source.encode_images(pixels))
    assert loaded.info.weights_sha256 == sha256(weights)

    wrong = tmp_path / "rn.safetensors"  # another architecture's weights: a clear error
    save_file(
        {k: v.contiguous() for k, v in tiny_backbones["rn"].model.state_dict().items()}, str(wrong)
    )
    with (
        pytest.raises(BackboneError, match="could not load backbone") as info,
        pytest.warns(UserWarning),
    ):
        load_backbone(f"{arch}:{wrong}", with_gflops=False)
    assert "\n" not in str(info.value)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No Hugging Face or OpenAI weights cached on this 'machine', downloads off."""
    import huggingface_hub.constants

    monkeypatch.setenv("CLIPFUSE_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.cache/clip
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("RN50:openai", "RN50:/path/to/weights"),
        ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "local-dir:DIR"),
    ],
)
def test_offline_missing_weights_fail_at_once(empty_caches, spec, hint):
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        load_backbone(spec)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 2.0, f"took {elapsed:.1f}s"
    assert "\n" not in message
    assert spec in message and "not cached" in message and "offline" in message and hint in message


@pytest.mark.parametrize("which", ["rn", "vit"])
def test_encoders_are_l2_normalised_and_gflops_positive(tiny_backbones, which):
    backbone = tiny_backbones[which]
    images = backbone.encode_images(probe_pixels(backbone, 3))
    texts = backbone.encode_texts(["a photo of a cat.", "a dog", ""])
    for emb in (images, texts):
        assert emb.dtype == torch.float32 and emb.shape[1] == backbone.info.embed_dim
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(len(emb)))
    assert backbone.info.image_gflops is not None and backbone.info.image_gflops > 0
    assert backbone.info.params_m > 0


def test_list_backbones_patterns():
    rn50 = list_backbones("RN50*")
    specs = [e.spec for e in rn50]
    assert "RN50:openai" in specs
    assert all(s.lower().startswith("rn50") for s in specs)
    assert specs == [e.spec for e in list_backbones("rn50*")]  # case-insensitive
    assert len(specs) == len(
        [1 for arch, _ in open_clip.list_pretrained() if arch.lower().startswith("rn50")]
    )
    entry = next(e for e in rn50 if e.spec == "RN50:openai")
    assert (entry.family, entry.embed_dim, entry.image_size) == ("resnet", 1024, 224)

    zoo = list_backbones("zoo:*")
    assert all(e.spec.startswith("zoo:") for e in zoo)
    assert len(zoo) == len(list(ZOO_DIR.glob("*/open_clip_config.json")))
    assert list_backbones("no-such-backbone*") == []
