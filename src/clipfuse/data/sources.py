"""Source strings -> `ImageDataset`. One parser for every command.

imagefolder:PATH   a folder or .tar/.tar.gz (or a folder of such archives) laid out as
                   split/class/image, class/image (split "all"), or flat <class>_<name>.ext
                   files (split "all"; the ImageNet sample's layout)
idx:DIR            MNIST-format IDX files: train-*/t10k-* images and labels (splits train, test)
csv:FILE           rows of path,label[,split] (paths relative to the file; label = index or name)
wds:DIR            WebDataset shards, CLIP_benchmark layout: DIR/SPLIT/*.tar with key.jpg/.png
                   and key.cls, classnames.txt and zeroshot_classification_templates.txt in DIR
parquet:PATH       Hugging Face `datasets` Parquet files (a file, or a folder of split-named files):
                   an image column of encoded bytes, a label column, ClassLabel names in the
                   schema metadata (`data.parquet`)
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from clipfuse.data.catalog import (
    guess_name,
    known_classnames,
    load_classnames_file,
    load_templates_file,
    templates_for,
)
from clipfuse.data.dataset import ImageDataset
from clipfuse.data.readers import (
    IMAGE_EXTS,
    ArrayReader,
    FileReader,
    TarReader,
    index_tar,
    plain_tar,
    read_idx,
)
from clipfuse.errors import DataError
from clipfuse.hashing import file_sha256, value_hash

KINDS = ("imagefolder", "idx", "csv", "wds", "parquet")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _is_archive(path: Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def parse_source(source: str) -> tuple[str, Path]:
    kind, sep, rest = source.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise DataError(
            f"malformed data source {source!r}: expected one of {', '.join(k + ':PATH' for k in KINDS)}"
        )
    path = Path(rest).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {rest!r}")
    return kind, path


def canonical_source(source: str) -> str:
    """The source string with an absolute path: the same data named from another working
    directory is the same source (what a store records)."""
    kind, path = parse_source(source)
    return f"{kind}:{path.resolve()}"


def open_dataset(
    source: str,
    split: str,
    *,
    name: str | None = None,
    classnames: list[str] | str | None = None,
    templates: list[str] | str | None = None,
    limit: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> ImageDataset:
    """Open one split of a source. `classnames`/`templates` may be lists or file paths;
    `image_column`/`label_column` choose among a Parquet file's columns."""
    kind, path = parse_source(source)
    name = name or guess_name(str(path.resolve())) or path.name.split(".")[0]
    columns = None
    if kind == "parquet":
        from clipfuse.data.parquet import parquet_source

        *items, columns = parquet_source(path, split, image_column, label_column)
    elif image_column is not None or label_column is not None:
        raise DataError(
            f"--image-column / --label-column apply to parquet: sources only, not {source!r}"
        )
    else:
        builder = {"imagefolder": _imagefolder, "idx": _idx, "csv": _csv, "wds": _wds}[kind]
        items = builder(path, split)
    # (sample_ids, labels or label names, reader, found classes, fingerprint)
    sample_ids, raw_labels, reader, found_classes, fingerprint = items
    if not sample_ids:
        raise DataError(f"no images for split {split!r} in {source!r}")
    names = _resolve_classnames(classnames, path, name, found_classes)
    labels = _encode_labels(raw_labels, names, found_classes, source)
    dataset = ImageDataset(
        name=name,
        split=split,
        source=source,
        source_fingerprint=fingerprint,
        classnames=names,
        templates=_resolve_templates(templates, path, name),
        labels=labels,
        sample_ids=sample_ids,
        reader=reader,
        positions=np.arange(len(sample_ids), dtype=np.int64),
        columns=columns,
    )
    return dataset.subset(limit)


def _given(explicit, path: Path, filename: str, load) -> list[str] | None:
    """An explicit list or file (``load`` reads it), else ``filename`` beside the data, else None."""
    if isinstance(explicit, (str, Path)):
        return load(explicit)
    if explicit:
        return list(explicit)
    beside = (path if path.is_dir() else path.parent) / filename
    return load(beside) if beside.is_file() else None


def _resolve_classnames(explicit, path: Path, name: str, found: list[str] | None) -> list[str]:
    given = _given(explicit, path, "classnames.txt", load_classnames_file)
    if given:
        return given
    known = known_classnames(name)
    if known and (found is None or len(found) == len(known)):
        return known
    if found:
        return [c.replace("_", " ") for c in found]
    raise DataError(f"no class names for {str(path)!r}: pass --classnames FILE (one name per line)")


def _resolve_templates(explicit, path: Path, name: str) -> list[str]:
    custom = "zeroshot_classification_templates.txt"
    return _given(explicit, path, custom, load_templates_file) or templates_for(name)


def _encode_labels(raw, classnames: list[str], found: list[str] | None, source: str) -> np.ndarray:
    """Labels as indices; folder class names map through their sorted order."""
    if found is not None:
        if len(found) != len(classnames):
            raise DataError(
                f"class-count mismatch in {source!r}: {len(found)} classes in the data, {len(classnames)} class names"
            )
        by_name = set(found) == set(classnames)  # folders named like the classes: map by name
        lookup = {c: (classnames.index(c) if by_name else k) for k, c in enumerate(found)}
        labels = np.array([lookup[r] for r in raw], dtype=np.int64)
    else:
        labels = np.asarray(raw, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classnames)):
        raise DataError(
            f"class-count mismatch in {source!r}: label {int(labels.max())} but only {len(classnames)} class names"
        )
    return labels


def _split_members(members: list[str], split: str, source: Path):
    """(ids, class folder names) of image members for `split` in any supported layout."""
    images = [m for m in members if Path(m).suffix.lower() in IMAGE_EXTS]
    depth = {len(Path(m).parts) for m in images}
    if not images:
        return [], []
    if max(depth) >= 3:
        chosen = [m for m in images if len(Path(m).parts) >= 3 and Path(m).parts[-3] == split]
        if not chosen:
            splits = sorted({Path(m).parts[-3] for m in images if len(Path(m).parts) >= 3})
            raise DataError(f"split {split!r} not in {str(source)!r} (splits: {', '.join(splits)})")
        return chosen, [Path(m).parts[-2] for m in chosen]
    if split != "all":
        raise DataError(f"{str(source)!r} has no split folders; use --split all")
    if max(depth) == 2:
        return images, [Path(m).parts[-2] for m in images]
    return images, [Path(m).stem.split("_", 1)[0] for m in images]


def _imagefolder(path: Path, split: str):
    archives = (
        [path]
        if _is_archive(path)
        else sorted(p for p in path.iterdir() if _is_archive(p))
        if path.is_dir()
        else []
    )
    if not path.is_dir() and not archives:
        raise DataError(f"imagefolder source must be a folder or a .tar/.tar.gz: {str(path)!r}")
    if archives:
        plain = [plain_tar(a) for a in archives]
        member_loc: dict[str, tuple[int, int, int]] = {}
        for a, tar in enumerate(plain):
            for member, (offset, size) in index_tar(tar).items():
                member_loc[member] = (a, offset, size)
        ids, classes = _split_members(sorted(member_loc), split, path)
        reader = TarReader([str(p) for p in plain], [member_loc[m] for m in ids])
        fingerprint = value_hash([file_sha256(a) for a in archives])
    else:
        files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        ids, classes = _split_members(files, split, path)
        reader = FileReader([str(path / m) for m in ids])
        fingerprint = _images_fingerprint(path, files)
    found = sorted(set(classes))
    return ids, classes, reader, found, fingerprint


def _images_fingerprint(path: Path, files: list[str]) -> str:
    """Names and sizes of the image files only: a README, a classnames.txt or a `.DS_Store`
    beside the images must not invalidate features extracted from them (issue 23). Folders of
    images only hash as they always did, so existing stores stay valid."""
    images = [m for m in files if Path(m).suffix.lower() in IMAGE_EXTS]
    return value_hash([(m, (path / m).stat().st_size) for m in images])


def _idx(path: Path, split: str):
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"IDX sources have splits train and test, not {split!r}")

    def find(kind: str) -> Path:
        hits = sorted(path.glob(f"{prefix}-{kind}-idx*-ubyte*"))
        if not hits:
            raise DataError(
                f"no {prefix}-{kind}-idx*-ubyte[.gz] file in {str(path)!r} (split {split!r})"
            )
        return hits[0]

    images_file, labels_file = find("images"), find("labels")
    images, labels = read_idx(images_file), read_idx(labels_file)
    if len(images) != len(labels):
        raise DataError(
            f"{images_file.name} has {len(images)} images but {labels_file.name} {len(labels)} labels"
        )
    ids = [f"{split}/{i:05d}" for i in range(len(images))]
    fingerprint = value_hash([file_sha256(images_file), file_sha256(labels_file)])
    return ids, labels.astype(np.int64), ArrayReader(images), None, fingerprint


def _csv(path: Path, split: str):
    rows = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#") or row[0] == "path":
                continue
            if len(row) < 2:
                raise DataError(f"{str(path)!r}: each row needs path,label[,split]; got {row!r}")
            rows.append(row)
    chosen = [r for r in rows if (r[2] if len(r) > 2 else "all") == split]
    if rows and not chosen:
        splits = sorted({r[2] if len(r) > 2 else "all" for r in rows})
        raise DataError(f"split {split!r} not in {str(path)!r} (splits: {', '.join(splits)})")
    paths = [str((path.parent / r[0]).resolve()) for r in chosen]
    raw = [r[1] for r in chosen]
    numeric = all(v.lstrip("-").isdigit() for v in raw)
    found = None if numeric else sorted(set(raw))
    labels = [int(v) for v in raw] if numeric else raw
    fingerprint = value_hash(
        [file_sha256(path)] + [(p, Path(p).stat().st_size) for p in paths if Path(p).exists()]
    )
    return [r[0] for r in chosen], labels, FileReader(paths), found, fingerprint


def _wds(path: Path, split: str):
    shards = sorted((path / split).glob("*.tar")) if path.is_dir() else [path]
    if not shards:
        raise DataError(f"no WebDataset shards in {str(path / split)!r}")
    by_key: dict[str, dict[str, tuple[int, int, int]]] = defaultdict(dict)
    for s, shard in enumerate(shards):
        for member, (offset, size) in index_tar(shard).items():
            key, _, ext = member.partition(".")
            by_key[f"{s}/{key}"][ext.lower()] = (s, offset, size)
    keys = sorted(
        k
        for k, exts in by_key.items()
        if "cls" in exts and ({"jpg", "jpeg", "png", "webp"} & set(exts))
    )
    image_ext = [next(e for e in ("jpg", "jpeg", "png", "webp") if e in by_key[k]) for k in keys]
    label_reader = TarReader([str(s) for s in shards], [by_key[k]["cls"] for k in keys])
    labels = [_wds_label(label_reader.read(i), keys[i], shards) for i in range(len(keys))]
    reader = TarReader([str(s) for s in shards], [by_key[k][e] for k, e in zip(keys, image_ext)])
    fingerprint = value_hash([file_sha256(s) for s in shards])
    return keys, labels, reader, None, fingerprint


def _wds_label(payload: bytes, key: str, shards: list[Path]) -> int:
    """A `.cls` member: one integer class index (multi-label `.npy` sets are not classification)."""
    try:
        return int(payload.decode().strip())
    except (UnicodeDecodeError, ValueError):
        shard, name = key.split("/", 1)
        raise DataError(
            f"{name}.cls in {str(shards[int(shard)])!r} is not an integer class index: {payload[:40]!r}"
        ) from None


def expand_paths(paths: list[str]) -> list[str]:
    """Image files and the images inside folders (sorted), in the order given; a path that does
    not exist is a DataError (a typo, not a bad image)."""
    files: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files.extend(str(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            files.append(str(p))
        else:
            raise DataError(f"image or folder not found: {raw!r}")
    return files


def files_dataset(paths: list[str], classnames: list[str] | None = None) -> ImageDataset:
    """Loose image files or folders of them (for `clipfuse predict`); labels are unknown (-1)."""
    files = expand_paths(paths)
    if not files:
        raise DataError(f"no image files in {', '.join(paths)}")
    return ImageDataset(
        name="files",
        split="all",
        source="files",
        source_fingerprint=value_hash(files),
        classnames=list(classnames or []),
        templates=[],
        labels=np.full(len(files), -1, dtype=np.int64),
        sample_ids=files,
        reader=FileReader(files),
        positions=np.arange(len(files), dtype=np.int64),
    )
