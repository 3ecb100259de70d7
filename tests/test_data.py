"""Data sources: every layout and format opens to the right images and labels; bad input is a
one-line DataError. Expected labels come from the files' own layout, read here independently."""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CIFAR10_CLASSES,
    CIFAR10_TEST,
    FASHION_IDX,
    class_members,
    write_folder,
    write_tar,
)
from PIL import Image

from clipfuse.data import open_dataset
from clipfuse.data.sampling import balanced_subset
from clipfuse.errors import DataError


def check_against(dataset, members: dict[str, bytes], class_of) -> None:
    """Every sample's bytes and label are those of the member it names."""
    assert len(dataset) == len(members)
    assert sorted(dataset.sample_ids) == sorted(members)
    for i, sample_id in enumerate(dataset.sample_ids):
        assert dataset.read(i) == members[sample_id]
        assert dataset.classnames[dataset.labels[i]] == class_of(sample_id)
    assert dataset.labels.dtype == np.int64


def by_folder(sample_id: str) -> str:
    return Path(sample_id).parts[-2]


def test_imagefolder_over_a_folder(image_folder, cifar_jpegs):
    members = class_members(cifar_jpegs, 3)
    dataset = open_dataset(f"imagefolder:{image_folder}", "all")
    assert dataset.classnames == CIFAR10_CLASSES
    check_against(dataset, members, by_folder)
    image = dataset.load_image(0)
    assert image.mode == "RGB" and image.size == (32, 32)
    with pytest.raises(DataError, match="no split folders"):
        open_dataset(f"imagefolder:{image_folder}", "test")


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_imagefolder_over_an_archive_with_splits(tmp_path, cifar_jpegs, suffix):
    test = class_members(cifar_jpegs, 2, "test/")
    train = {
        k.replace("test/", "train/"): v for k, v in class_members(cifar_jpegs, 1, "test/").items()
    }
    archive = write_tar(tmp_path / f"pics{suffix}", {**train, **test})
    dataset = open_dataset(f"imagefolder:{archive}", "test")
    check_against(dataset, test, by_folder)
    assert dataset.split == "test"
    assert len(open_dataset(f"imagefolder:{archive}", "train")) == len(train)
    with pytest.raises(DataError, match=r"split 'val' not in .*splits: test, train"):
        open_dataset(f"imagefolder:{archive}", "val")


def test_imagefolder_over_a_folder_of_archives(tmp_path, cifar_jpegs):
    members = class_members(cifar_jpegs, 4, "test/")
    names = list(members)
    parts = tmp_path / "parts"
    parts.mkdir()
    write_tar(parts / "part-0.tar", {n: members[n] for n in names[::2]})
    write_tar(parts / "part-1.tar.gz", {n: members[n] for n in names[1::2]})
    dataset = open_dataset(f"imagefolder:{parts}", "test")
    check_against(dataset, members, by_folder)


def test_imagefolder_flat_class_prefixed_files(tmp_path):
    """The ImageNet sample's layout: `<wnid>_<readable name>.JPEG`, the class before the first `_`."""
    names = ["n01440764_tench", "n01443537_goldfish", "n01484850_great_white_shark",
             "n01491361_tiger_shark", "n01494475_hammerhead"]  # fmt: skip
    members = {}
    for k, name in enumerate(names):  # full-size JPEGs, as the ImageNet sample has
        pixels = np.random.default_rng(k).integers(0, 256, (375, 500, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
        members[f"{name}.JPEG"] = buffer.getvalue()
    dataset = open_dataset(f"imagefolder:{write_tar(tmp_path / 'sample5.tar', members)}", "all")
    wnids = sorted(name.split("_", 1)[0] for name in members)
    assert dataset.num_classes == 5
    check_against(
        dataset, members, lambda sid: dataset.classnames[wnids.index(sid.split("_", 1)[0])]
    )
    assert sorted(dataset.labels.tolist()) == [0, 1, 2, 3, 4]
    assert min(dataset.load_image(0).size) > 100  # full-size JPEG


def idx_labels(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    assert int.from_bytes(raw[:4], "big") == 0x801
    return np.frombuffer(raw, np.uint8, offset=8).astype(np.int64)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (MNIST's format: magic, big-endian dims, uint8 data), gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def idx_roots(tmp_path_factory) -> dict[str, Path]:
    """Fashion-MNIST: the shipped demo IDX files (real images) in a folder named like the full
    dataset; MNIST: generated digits-shaped IDX files (300 test images, 10 labels)."""
    root = tmp_path_factory.mktemp("idx")
    fashion = root / "fashion-mnist"
    fashion.mkdir()
    for f in FASHION_IDX.glob("*-ubyte.gz"):
        (fashion / f.name).write_bytes(f.read_bytes())
    mnist = root / "mnist"
    mnist.mkdir()
    rng = np.random.default_rng(0)
    write_idx(mnist / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (300, 28, 28)))
    write_idx(mnist / "t10k-labels-idx1-ubyte.gz", np.arange(300) % 10)
    return {"fashion-mnist": fashion, "mnist": mnist}


@pytest.mark.parametrize(
    ("folder", "first_names", "count"),
    [("fashion-mnist", ["T-shirt/top", "Trouser"], 2000), ("mnist", ["0", "1"], 300)],
)
def test_idx(idx_roots, folder, first_names, count):
    root = idx_roots[folder]
    dataset = open_dataset(f"idx:{root}", "test")
    expected = idx_labels(root / "t10k-labels-idx1-ubyte.gz")
    assert len(dataset) == len(expected) == count
    np.testing.assert_array_equal(dataset.labels, expected)
    assert dataset.num_classes == 10 and dataset.classnames[:2] == first_names
    image = dataset.load_image(0)
    assert image.mode == "RGB" and image.size == (28, 28)
    assert len(set(dataset.sample_ids)) == len(dataset)
    with pytest.raises(DataError, match="splits train and test"):
        open_dataset(f"idx:{root}", "val")


def test_csv_with_class_names_and_split_column(tmp_path, image_folder):
    files = sorted(p.relative_to(image_folder) for p in image_folder.rglob("*.jpg"))
    rows = ["path,label,split"] + [
        f"pics/{f},{f.parts[0]},{'train' if k % 3 == 0 else 'test'}" for k, f in enumerate(files)
    ]
    table = image_folder.parent / "labels.csv"
    table.write_text("\n".join(rows) + "\n")
    dataset = open_dataset(f"csv:{table}", "test")
    members = {f"pics/{f}": (image_folder / f).read_bytes() for k, f in enumerate(files) if k % 3}
    assert dataset.classnames == CIFAR10_CLASSES  # sorted names found in the file
    check_against(dataset, members, by_folder)
    with pytest.raises(DataError, match="split 'val' not in"):
        open_dataset(f"csv:{table}", "val")


def test_csv_with_integer_labels_and_a_classnames_file(tmp_path, image_folder):
    files = sorted(p.relative_to(image_folder) for p in image_folder.rglob("*.jpg"))
    table = image_folder.parent / "ints.csv"
    table.write_text("".join(f"pics/{f},{CIFAR10_CLASSES.index(f.parts[0])}\n" for f in files))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CIFAR10_CLASSES) + "\n")
    dataset = open_dataset(f"csv:{table}", "all", classnames=str(names))
    members = {f"pics/{f}": (image_folder / f).read_bytes() for f in files}
    check_against(dataset, members, by_folder)

    bad = tmp_path / "bad.csv"
    bad.write_text("only-one-column\n")
    with pytest.raises(DataError, match="path,label"):
        open_dataset(f"csv:{bad}", "all")


def write_wds(
    root: Path, cifar_jpegs, shards: int = 2, per_class: int = 2
) -> dict[str, tuple[bytes, int]]:
    """CLIP_benchmark's layout: root/test/<n>.tar of key.jpg + key.cls, root/classnames.txt."""
    (root / "test").mkdir(parents=True)
    samples = {}
    for c, (cls, items) in enumerate(cifar_jpegs.items()):
        for name, data in items[:per_class]:
            samples[f"{cls}-{Path(name).stem}"] = (data, c)
    keys = sorted(samples)
    for s in range(shards):
        members = {}
        for key in keys[s::shards]:
            members[f"{key}.jpg"] = samples[key][0]
            members[f"{key}.cls"] = str(samples[key][1]).encode()
        write_tar(root / "test" / f"{s}.tar", members)
    (root / "classnames.txt").write_text("\n".join(cifar_jpegs) + "\n")
    return samples


def test_wds_shards(tmp_path, cifar_jpegs):
    samples = write_wds(tmp_path / "wds", cifar_jpegs)
    dataset = open_dataset(f"wds:{tmp_path / 'wds'}", "test")
    assert dataset.classnames == CIFAR10_CLASSES
    assert len(dataset) == len(samples) == 20
    for i, sample_id in enumerate(dataset.sample_ids):
        data, label = samples[sample_id.split("/", 1)[1]]
        assert dataset.read(i) == data and dataset.labels[i] == label
    with pytest.raises(DataError, match="no WebDataset shards"):
        open_dataset(f"wds:{tmp_path / 'wds'}", "train")
    write_tar(tmp_path / "wds" / "test" / "2.tar", {"odd.jpg": b"", "odd.cls": b"cat"})
    with pytest.raises(DataError, match=r"odd.cls in .*2.tar' is not an integer class index"):
        open_dataset(f"wds:{tmp_path / 'wds'}", "test")


def test_limit_is_class_balanced_and_deterministic():
    source = f"imagefolder:{CIFAR10_TEST}"
    full = open_dataset(source, "test")
    a = open_dataset(source, "test", limit=55)
    b = open_dataset(source, "test", limit=55)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert len(a) == 55 and a.limit == 55
    counts = Counter(a.labels.tolist())
    assert len(counts) == 10 and set(counts.values()) == {5, 6}
    assert [full.sample_ids[p] for p in a.positions] == a.sample_ids
    np.testing.assert_array_equal(full.labels[a.positions], a.labels)
    assert a.view_key != full.view_key != open_dataset(source, "test", limit=50).view_key
    assert a.view_key == b.view_key
    with pytest.raises(DataError, match="positive"):
        full.subset(0)


def test_balanced_subset_when_a_class_runs_out():
    labels = np.array([0] + [1] * 10 + [2] * 10)
    chosen = balanced_subset(labels, 9, seed=0)
    assert Counter(labels[chosen].tolist()) == {0: 1, 1: 4, 2: 4}
    np.testing.assert_array_equal(chosen, balanced_subset(labels, 9, seed=0))
    assert not np.array_equal(chosen, balanced_subset(labels, 9, seed=1))


def test_class_count_mismatch(tmp_path, image_folder, idx_roots):
    names = tmp_path / "nine.txt"
    names.write_text("\n".join(CIFAR10_CLASSES[:9]))
    with pytest.raises(
        DataError, match="class-count mismatch.*10 classes in the data, 9 class names"
    ):
        open_dataset(f"imagefolder:{image_folder}", "all", classnames=str(names))
    with pytest.raises(DataError, match="class-count mismatch.*label 9 but only 5 class names"):
        open_dataset(f"idx:{idx_roots['mnist']}", "test", classnames=[str(d) for d in range(5)])


def test_empty_datasets(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_dataset(f"imagefolder:{tmp_path / 'empty'}", "all")
    archive = write_tar(tmp_path / "notes.tar", {"README.txt": b"no images here"})
    with pytest.raises(DataError, match="no images"):
        open_dataset(f"imagefolder:{archive}", "all")
    (tmp_path / "empty.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="no images"):
        open_dataset(f"csv:{tmp_path / 'empty.csv'}", "all")


@pytest.mark.parametrize(
    "source",
    [
        "",
        "cifar10",
        "imagefolder",
        "imagefolder:",
        "folder:/tmp",
        "imagefolder:/no/such/path",
        "idx:/no/such",
    ],
)
def test_malformed_sources(source):
    with pytest.raises(DataError) as info:
        open_dataset(source, "test")
    assert "\n" not in str(info.value)


def test_not_an_archive_or_folder(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(DataError, match="folder or a .tar"):
        open_dataset(f"imagefolder:{tmp_path / 'x.jpg'}", "all")
    (tmp_path / "broken.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="cannot read tar"):
        open_dataset(f"imagefolder:{tmp_path / 'broken.tar'}", "all")


def test_custom_templates(tmp_path, image_folder, cifar_jpegs):
    as_json = tmp_path / "t.json"
    as_json.write_text(json.dumps(["a photo of a {c}.", "art of the {c}."]))
    as_lines = tmp_path / "t.txt"
    as_lines.write_text("a photo of a {c}.\n\nart of the {c}.\n")
    for path in (as_json, as_lines):
        dataset = open_dataset(f"imagefolder:{image_folder}", "all", templates=str(path))
        assert dataset.templates == ["a photo of a {c}.", "art of the {c}."]
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo without a slot\n")
    for path, message in ((bad, "containing"), (tmp_path / "missing.txt", "not found")):
        with pytest.raises(DataError, match=message):
            open_dataset(f"imagefolder:{image_folder}", "all", templates=str(path))
    # CLIP_benchmark's per-dataset file next to WebDataset shards is picked up
    write_wds(tmp_path / "wds", cifar_jpegs, shards=1, per_class=1)
    (tmp_path / "wds" / "zeroshot_classification_templates.txt").write_text("a {c} picture.\n")
    assert open_dataset(f"wds:{tmp_path / 'wds'}", "test").templates == ["a {c} picture."]


def test_folder_named_classes_follow_a_classnames_file_order(tmp_path, cifar_jpegs):
    """Class folders named like the classes map by name, whatever order the names file uses."""
    root = write_folder(tmp_path / "pics", class_members(cifar_jpegs, 1))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(reversed(CIFAR10_CLASSES)))
    dataset = open_dataset(f"imagefolder:{root}", "all", classnames=str(names))
    assert dataset.classnames == list(reversed(CIFAR10_CLASSES))
    for i, sample_id in enumerate(dataset.sample_ids):
        assert dataset.classnames[dataset.labels[i]] == by_folder(sample_id)
