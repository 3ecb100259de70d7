"""Parity with the reference implementations (issue 2): clipfuse's predictions equal those of a
plain open_clip loop (`preprocess -> encode_image -> normalize -> @ build_zero_shot_classifier`),
and its accuracies equal CLIP_benchmark's on the same model and the same images."""

from __future__ import annotations

import io
import json
import math
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    CIFAR10_TEST,
    CONFIGS,
    RN_TINY,
    TINY_SPECS,
    VIT_TINY,
    save_local_dir,
    write_tar,
)
from open_clip import build_zero_shot_classifier
from PIL import Image

from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.logits import load_bundle
from clipfuse.store import FeatureStore

FP16_UNIT_ROUNDOFF = 2.0**-11  # |fp16(x) - x| <= u |x| for normal numbers
FP16_SUBNORMAL_HALF_GAP = 2.0**-25  # absolute bound below the normal range (|x| < 2**-14)
BATCH = 50  # plain loop and extraction encode the same batches of the same images


@pytest.fixture(scope="module")
def cifar200():
    """The 200-image class-balanced CIFAR-10 test selection (`--limit 200`)."""
    return open_dataset(f"imagefolder:{CIFAR10_TEST}", "test", limit=200)


@pytest.fixture(scope="module")
def plain_loop(cifar200, tiny_backbones):
    """Reference logits per spec from open_clip alone: images decoded with PIL straight from the
    archive, the model's own preprocess, encode_image, normalize, open_clip's zero-shot classifier."""
    wanted = set(cifar200.sample_ids)
    jpegs = {}
    with tarfile.open(CIFAR10_TEST, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                jpegs[member.name] = tar.extractfile(member).read()
    images = [Image.open(io.BytesIO(jpegs[sid])).convert("RGB") for sid in cifar200.sample_ids]
    labels = np.array(
        [cifar200.classnames.index(Path(sid).parts[1]) for sid in cifar200.sample_ids]
    )
    templates = [t.replace("{c}", "{}") for t in cifar200.templates]
    out = {}
    for backbone in tiny_backbones.values():
        model = backbone.model
        with torch.no_grad():
            classifier = build_zero_shot_classifier(
                model, backbone.tokenizer, cifar200.classnames, templates
            )
            batches = [images[i : i + BATCH] for i in range(0, len(images), BATCH)]
            pixels = [torch.stack([backbone.preprocess(im) for im in batch]) for batch in batches]
            feats = torch.cat([F.normalize(model.encode_image(px), dim=-1) for px in pixels])
            scale = model.logit_scale.exp().item()
        out[backbone.info.spec] = {
            "logits": scale * feats @ classifier,
            "scale": scale,
            "dim": feats.shape[1],
        }
    return {"sample_ids": cifar200.sample_ids, "labels": labels, "backbones": out}


def bundle_by_spec(store: Path) -> tuple[dict[str, torch.Tensor], object]:
    fs = FeatureStore(store)
    (view,) = fs.views()
    bundle = load_bundle(fs, view)
    return {spec: bundle.logits[b] for b, spec in enumerate(bundle.specs)}, bundle


def test_float32_store_predictions_equal_the_plain_open_clip_loop(tmp_path, plain_loop):
    store = tmp_path / "store"
    args = ["extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, "--data", f"imagefolder:{CIFAR10_TEST}",
            "--split", "test", "--limit", "200", "--store", str(store), "--feature-dtype", "float32",
            "--batch-size", str(BATCH), "--workers", "0", "--quiet"]  # fmt: skip
    assert main(args) == 0
    logits, bundle = bundle_by_spec(store)
    assert bundle.sample_ids == plain_loop["sample_ids"]
    np.testing.assert_array_equal(bundle.labels.numpy(), plain_loop["labels"])
    for spec in TINY_SPECS:
        ref = plain_loop["backbones"][spec]["logits"]
        torch.testing.assert_close(logits[spec], ref, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(
            logits[spec].argmax(1).numpy(), ref.argmax(1).numpy(), err_msg=spec
        )


def test_float16_store_predictions_agree_beyond_the_rounding_bound(cifar200_f16_store, plain_loop):
    """Default float16 storage moves each logit by at most s*||fp16(x) - x|| (class vectors have unit
    norm), so the top-1 class can only change where the top-2 gap is under twice that."""
    logits, bundle = bundle_by_spec(cifar200_f16_store)
    assert bundle.sample_ids == plain_loop["sample_ids"]
    for spec in TINY_SPECS:
        ref = plain_loop["backbones"][spec]
        err = (
            FP16_UNIT_ROUNDOFF + math.sqrt(ref["dim"]) * FP16_SUBNORMAL_HALF_GAP
        )  # bound on ||fp16(x) - x||
        bound = 2 * ref["scale"] * err + 1e-4  # + float32 arithmetic slack
        top2 = ref["logits"].topk(2, dim=1).values
        decided = (top2[:, 0] - top2[:, 1]) > bound
        same = logits[spec].argmax(1) == ref["logits"].argmax(1)
        print(f"\n{spec}: top-2 gap > {bound:.4f} for {int(decided.sum())}/200 samples; "
              f"{int(same.sum())}/200 predictions equal overall")  # fmt: skip
        assert decided.any(), "the bound decides no sample: the check would be vacuous"
        assert bool(same[decided].all()), f"{spec}: a prediction changed beyond the float16 bound"
        assert float((logits[spec] - ref["logits"]).abs().max()) <= ref["scale"] * err + 1e-4


def write_clip_benchmark_wds(dataset, root: Path) -> Path:
    """`dataset` in CLIP_benchmark's WebDataset layout: root/test/0.tar (key.jpg, key.cls),
    nshards.txt, classnames.txt and zeroshot_classification_templates.txt."""
    members = {}
    for i in range(len(dataset)):
        key = f"s{i:04d}"
        members[f"{key}.jpg"] = dataset.read(i)
        members[f"{key}.cls"] = str(int(dataset.labels[i])).encode()
    (root / "test").mkdir(parents=True)
    write_tar(root / "test" / "0.tar", members)
    (root / "test" / "nshards.txt").write_text("1\n")
    (root / "classnames.txt").write_text("\n".join(dataset.classnames) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(dataset.templates) + "\n")
    return root


def numpy2_safe_accuracy(output, target, topk=(1,)):
    """CLIP_benchmark 1.6.2's `accuracy`, line for line, except that the count is read with
    `.item()`: its `float()` of a one-element array is an error since NumPy 2.x."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).item() / n for k in topk]


def run_clip_benchmark(model_dir: Path, data_dir: Path, output: Path, monkeypatch) -> dict:
    """CLIP_benchmark's own CLI, in-process, on a `local-dir:` open_clip model, on the CPU and in
    float32 (--no_amp: clipfuse extracts in fp32; CPU autocast would run the model in bfloat16).
    Its `accuracy` is swapped for the NumPy-2-safe copy above only if the original fails here."""
    from clip_benchmark import cli
    from clip_benchmark.metrics import zeroshot_classification

    try:
        zeroshot_classification.accuracy(torch.eye(5), torch.arange(5), topk=(1, 5))
    except TypeError:
        monkeypatch.setattr(zeroshot_classification, "accuracy", numpy2_safe_accuracy)

    argv = ["clip_benchmark", "eval", "--model", f"local-dir:{model_dir}", "--pretrained", "x",
            "--dataset", "wds/cifar10", "--dataset_root", str(data_dir), "--split", "test",
            "--task", "zeroshot_classification", "--output", str(output), "--batch_size", "64",
            "--num_workers", "0", "--no_amp", "--quiet"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with torch.random.fork_rng():  # it reseeds the global generator
        cli.main()
    return json.loads(output.read_text())["metrics"]


@pytest.mark.filterwarnings("ignore:WebDataset")
@pytest.mark.parametrize("which", ["rn", "vit"])
def test_accuracy_equals_clip_benchmark(
    tmp_path, cifar200, tiny_backbones, which, monkeypatch, capsys
):
    pytest.importorskip("clip_benchmark")
    model_dir = save_local_dir(tiny_backbones[which], CONFIGS[which], tmp_path / "model")
    data_dir = write_clip_benchmark_wds(cifar200, tmp_path / "wds")
    theirs = run_clip_benchmark(model_dir, data_dir, tmp_path / "cb.json", monkeypatch)

    store, data = str(tmp_path / "store"), f"wds:{data_dir}"
    assert main(["extract", "--backbone", f"local-dir:{model_dir}", "--data", data, "--split", "test",
                 "--store", store, "--feature-dtype", "float32", "--workers", "0", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["zeroshot", "--data", data, "--split", "test", "--store", store, "--json"]) == 0
    (ours,) = json.loads(capsys.readouterr().out)["results"]
    print(f"\n{which}: CLIP_benchmark {theirs}\n{which}: clipfuse {ours}")
    assert ours["n"] == 200
    assert ours["top1"] == pytest.approx(theirs["acc1"], abs=1e-6)
    assert ours["top5"] == pytest.approx(theirs["acc5"], abs=1e-6)
    assert ours["mean_per_class_recall"] == pytest.approx(theirs["mean_per_class_recall"], abs=1e-6)
