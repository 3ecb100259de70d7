"""Data sources: every layout and format opens to the right images and labels; bad input is a
one-line DataError. Expected labels come from the files' own layout, read here independently."""

from __future__ import annotations

import gzip
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import CIFAR10_CLASSES, class_members, shared_path, write_folder, write_tar

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
    source = shared_path("imagenet-sample", "imagenet-sample-1000.tar")
    members = {}
    with tarfile.open(source) as tar:
        for member in tar:
            members[member.name] = tar.extractfile(member).read()
            if len(members) == 5:
                break
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


@pytest.mark.parametrize(
    ("folder", "first_names"),
    [("fashion-mnist", ["T-shirt/top", "Trouser"]), ("mnist", ["0", "1"])],
)
def test_idx(folder, first_names):
    root = shared_path(folder)
    dataset = open_dataset(f"idx:{root}", "test")
    expected = idx_labels(root / "t10k-labels-idx1-ubyte.gz")
    assert len(dataset) == len(expected) == 10000
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
    source = f"imagefolder:{shared_path('cifar10', 'cifar10-test.tar.gz')}"
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


def test_class_count_mismatch(tmp_path, image_folder):
    names = tmp_path / "nine.txt"
    names.write_text("\n".join(CIFAR10_CLASSES[:9]))
    with pytest.raises(
        DataError, match="class-count mismatch.*10 classes in the data, 9 class names"
    ):
        open_dataset(f"imagefolder:{image_folder}", "all", classnames=str(names))
    with pytest.raises(DataError, match="class-count mismatch.*label 9 but only 5 class names"):
        open_dataset(f"idx:{shared_path('mnist')}", "test", classnames=[str(d) for d in range(5)])


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
