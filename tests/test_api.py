"""The public API's errors: one-line ClipfuseError subclasses, nothing printed, no exit."""

from __future__ import annotations

from pathlib import Path

import pytest

import clipfuse


def test_api_errors_are_one_line_and_silent(tmp_path: Path, capsys) -> None:
    source = clipfuse.demo_source("cifar10")
    with pytest.raises(clipfuse.BackboneError) as info:
        clipfuse.load_views(["zoo:no-such-model"], source, splits="test", store=tmp_path / "s")
    assert "\n" not in str(info.value)
    with pytest.raises(clipfuse.ClipfuseError, match="no feature store"):
        clipfuse.open_view(tmp_path / "nothing", source, "test")
    with pytest.raises(clipfuse.ClipfuseError, match="unknown demo dataset"):
        clipfuse.demo_source("imagenet")
    with pytest.raises(clipfuse.ClipfuseError, match="not found"):
        clipfuse.load_ensemble(tmp_path / "missing.safetensors")
    with pytest.raises(clipfuse.FitError, match="unknown combiner"):
        clipfuse.make_combiner("nlcc")
    assert capsys.readouterr() == ("", "")


def test_holdout_bundle_records_its_draw_and_fits_an_ensemble(tmp_path: Path) -> None:
    source = clipfuse.demo_source("fashion-mnist")
    train = clipfuse.load_views(["zoo:rn-tiny"], source, splits="train", store=tmp_path, limit=60)
    assert isinstance(train, clipfuse.ViewBundle) and len(train) == 60
    hold = train.holdout(shots=2, seed=3)
    assert len(hold) == 20 and hold.draw.seed == 3 and hold.draw.num_labels == 20
    assert hold.draw == train.holdout(shots=2, seed=3).draw  # seeded
    with pytest.raises(clipfuse.FitError, match="fewer than the 7 requested"):
        train.holdout(shots=7)
    again = clipfuse.open_view(tmp_path, source, "train", limit=60)
    assert again.view == train.view and again.dataset == "fashion-mnist"
    ens = clipfuse.fit_ensemble(train, "calibrated_mean", shots=2, seed=3)
    assert ens.training["holdout_sha256"] == hold.draw.content_hash
    assert ens.training["dataset"] == "fashion-mnist"
    path = ens.save(tmp_path / "cal.safetensors")
    loaded = clipfuse.load_ensemble(path)
    assert loaded.combiner.get_params() == ens.combiner.get_params()
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(clipfuse.DataError, match="junk.png"):
        loaded.predict([tmp_path / "junk.png"])
    skipped = loaded.predict([tmp_path / "junk.png"], skip_unreadable=True)
    assert skipped and "error" in skipped[0]
