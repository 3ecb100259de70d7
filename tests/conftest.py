"""Shared fixtures: real images shipped in the package, tiny random open_clip backbones, small image sets.

Nothing here reads outside the repository: a user's clone has no ../shared. The real CIFAR-10 /
Fashion-MNIST images come from the demo data shipped inside the package (src/clipfuse/demo_data),
re-packed here into the layouts the tests need (a CIFAR-10-style `.tar.gz`, IDX folders); the
ImageNet-style flat files are generated.

The test session is hermetic: clipfuse's caches (file hashes, GFLOPs, decompressed archives) go
to a temporary folder, and downloads are switched off, so no test can touch the network or the
user's ~/.cache, and a missing weight fails at once instead of hanging. Subprocesses inherit both.
Torch runs one intra-op thread unless told otherwise: on a small, busy machine two spinning
OpenMP threads make the tiny models' small batches 30-100x slower, and one thread everywhere
(in-process and in subprocesses) also keeps float results identical between runs.
"""

from __future__ import annotations

import atexit
import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

# before any clipfuse import: its cache locations are read at import time
_CACHE = tempfile.mkdtemp(prefix="clipfuse-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["CLIPFUSE_CACHE"] = _CACHE
os.environ["CLIPFUSE_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tests" / "assets"
DEMO_DATA = REPO / "src" / "clipfuse" / "demo_data"
_FIXTURE_DATA = Path(tempfile.mkdtemp(prefix="clipfuse-test-data-"))
atexit.register(shutil.rmtree, _FIXTURE_DATA, ignore_errors=True)


def _gzip_demo_split(split: str) -> Path:
    """The shipped CIFAR-10 demo split (`split/<class>/<n>.jpg`, real images) as a `.tar.gz`,
    named like the full dataset's archive so the catalog recognises CIFAR-10."""
    target = _FIXTURE_DATA / "cifar10" / f"cifar10-{split}.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress((DEMO_DATA / "cifar10-demo" / f"{split}.tar").read_bytes(), 1))
    return target


CIFAR10_TEST = _gzip_demo_split("test")  # 2,000 real CIFAR-10 test images, 200 per class
CIFAR10_TRAIN = _gzip_demo_split("train")  # 500 real CIFAR-10 train images, 50 per class
FASHION_IDX = DEMO_DATA / "fashion-mnist-demo"  # IDX files: 500 train + 2,000 test images
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

RN_TINY = f"{ASSETS / 'rn-tiny.json'}:random"
VIT_TINY = f"{ASSETS / 'vit-tiny.json'}:random"
TINY_SPECS = (RN_TINY, VIT_TINY)
CONFIGS = {"rn": ASSETS / "rn-tiny.json", "vit": ASSETS / "vit-tiny.json"}


def cli_env() -> dict[str, str]:
    """Environment for `python -m clipfuse.cli` subprocesses: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipfuse.cli", *args]


def save_local_dir(
    backbone, config_file: Path, directory: Path, weights_name: str = "open_clip_model.safetensors"
):
    """An open_clip `local-dir:` folder (config + safetensors weights) holding `backbone`'s model."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = json.loads(config_file.read_text())
    pp = {k: backbone.info.preprocess[k] for k in ("mean", "std", "interpolation", "resize_mode")}
    config = {"model_cfg": raw.get("model_cfg", raw), "preprocess_cfg": pp}
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.detach().contiguous() for k, v in backbone.model.state_dict().items()}
    save_file(state, str(directory / weights_name))
    return directory


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A plain or gzipped (by suffix) tar holding `members` (name -> bytes), in the given order."""
    mode = "w:gz" if str(path).endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def two_class_pngs(root: Path, per_class: int) -> Path:
    """`root/pics/{cat,dog}/<i>.png`: small random images, each class tinted by one channel so
    that even a tiny model can tell them apart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / "pics" / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            pixels[..., c] = 250
            Image.fromarray(pixels).save(root / "pics" / name / f"{i}.png")
    return root / "pics"


def write_folder(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def cifar_jpegs() -> dict[str, list[tuple[str, bytes]]]:
    """Real CIFAR-10 test JPEGs, read straight from the archive with tarfile (not clipfuse):
    class -> [(file name, bytes)], the first 12 of each class in archive order."""
    archive = CIFAR10_TEST
    per_class: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or len(per_class[parts[1]]) >= 12:
                continue
            per_class[parts[1]].append((parts[2], tar.extractfile(member).read()))
            if len(per_class) == 10 and all(len(v) >= 12 for v in per_class.values()):
                break
    return dict(sorted(per_class.items()))


def class_members(cifar_jpegs, per_class: int, prefix: str = "") -> dict[str, bytes]:
    """`{prefix}<class>/<file>` -> bytes for the first `per_class` images of every class."""
    return {
        f"{prefix}{c}/{name}": data
        for c, items in cifar_jpegs.items()
        for name, data in items[:per_class]
    }


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, cifar_jpegs) -> Path:
    """A class/image folder (split "all") of 30 real CIFAR-10 images, 3 per class."""
    return write_folder(tmp_path_factory.mktemp("folder") / "pics", class_members(cifar_jpegs, 3))


@pytest.fixture(scope="session")
def folder120(tmp_path_factory, cifar_jpegs) -> Path:
    """A class/image folder of 120 real CIFAR-10 images (12 per class), for extraction runs."""
    return write_folder(
        tmp_path_factory.mktemp("folder120") / "pics", class_members(cifar_jpegs, 12)
    )


@pytest.fixture(scope="session")
def tiny_backbones():
    """The two tiny random open_clip backbones (ResNet and ViT), loaded once per session."""
    from clipfuse.backbones import load_backbone

    return {"rn": load_backbone(RN_TINY), "vit": load_backbone(VIT_TINY)}


@pytest.fixture(scope="session")
def cifar200_f16_store(tmp_path_factory) -> Path:
    """The issue's "done when" extraction: both tiny backbones over 200 CIFAR-10 test images,
    default settings (float16 features, default decode workers), through the CLI in-process."""
    from clipfuse.cli import main

    store = tmp_path_factory.mktemp("cifar200-f16") / "store"
    args = ["extract", "--backbone", RN_TINY, "--backbone", VIT_TINY, "--data", f"imagefolder:{CIFAR10_TEST}",
            "--split", "test", "--limit", "200", "--store", str(store), "--quiet"]  # fmt: skip
    assert main(args) == 0
    return store
