"""`transformers:` backbones (issue 15): a tiny random CLIPModel and SiglipModel saved with
`save_pretrained`, tokenizer built offline from open_clip's bundled BPE vocabulary. clipfuse's
per-sample zero-shot logits must equal transformers' own `logits_per_image` for the same prompts
(SigLIP: with its scale and bias), on non-square images of several sizes, and every command that
takes a backbone must work with them."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from clipfuse.cli import main  # noqa: E402
from clipfuse.data import open_dataset  # noqa: E402
from clipfuse.errors import BackboneError  # noqa: E402
from clipfuse.logits import load_bundle, resolve_view  # noqa: E402
from clipfuse.store import FeatureStore  # noqa: E402

CLASSES = ["cat", "dog", "truck"]
TEMPLATE = "a photo of a {c}."
SIZES = [(40, 57), (64, 31), (29, 45), (50, 50), (71, 38), (33, 60)]  # (width, height)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def bpe_tokenizer(directory: Path):
    """A CLIPTokenizer with OpenAI CLIP's vocabulary, from open_clip's bundled BPE file."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab = vocab + ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    lines = ["#version: 0.2", *(" ".join(m) for m in merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n")
    return transformers.CLIPTokenizer.from_pretrained(str(directory), model_max_length=77)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """save_pretrained folders of a tiny random CLIP and SigLIP (model + processor + tokenizer)."""
    root = tmp_path_factory.mktemp("hf")
    tokenizer = bpe_tokenizer(root / "bpe")
    ids = dict(vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = dict(TINY, image_size=32, patch_size=8)
    torch.manual_seed(0)
    clip = transformers.CLIPModel(
        transformers.CLIPConfig(
            text_config=dict(TINY, max_position_embeddings=77, **ids),
            vision_config=vision,
            projection_dim=16,
        )
    )
    siglip = transformers.SiglipModel(
        transformers.SiglipConfig(
            text_config=dict(TINY, max_position_embeddings=64, **ids), vision_config=vision
        )
    )
    with torch.no_grad():  # a trained SigLIP's scale and bias, not the zeros of a fresh init
        siglip.logit_scale.fill_(math.log(10.0))
        siglip.logit_bias.fill_(-3.0)
    processors = {
        "clip": transformers.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        "siglip": transformers.SiglipImageProcessor(size={"height": 32, "width": 32}),
    }
    combined = {  # what the model card says: processor = image processor + tokenizer
        "clip": transformers.CLIPProcessor(image_processor=processors["clip"], tokenizer=tokenizer),
        "siglip": transformers.SiglipProcessor(
            image_processor=processors["siglip"], tokenizer=tokenizer
        ),
    }
    dirs = {}
    for name, model in (("clip", clip), ("siglip", siglip)):
        # layout 1: image processor and tokenizer saved apart -> preprocessor_config.json
        dirs[name] = root / name
        model.save_pretrained(str(dirs[name]))
        tokenizer.save_pretrained(str(dirs[name]))
        processors[name].save_pretrained(str(dirs[name]))
        # layout 2: `processor.save_pretrained(DIR)`; transformers 5 writes processor_config.json
        dirs[f"{name}-processor"] = root / f"{name}-processor"
        model.save_pretrained(str(dirs[f"{name}-processor"]))
        combined[name].save_pretrained(str(dirs[f"{name}-processor"]))
    return dirs


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    """`split/class/image` PNGs of several non-square sizes, train and test."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i, (w, h) in enumerate(SIZES[:4] if split == "train" else SIZES):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[..., c] = 255 - c * 60  # a class colour, so the classes differ
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    (root / "templates.txt").write_text(TEMPLATE + "\n")
    return root


def _extract(spec: str, folder: Path, store: Path, split: str = "test") -> None:
    code = main(
        ["extract", "--backbone", spec, "--data", f"imagefolder:{folder}", "--split", split]
        + ["--templates", str(folder / "templates.txt"), "--store", str(store)]
        + ["--feature-dtype", "float32", "--quiet"]
    )
    assert code == 0


def _reference_logits(directory: Path, folder: Path, sample_ids: list[str], siglip: bool):
    """transformers alone: its processor, its tokenizer, the model's forward."""
    model_cls = transformers.SiglipModel if siglip else transformers.CLIPModel
    model = model_cls.from_pretrained(str(directory)).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(str(directory))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    prompts = [TEMPLATE.replace("{c}", c) for c in CLASSES]
    if siglip:  # SigLIP's protocol: lowercased prompts padded to the full 64 tokens
        text = tokenizer([p.lower() for p in prompts], padding="max_length", max_length=64)
    else:
        text = tokenizer(prompts, padding=True)
    text = {k: torch.tensor(v) for k, v in text.items()}
    images = [Image.open(folder / "test" / sid).convert("RGB") for sid in sample_ids]
    assert len({im.size for im in images}) == len(SIZES)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pixels, **text).logits_per_image


def _processor_reference(directory: Path, folder: Path, sample_ids: list[str], siglip: bool):
    """transformers alone, through the saved `AutoProcessor` (images and prompts in one call)."""
    model_cls = transformers.SiglipModel if siglip else transformers.CLIPModel
    model = model_cls.from_pretrained(str(directory)).eval()
    processor = transformers.AutoProcessor.from_pretrained(str(directory))
    prompts = [TEMPLATE.replace("{c}", c) for c in CLASSES]
    images = [Image.open(folder / "test" / sid).convert("RGB") for sid in sample_ids]
    if siglip:
        prompts = [p.lower() for p in prompts]
        padding: dict = dict(padding="max_length", max_length=64)
    else:
        padding = dict(padding=True)
    inputs = processor(text=prompts, images=images, return_tensors="pt", **padding)
    with torch.no_grad():
        return model(**inputs).logits_per_image


def test_both_layouts_are_what_transformers_writes(checkpoints):
    """The fixture writes what the installed transformers writes; transformers 5's processor
    writes processor_config.json (the layout issue 23 found refused)."""
    for kind in ("clip", "siglip"):
        assert (checkpoints[kind] / "preprocessor_config.json").is_file()
        saved = {p.name for p in checkpoints[f"{kind}-processor"].iterdir()}
        assert "processor_config.json" in saved or "preprocessor_config.json" in saved
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        assert not (checkpoints["clip-processor"] / "preprocessor_config.json").exists()


@pytest.mark.parametrize("kind", ["clip", "siglip", "clip-processor", "siglip-processor"])
def test_zeroshot_logits_equal_transformers(kind, checkpoints, shapes_folder, tmp_path):
    store = tmp_path / "store"
    _extract(f"transformers:{checkpoints[kind]}", shapes_folder, store)
    dataset = open_dataset(
        f"imagefolder:{shapes_folder}", "test", templates=str(shapes_folder / "templates.txt")
    )
    fs = FeatureStore(store)
    bundle = load_bundle(fs, resolve_view(fs, dataset), templates=[TEMPLATE])
    assert bundle.classnames == CLASSES
    sample_ids = [
        sid.split("/", 1)[1] if sid.startswith("test/") else sid for sid in bundle.sample_ids
    ]
    siglip = kind.startswith("siglip")
    reference_fn = _processor_reference if kind.endswith("-processor") else _reference_logits
    reference = reference_fn(checkpoints[kind], shapes_folder, sample_ids, siglip)
    assert bundle.logits.shape == (1, len(CLASSES) * len(SIZES), len(CLASSES))
    torch.testing.assert_close(bundle.logits[0], reference, atol=2e-4, rtol=1e-4)
    if siglip:
        assert bundle.logit_biases == [pytest.approx(-3.0)]
        assert bundle.logit_scales == [pytest.approx(10.0)]
    # the processor and tokenizer are in the store's provenance
    info = fs.get_array_set("backbone-info", bundle.fingerprints[0]).metadata
    processor = info["preprocess"]["image_processor"]
    assert processor["image_processor_type"].startswith("Siglip" if siglip else "CLIP")
    text = info["preprocess"]["text"]
    assert text["padding"] == ("max_length" if siglip else True)
    assert text["max_length"] == (64 if siglip else 77)


def test_siglip_needs_full_padding(checkpoints, shapes_folder):
    """The protocol matters: SigLIP's text embedding changes with shorter padding, so a test of
    padding="max_length" is a real test."""
    from clipfuse.backbones import load_backbone

    backbone = load_backbone(f"transformers:{checkpoints['siglip']}", with_gflops=False)
    full = backbone.encode_texts(["A photo of a Cat."])
    short_tokens = backbone.tokenizer.tokenizer(["a photo of a cat."], return_tensors="pt")
    with torch.inference_mode():
        short = backbone.model.encode_text(short_tokens, normalize=True)
    assert not torch.allclose(full, short, atol=1e-3)
    lower = backbone.encode_texts(["a photo of a cat."])
    torch.testing.assert_close(full, lower)
    assert backbone.info.family == "vit" and backbone.info.embed_dim == 32


def test_every_command_takes_transformers(checkpoints, shapes_folder, tmp_path, capsys):
    store = tmp_path / "store"
    specs = [f"transformers:{checkpoints['clip']}", f"transformers:{checkpoints['siglip']}"]
    data = ["--data", f"imagefolder:{shapes_folder}"]
    data += ["--templates", str(shapes_folder / "templates.txt")]
    for split in ("train", "test"):
        code = main(
            ["extract", "--backbone", specs[0], "--backbone", specs[1], *data, "--split", split]
            + ["--store", str(store), "--quiet"]
        )
        assert code == 0
    capsys.readouterr()
    assert main(["zeroshot", *data, "--split", "test", "--store", str(store), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["backbone"] for r in rows) == ["transformers:clip", "transformers:siglip"]
    assert all(0.0 <= r["top1"] <= 1.0 and r["n"] == len(CLASSES) * len(SIZES) for r in rows)
    out = tmp_path / "results"
    code = main(
        ["evaluate", *data, "--store", str(store), "--train-split", "train", "--test-split"]
        + ["test", "--methods", "mean_logits,nlc", "--shots", "1", "--seeds", "1"]
        + ["--out", str(out), "--param", "nlc.steps=20", "--quiet"]
    )
    assert code == 0 and (out / "evaluation.json").is_file()
    ensemble = tmp_path / "nlc.safetensors"
    code = main(
        ["fit", *data, "--store", str(store), "--train-split", "train", "--method", "nlc"]
        + ["--shots", "2", "--param", "nlc.steps=20", "--out", str(ensemble)]
    )
    assert code == 0
    capsys.readouterr()
    assert main(["predict", str(ensemble), str(shapes_folder / "test" / "dog"), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == len(SIZES)
    assert {p["label"] for p in predictions} <= set(CLASSES)


def _fake_hub_cache(root: Path, repo: str, source: Path) -> None:
    """The Hugging Face cache layout (refs/main -> snapshots/<commit>/files) for one repo."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0" * 40)
    for f in source.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())


def test_hub_id_from_cache_listing_and_offline(checkpoints, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    from clipfuse.backbones import load_backbone

    _fake_hub_cache(tmp_path, "tiny-org/tiny-clip", checkpoints["clip"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from_cache = load_backbone("transformers:tiny-org/tiny-clip", with_gflops=False)
    from_dir = load_backbone(f"transformers:{checkpoints['clip']}", with_gflops=False)
    assert from_cache.info.weights_sha256 == from_dir.info.weights_sha256
    assert from_cache.info.spec == "transformers:tiny-org/tiny-clip"
    assert main(["backbones", "transformers:*", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["spec"] for e in listed] == ["transformers:tiny-org/tiny-clip"]
    assert listed[0]["embed_dim"] == 16 and listed[0]["image_size"] == 32
    with pytest.raises(BackboneError, match="not cached locally and downloads are off"):
        load_backbone("transformers:tiny-org/absent", with_gflops=False)
    assert (
        main(
            ["extract", "--backbone", "transformers:tiny-org/absent", "--data"]
            + [f"imagefolder:{tmp_path}", "--split", "test", "--store", str(tmp_path / "s")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clipfuse: error:")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("transformers:not-a-hub-id", "malformed transformers spec"),
        ("transformers:./no/such/dir", "no config.json"),
    ],
)
def test_bad_transformers_specs(spec, message):
    from clipfuse.backbones import parse_backbone_spec

    with pytest.raises(BackboneError, match=message):
        parse_backbone_spec(spec)


def test_unsupported_model_type_and_missing_processor(checkpoints, tmp_path):
    from clipfuse.backbones import load_backbone

    folder = tmp_path / "other"
    folder.mkdir()
    for f in checkpoints["clip"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(BackboneError, match="no image processor in .*processor_config.json"):
        load_backbone(f"transformers:{folder}", with_gflops=False)
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "CLIPProcessor"}))
    with pytest.raises(BackboneError, match="has no image_processor entry"):
        load_backbone(f"transformers:{folder}", with_gflops=False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(BackboneError, match="'bert' is not supported"):
        load_backbone(f"transformers:{folder}", with_gflops=False)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_image_only_frees_the_transformers_text_tower(kind, checkpoints):
    from clipfuse.backbones import load_backbone

    spec = f"transformers:{checkpoints[kind]}"
    full = load_backbone(spec, with_gflops=False)
    lean = load_backbone(spec, with_gflops=False, image_only=True)
    n_visual = sum(p.numel() for p in full.model.visual.parameters())
    scalars = 2 if kind == "siglip" else 1  # logit scale (+ SigLIP's bias)
    assert sum(p.numel() for p in lean.model.parameters()) == n_visual + scalars
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lean.encode_images(pixels), full.encode_images(pixels))
    with pytest.raises(BackboneError, match="image-only"):
        lean.encode_texts(["a dog"])
