"""Issue 23: files beside the images do not invalidate a dataset's cached features, and a dataset
whose images changed is reported as changed (not as never extracted). Images are generated here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.errors import ProvenanceMismatchError
from clipfuse.logits import resolve_view
from clipfuse.store import FeatureStore

CLASSES = ("cat", "dog")


def _write_images(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            pixels[..., c] = 250
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_non_image_files_keep_the_fingerprint(tmp_path):
    folder = _write_images(tmp_path / "pics")
    before = open_dataset(f"imagefolder:{folder}", "all")
    (folder / "README.txt").write_text("my photos\n")
    (folder / "cat" / ".DS_Store").write_bytes(b"\0" * 10)
    (folder / "dog" / "notes.json").write_text("{}")
    after = open_dataset(f"imagefolder:{folder}", "all")
    assert after.view_key == before.view_key
    assert after.sample_ids == before.sample_ids
    Image.new("RGB", (24, 24)).save(folder / "dog" / "new.png")
    assert open_dataset(f"imagefolder:{folder}", "all").view_key != before.view_key


def test_changed_dataset_is_reported_as_changed(tmp_path, capsys):
    folder = _write_images(tmp_path / "pics")
    store = tmp_path / "store"
    data = ["--data", f"imagefolder:{folder}", "--split", "all", "--store", str(store)]
    assert main(["extract", "--backbone", "zoo:rn-tiny", *data, "--quiet"]) == 0
    (folder / "README.txt").write_text("my photos\n")
    capsys.readouterr()
    assert main(["zeroshot", *data, "--json"]) == 0  # the cache still answers
    Image.new("RGB", (24, 24), (9, 9, 250)).save(folder / "dog" / "new.png")
    capsys.readouterr()
    assert main(["zeroshot", *data]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed since extraction" in err[0], err
    assert "6 extracted, 7 now" in err[0] and "first" not in err[0]
    dataset = open_dataset(f"imagefolder:{folder}", "all")
    with pytest.raises(ProvenanceMismatchError, match="changed since extraction"):
        resolve_view(FeatureStore(store), dataset)
