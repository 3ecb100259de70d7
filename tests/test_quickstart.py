"""The README's Python quickstart runs as written, from a directory of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_block() -> str:
    """The first ```python block of the README's "Python API" section."""
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README has no python block under 'Python API'"
    return match.group(1)


def test_quickstart_is_short_and_complete() -> None:
    code = quickstart_block()
    assert len(code.strip().splitlines()) <= 15
    for verb in ("load_views", "fit_ensemble", "describe_fit", ".score(", ".save(", "load_ensemble",
                 "predict"):  # fmt: skip
        assert verb in code, verb


@pytest.mark.slow
def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart_block())
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    score_line, prediction = out.stdout.strip().splitlines()[-2:]
    top1 = float(re.search(r"top-1 (\d\.\d+) on 2000 test images", score_line).group(1))
    assert 0.3 < top1 < 0.8  # ten classes: far above chance (0.1), zoo-sized
    assert "'label':" in prediction and "'probability':" in prediction
    assert (
        "fitted on 40 labels (4-shot, seed 0) + 460 unlabelled images" in out.stdout
    )  # describe_fit: what `clipfuse fit` prints
    assert (tmp_path / "fused.safetensors").is_file() and (tmp_path / "clipfuse-store").is_dir()
