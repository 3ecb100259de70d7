"""`parquet:` sources (issue 15) on Parquet files written here in Hugging Face `datasets`' layout:
image struct {bytes, path}, ClassLabel names in the `huggingface` schema metadata, several
files and row groups; read by row groups, never whole."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from clipfuse.cli import main  # noqa: E402
from clipfuse.data import open_dataset  # noqa: E402
from clipfuse.errors import DataError  # noqa: E402

NAMES = ["sunflower", "tulip", "daisy"]


def _png(seed: int, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_hf_parquet(path: Path, labels: list[int], seed: int, class_names=NAMES, row_group=4):
    """A file as `datasets.Dataset.to_parquet` writes it (features in the schema metadata)."""
    images = [
        {"bytes": _png(seed + i, (20 + i % 5, 16 + i % 3)), "path": f"img{seed + i}.png"}
        for i in range(len(labels))
    ]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {"image": pa.array(images, type=image_type), "label": pa.array(labels, type=pa.int64())}
    )
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel"}}
    if class_names:
        features["label"]["names"] = class_names
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path, row_group_size=row_group)
    return images


@pytest.fixture()
def hub_layout(tmp_path) -> Path:
    root = tmp_path / "flowers"
    write_hf_parquet(root / "data" / "train-00000-of-00001.parquet", [0, 1, 2] * 3, seed=0)
    write_hf_parquet(root / "data" / "test-00000-of-00002.parquet", [0, 1, 2, 0, 1], seed=100)
    write_hf_parquet(root / "data" / "test-00001-of-00002.parquet", [2, 2, 1, 0], seed=200)
    return root


def test_reads_splits_labels_classnames_and_bytes(hub_layout):
    test = open_dataset(f"parquet:{hub_layout}", "test")
    assert test.classnames == NAMES
    assert test.labels.tolist() == [0, 1, 2, 0, 1, 2, 2, 1, 0]
    assert test.sample_ids[0] == "data/test-00000-of-00002.parquet/0"
    assert test.sample_ids[5] == "data/test-00001-of-00002.parquet/0"
    assert test.read(6) == _png(201, (21, 17))
    assert test.load_image(6).size == (21, 17)
    assert len(open_dataset(f"parquet:{hub_layout}", "train")) == 9
    assert len(open_dataset(f"parquet:{hub_layout}", "all")) == 18
    one = open_dataset(f"parquet:{hub_layout}/data/train-00000-of-00001.parquet", "train")
    assert one.labels.tolist() == [0, 1, 2] * 3
    with pytest.raises(DataError, match="split 'validation' not in"):
        open_dataset(f"parquet:{hub_layout}", "validation")


def test_streams_by_row_group(hub_layout, monkeypatch):
    """No whole-file read anywhere; the reader holds one row group of image bytes at a time."""

    def whole_file(*args, **kwargs):
        raise AssertionError("a whole Parquet file was read")

    monkeypatch.setattr(pq.ParquetFile, "read", whole_file)
    monkeypatch.setattr(pq, "read_table", whole_file)
    dataset = open_dataset(f"parquet:{hub_layout}", "train")
    reads = []
    original = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    for i in range(len(dataset)):
        dataset.read(i)
        assert len(dataset.reader._rows) <= 4  # row_group_size
    assert reads == [0, 1, 2]  # 9 rows in groups of 4: each group read once, in order


def test_extract_and_zeroshot_from_parquet(hub_layout, tmp_path, capsys):
    store = tmp_path / "store"
    data = ["--data", f"parquet:{hub_layout}", "--split", "test"]
    assert (
        main(["extract", "--backbone", "zoo:rn-tiny", *data, "--store", str(store), "--quiet"]) == 0
    )
    capsys.readouterr()
    assert main(["zeroshot", *data, "--store", str(store), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["n"] == 9 and 0.0 <= result["top1"] <= 1.0


def test_without_classlabel_names_and_bad_input(tmp_path, capsys):
    plain = tmp_path / "plain" / "test.parquet"
    write_hf_parquet(plain, [0, 1, 1], seed=5, class_names=None)
    with pytest.raises(DataError, match="no class names"):
        open_dataset(f"parquet:{plain.parent}", "test")
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    assert open_dataset(f"parquet:{plain}", "test", classnames=str(names)).classnames == ["a", "b"]
    bad = tmp_path / "bad" / "x.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"not parquet")
    code = main(
        ["zeroshot", "--data", f"parquet:{bad}", "--split", "all", "--store", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read Parquet file" in err[0]


def write_two_label_columns(path: Path, n: int = 6) -> tuple[list[int], list[int]]:
    """CIFAR-100's shape: two ClassLabel columns (fine and coarse) next to one image column."""
    fine = [i % 3 for i in range(n)]
    coarse = [int(i % 3 == 2) for i in range(n)]
    images = [{"bytes": _png(300 + i, (18, 18)), "path": None} for i in range(n)]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array(images, type=image_type),
            "coarse_label": pa.array(coarse, type=pa.int64()),
            "fine_label": pa.array(fine, type=pa.int64()),
        }
    )
    features = {
        "image": {"_type": "Image"},
        "coarse_label": {"_type": "ClassLabel", "names": ["flower", "weed"]},
        "fine_label": {"_type": "ClassLabel", "names": NAMES},
    }
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path, row_group_size=4)
    return fine, coarse


def test_two_label_columns_need_a_choice(tmp_path, capsys):
    """Issue 23: with two label-like columns the first was taken silently."""
    path = tmp_path / "two" / "test.parquet"
    fine, coarse = write_two_label_columns(path)
    source = f"parquet:{path}"
    with pytest.raises(DataError, match=r"several label columns \(coarse_label, fine_label\)"):
        open_dataset(source, "test")
    by_fine = open_dataset(source, "test", label_column="fine_label")
    by_coarse = open_dataset(source, "test", label_column="coarse_label")
    assert by_fine.labels.tolist() == fine and by_fine.classnames == NAMES
    assert by_coarse.labels.tolist() == coarse and by_coarse.classnames == ["flower", "weed"]
    assert by_fine.columns == {"image": "image", "label": "fine_label"}
    assert by_fine.view_key != by_coarse.view_key  # stored labels differ, so do the views
    with pytest.raises(DataError, match=r"--label-column 'nope' is not a column .*fine_label"):
        open_dataset(source, "test", label_column="nope")
    with pytest.raises(DataError, match="both 'image'"):
        open_dataset(source, "test", label_column="image")

    store = tmp_path / "store"
    args = ["extract", "--backbone", "zoo:rn-tiny", "--data", source, "--split", "test"]
    args += ["--store", str(store), "--quiet"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coarse_label, fine_label" in err[0] and "--label-column" in err[0]
    assert main([*args, "--label-column", "coarse_label"]) == 0
    assert "labels from column 'coarse_label'" in capsys.readouterr().err
    zeroshot = ["zeroshot", "--data", source, "--split", "test", "--store", str(store), "--json"]
    assert main([*zeroshot, "--label-column", "coarse_label"]) == 0
    captured = capsys.readouterr()
    assert "images from column 'image', labels from column 'coarse_label'" in captured.err
    assert json.loads(captured.out)["results"][0]["n"] == len(coarse)
    assert main([*zeroshot, "--label-column", "fine_label"]) == 2  # not extracted with these labels
    err = capsys.readouterr().err.strip().splitlines()
    assert "was extracted with columns" in err[-1] and "'coarse_label'" in err[-1]


def test_single_columns_keep_their_fingerprint_and_options_need_parquet(hub_layout, tmp_path):
    from clipfuse.hashing import file_sha256, value_hash

    dataset = open_dataset(f"parquet:{hub_layout}", "train")
    assert dataset.columns == {"image": "image", "label": "label"}
    files = sorted(hub_layout.rglob("train-*.parquet"))
    assert dataset.source_fingerprint == value_hash([file_sha256(f) for f in files])
    named = open_dataset(f"parquet:{hub_layout}", "train", label_column="label")
    assert named.view_key == dataset.view_key
    (tmp_path / "pics" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "pics" / "a" / "0.png")
    with pytest.raises(DataError, match="apply to parquet: sources only"):
        open_dataset(f"imagefolder:{tmp_path / 'pics'}", "all", label_column="label")
