"""Image perturbations for robustness (docs/method.md §5), at graded severities 1..5.

Applied to the decoded image before each backbone's own preprocessing, so every backbone sees
the same corrupted pixels. Random choices (rotation sign, noise) are seeded by (seed, sample
position): the same key always gives the same images, which is what lets perturbed features be
cached under a key like `noise-s3-seed0`.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from clipfuse.errors import ClipfuseError

SEVERITIES = (1, 2, 3, 4, 5)


def _rotate(img, s, rng):
    angle = [3, 6, 9, 12, 15][s - 1] * (1 if rng.random() < 0.5 else -1)
    return img.rotate(angle, resample=Image.BILINEAR)


def _rotate90(img, s, rng):
    return img.transpose(Image.ROTATE_90)


def _flip(img, s, rng):
    return ImageOps.mirror(img)


def _grayscale(img, s, rng):
    return ImageOps.grayscale(img).convert("RGB")


def _brightness(img, s, rng):
    return ImageEnhance.Brightness(img).enhance([1.3, 1.6, 1.9, 2.2, 2.5][s - 1])


def _contrast(img, s, rng):
    return ImageEnhance.Contrast(img).enhance([0.7, 0.5, 0.35, 0.25, 0.15][s - 1])


def _blur(img, s, rng):
    scale = max(img.size) / 224  # radii are defined for a 224-pixel image
    return img.filter(ImageFilter.GaussianBlur([0.5, 1.0, 1.5, 2.0, 3.0][s - 1] * scale))


def _noise(img, s, rng):
    sigma = [0.04, 0.08, 0.12, 0.18, 0.26][s - 1] * 255
    arr = np.asarray(img, dtype=np.float32) + rng.normal(
        0, sigma, size=(img.size[1], img.size[0], 3)
    )
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _jpeg(img, s, rng):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=[60, 40, 25, 15, 8][s - 1])
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _downup(img, s, rng):
    factor = [0.75, 0.5, 0.35, 0.25, 0.15][s - 1]
    small = img.resize(
        (max(1, round(img.size[0] * factor)), max(1, round(img.size[1] * factor))), Image.BILINEAR
    )
    return small.resize(img.size, Image.BILINEAR)


PERTURBATIONS: dict[str, Callable] = {
    "rotate": _rotate,
    "rotate90": _rotate90,
    "flip": _flip,
    "grayscale": _grayscale,
    "brightness": _brightness,
    "contrast": _contrast,
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "downup": _downup,
}
UNGRADED = {"rotate90", "flip", "grayscale"}  # one severity only


class Perturbation:
    """A picklable (name, severity, seed) perturbation: `p(image, position) -> image`."""

    def __init__(self, name: str, severity: int = 3, seed: int = 0):
        if name not in PERTURBATIONS:
            raise ClipfuseError(
                f"unknown perturbation {name!r} (known: {', '.join(PERTURBATIONS)})"
            )
        if severity not in SEVERITIES:
            raise ClipfuseError(f"severity must be one of {SEVERITIES}, got {severity}")
        self.name = name
        self.severity = 1 if name in UNGRADED else int(severity)
        self.seed = int(seed)

    @property
    def key(self) -> str:
        """Part of the store view key, so perturbed features are cached like any others."""
        return f"{self.name}-s{self.severity}-seed{self.seed}"

    def __call__(self, image: Image.Image, position: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, int(position)])
        return PERTURBATIONS[self.name](image, self.severity, rng)

    def __repr__(self) -> str:
        return f"Perturbation({self.key})"


def perturbation_grid(names: list[str], severities: list[int], seed: int = 0) -> list[Perturbation]:
    """Every (name, severity), with ungraded perturbations listed once."""
    grid: list[Perturbation] = []
    for name in names:
        levels = [1] if name in UNGRADED else severities
        grid.extend(Perturbation(name, s, seed) for s in levels)
    return grid
