"""Issue 23: nothing to do is fast. A rerun of a finished `extract` is told from the store's
records (what each backbone was built from, still unchanged) without building a model or
importing open_clip; `zeroshot` from cached text classifiers builds no model and imports no
plotting library. Anything changed falls back to the full path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import two_class_pngs

from clipfuse.backbones.spec import ZOO_DIR
from clipfuse.cli import main
from clipfuse.data import open_dataset
from clipfuse.extraction.noop import finished_extraction
from clipfuse.store import FeatureStore

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def folder(tmp_path) -> Path:
    return two_class_pngs(tmp_path, 3)


def _extract_args(spec: str, folder: Path, store: Path) -> list[str]:
    return ["extract", "--backbone", spec, "--data", f"imagefolder:{folder}", "--split", "all",
            "--store", str(store), "--quiet"]  # fmt: skip


def _no_models(monkeypatch):
    import clipfuse.backbones as backbones
    import clipfuse.backbones.backbone as backbone_module

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(backbones, "load_backbone", refuse)
    monkeypatch.setattr(backbone_module, "load_backbone", refuse)


def test_noop_extract_and_cached_zeroshot_build_no_model(folder, tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    assert main(_extract_args("zoo:rn-tiny", folder, store)) == 0
    data = ["--data", f"imagefolder:{folder}", "--split", "all", "--store", str(store)]
    assert main(["zeroshot", *data, "--json"]) == 0  # builds and caches the text classifier
    capsys.readouterr()
    _no_models(monkeypatch)
    assert main(_extract_args("zoo:rn-tiny", folder, store)) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["zeroshot", *data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["n"] == 6


def test_noop_imports_no_model_library(folder, tmp_path):
    store = tmp_path / "store"
    assert main(_extract_args("zoo:rn-tiny", folder, store)) == 0
    data = ["--data", f"imagefolder:{folder}", "--split", "all", "--store", str(store)]
    assert main(["zeroshot", *data, "--json"]) == 0
    code = (
        "import sys\nfrom clipfuse.cli import main\n"
        f"assert main({_extract_args('zoo:rn-tiny', folder, store)!r}) == 0\n"
        f"assert main({['zeroshot', *data, '--json']!r}) == 0\n"
        "heavy = ['open_clip', 'transformers', 'torchvision', 'matplotlib', 'timm']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    env = {"PYTHONPATH": str(SRC), "CLIPFUSE_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stdout
    assert "LOADED []" in out.stdout


def test_changed_inputs_take_the_full_path(folder, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(ZOO_DIR / "rn-tiny", model_dir)
    spec = f"local-dir:{model_dir}"
    store = tmp_path / "store"
    assert main(_extract_args(spec, folder, store)) == 0
    dataset = open_dataset(f"imagefolder:{folder}", "all")
    fs = FeatureStore(store)
    assert finished_extraction([spec], dataset, fs) is not None
    assert finished_extraction([spec], dataset, fs, feature_dtype="float32") is None
    assert finished_extraction([spec], dataset, fs, shard_size=2) is None
    assert finished_extraction(["zoo:vit-p4"], dataset, fs) is None  # never extracted
    config = model_dir / "open_clip_config.json"
    raw = json.loads(config.read_text())
    raw["preprocess_cfg"]["mean"] = [0.5, 0.5, 0.5]  # new preprocessing, same weights
    config.write_text(json.dumps(raw))
    assert finished_extraction([spec], dataset, fs) is None
    assert main(_extract_args(spec, folder, store)) == 0  # a new fingerprint: extracted anew
    assert len(fs.entries()) == 2
    done = finished_extraction([spec], dataset, fs)
    assert done is not None
    (key,) = done.entries.values()
    fs.entry(key).shard_path(0).unlink()  # a lost shard: the full path rewrites it
    assert finished_extraction([spec], dataset, fs) is None


def test_store_without_records_takes_the_full_path(folder, tmp_path):
    store = tmp_path / "store"
    assert main(_extract_args("zoo:rn-tiny", folder, store)) == 0
    fs = FeatureStore(store)
    (name,) = [p.stem for p in (store / "backbone-info").glob("*.safetensors")]
    record = fs.get_array_set("backbone-info", name)
    meta = dict(record.metadata)
    meta["extra"] = {}  # as stores written before issue 23 hold it
    fs.put_array_set("backbone-info", name, {}, meta)
    dataset = open_dataset(f"imagefolder:{folder}", "all")
    assert finished_extraction(["zoo:rn-tiny"], dataset, fs) is None
    assert main(_extract_args("zoo:rn-tiny", folder, store)) == 0  # the full path adds it back
    assert finished_extraction(["zoo:rn-tiny"], dataset, fs) is not None
