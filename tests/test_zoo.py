"""The zoo: committed models load and classify real images; the recipe is deterministic and resumable.

The accuracy check derives its margin from each model's own card: on n shipped demo images the
observed top-1 must stay within 4 binomial standard deviations of the card's full-test accuracy,
and that bound itself must be above chance.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clipfuse.backbones import load_backbone
from clipfuse.data import open_dataset
from clipfuse.data.catalog import known_classnames
from clipfuse.errors import ClipfuseError
from clipfuse.hashing import file_sha256
from clipfuse.zoo.captions import CaptionBank
from clipfuse.zoo.configs import EMBED_DIM, ZOO_NAMES, model_config
from clipfuse.zoo.demo_data import DEMO_DIR, build_fashion, demo_positions
from clipfuse.zoo.evaluate import zero_shot_accuracy
from clipfuse.zoo.export import export_model
from clipfuse.zoo.recipe import Recipe
from clipfuse.zoo.train import DEFAULT_OUT, _tokenizer, train_model
from clipfuse.zoo.trainset import TrainSet, decode_split, holdout_positions

CIFAR_DEMO = f"imagefolder:{DEMO_DIR / 'cifar10-demo'}"
FASHION_DEMO = f"idx:{DEMO_DIR / 'fashion-mnist-demo'}"
TINY_VISION = {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32}
N_ACC = 200


def card(name: str) -> dict:
    return json.loads((DEFAULT_OUT / name / "card.json").read_text())


@pytest.fixture(scope="module")
def cifar_demo_test():
    return open_dataset(CIFAR_DEMO, "test", limit=N_ACC)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_model_loads_embeds_and_beats_chance(name, cifar_demo_test):
    info = card(name)
    weights = DEFAULT_OUT / name / "open_clip_model.safetensors"
    assert file_sha256(weights) == info["weights_sha256"]  # committed weights are the carded ones
    backbone = load_backbone(f"zoo:{name}", with_gflops=False)
    assert backbone.info.fingerprint == info["fingerprint"]
    assert backbone.info.image_size == 32 and backbone.info.embed_dim == EMBED_DIM

    pixels = torch.stack([backbone.preprocess(cifar_demo_test.load_image(i)) for i in range(8)])
    images = backbone.encode_images(pixels)
    texts = backbone.encode_texts(["a photo of a cat.", "a photo of a dog."])
    assert images.shape == (8, EMBED_DIM) and texts.shape == (2, EMBED_DIM)
    assert torch.allclose(images.norm(dim=1), torch.ones(8), atol=1e-5)
    assert torch.allclose(texts.norm(dim=1), torch.ones(2), atol=1e-5)

    expected = info["zero_shot_top1"]["cifar10"]
    lower = expected - 4 * math.sqrt(expected * (1 - expected) / N_ACC)
    assert lower > 1 / len(cifar_demo_test.classnames), (
        f"card accuracy {expected} is too close to chance"
    )
    assert zero_shot_accuracy(backbone, cifar_demo_test) >= lower


def test_zoo_preprocess_reproduces_training_input(tmp_path):
    """open_clip's eval transform from the saved config gives exactly the normalised training pixels."""
    name = ZOO_NAMES[0]
    backbone = load_backbone(f"zoo:{name}", with_gflops=False)
    pp = json.loads((DEFAULT_OUT / name / "open_clip_config.json").read_text())["preprocess_cfg"]
    mean, std = torch.tensor(pp["mean"]).view(3, 1, 1), torch.tensor(pp["std"]).view(3, 1, 1)
    for source in (FASHION_DEMO, CIFAR_DEMO):  # 28x28 gray (resized, made RGB) and 32x32 RGB JPEG
        dataset = open_dataset(source, "test")
        cached, _ = decode_split(source, "test", cache=tmp_path)
        for i in (0, 1, 1999):
            training = (torch.from_numpy(cached[i]).permute(2, 0, 1).float() / 255 - mean) / std
            assert torch.allclose(backbone.preprocess(dataset.load_image(i)), training, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    cache = tmp_path_factory.mktemp("zoo-cache")
    trainset = TrainSet.build(
        {"cifar10": CIFAR_DEMO, "fashion-mnist": FASHION_DEMO}, holdout=0, limit=64, cache=cache
    )
    cfg = model_config("tiny", TINY_VISION)
    captions = CaptionBank.build(list(trainset.domain_names), _tokenizer(cfg))
    return trainset, cfg, captions, trainset.mean_std()


def _train(tiny_setup, work_dir: Path, recipe: Recipe, stop_after=None):
    trainset, cfg, captions, mean_std = tiny_setup
    return train_model(
        "tiny",
        cfg,
        trainset,
        captions,
        recipe,
        seed=3,
        mean_std=mean_std,
        work_dir=work_dir,
        stop_after=stop_after,
        progress=False,
    )


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_recipe_is_deterministic(tiny_setup, tmp_path):
    recipe = Recipe(steps=3, batch_size=16, warmup=1, checkpoint_every=100)
    first = _train(tiny_setup, tmp_path / "a", recipe)
    second = _train(tiny_setup, tmp_path / "b", recipe)
    _assert_same_weights(first.model, second.model)
    fresh = _train(tiny_setup, tmp_path / "c", Recipe(steps=0, batch_size=16, warmup=1))
    assert not torch.equal(
        first.model.visual.proj, fresh.model.visual.proj
    )  # training moved the weights


def test_resume_matches_uninterrupted_run(tiny_setup, tmp_path):
    recipe = Recipe(steps=4, batch_size=16, warmup=1, checkpoint_every=2)
    straight = _train(tiny_setup, tmp_path / "straight", recipe)
    interrupted = _train(tiny_setup, tmp_path / "resumed", recipe, stop_after=2)
    assert interrupted.steps_done == 2
    assert json.loads((tmp_path / "resumed" / "ckpt.json").read_text())["step"] == 2
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == [
        "ckpt.json",
        "ckpt.safetensors",
    ]
    resumed = _train(tiny_setup, tmp_path / "resumed", recipe)
    assert resumed.steps_done == 4
    _assert_same_weights(straight.model, resumed.model)
    with pytest.raises(ClipfuseError, match="different run"):
        _train(tiny_setup, tmp_path / "resumed", Recipe(steps=5, batch_size=16, warmup=1))


def test_export_loads_through_open_clip(tiny_setup, tmp_path):
    trainset, cfg, captions, (mean, std) = tiny_setup
    model = _train(tiny_setup, tmp_path / "w", Recipe(steps=1, batch_size=16, warmup=1)).model
    export_model(model, cfg, mean, std, tmp_path / "out")
    backbone = load_backbone(f"local-dir:{tmp_path / 'out'}", with_gflops=False)
    for key, value in backbone.model.state_dict().items():
        trained = model.state_dict()[key]
        assert torch.equal(
            value, trained.half().float() if trained.is_floating_point() else trained
        ), key
    assert backbone.info.preprocess["mean"] == mean and backbone.info.image_size == 32


def test_captions_name_the_sampled_class(tiny_setup):
    trainset, _, captions, _ = tiny_setup
    idx = torch.arange(len(trainset))
    rows = captions.draw(
        trainset.domains[idx], trainset.labels[idx], torch.Generator().manual_seed(0)
    )
    for d, name in enumerate(trainset.domain_names):
        names = known_classnames(name)
        for r, label in zip(
            rows[trainset.domains == d][:20], trainset.labels[trainset.domains == d][:20]
        ):
            assert names[int(label)] in captions.texts[int(r)]


def test_demo_data_is_balanced_and_held_out():
    for source, n_train in ((CIFAR_DEMO, 500), (FASHION_DEMO, 500)):
        for split, n in (("train", n_train), ("test", 2000)):
            dataset = open_dataset(source, split)
            assert len(dataset) == n and np.bincount(dataset.labels).tolist() == [n // 10] * 10
    assert open_dataset(FASHION_DEMO, "test").name == "fashion-mnist"


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), 1))


def test_demo_fashion_rows_are_the_source_rows_and_never_trained_on(tmp_path):
    """The demo builder copies the source rows it selects, and its train rows lie inside the zoo's
    train hold-out. Run on a generated full-size-shaped Fashion-MNIST (the real one lives outside
    the repository); the shipped files' own checksums are checked in test_demo_data_checksums."""
    rng = np.random.default_rng(0)
    source = tmp_path / "data" / "fashion-mnist"
    source.mkdir(parents=True)
    for prefix, n in (("train", 3000), ("t10k", 2400)):
        _write_idx(source / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", rng.permutation(np.arange(n) % 10))
    build_fashion(tmp_path / "data", tmp_path / "out")
    demo_root = f"idx:{tmp_path / 'out' / 'fashion-mnist-demo'}"
    full = {s: open_dataset(f"idx:{source}", s) for s in ("train", "test")}
    for split in ("train", "test"):
        demo = open_dataset(demo_root, split)
        keep = demo_positions(full[split].labels, split)
        assert len(demo) == len(keep) == {"train": 500, "test": 2000}[split]
        assert np.array_equal(full[split].reader.images[keep], demo.reader.images)
        assert np.array_equal(full[split].labels[keep], demo.labels)
    train_keep = demo_positions(full["train"].labels, "train")
    assert np.isin(train_keep, holdout_positions(full["train"].labels)).all()


def test_demo_data_checksums():
    """The shipped demo files are the bytes PROVENANCE.md records (the build is byte-reproducible)."""
    text = (DEMO_DIR / "PROVENANCE.md").read_text()
    recorded = dict(
        (name, digest)
        for digest, name in (line.split() for line in text.split("```")[1].strip().splitlines())
    )
    assert len(recorded) == 6
    for name, digest in recorded.items():
        assert file_sha256(DEMO_DIR / name) == digest, name


def test_one_flop_counter_for_every_gflops_figure(tmp_path, monkeypatch):
    """The shipped cards, `clipfuse backbones` and a live count (what extraction records in the
    store) give one GFLOPs figure per zoo backbone; a card from another counter is not shown."""
    import clipfuse.backbones.flops as flops
    from clipfuse.backbones.registry import _card_gflops, list_backbones

    monkeypatch.setattr(flops, "_CACHE", tmp_path / "gflops.json")  # count, do not recall
    listed = {e.spec: e.image_gflops for e in list_backbones("zoo:*")}
    for name in ZOO_NAMES:
        card = json.loads((DEFAULT_OUT / name / "card.json").read_text())
        assert card["image_gflops_counter"] == flops.COUNTER
        live = flops.image_gflops(load_backbone(f"zoo:{name}", with_gflops=False))
        assert card["image_gflops"] == pytest.approx(live, abs=1e-5), name
        assert listed[f"zoo:{name}"] == card["image_gflops"]
        readme = (DEFAULT_OUT / name / "README.md").read_text()
        assert f"{live * 1000:.1f} MFLOPs per image" in readme, name
    assert _card_gflops({"image_gflops": 0.017}) is None  # an uncounted (v1) figure is hidden
