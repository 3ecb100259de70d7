"""Errors a user can cause and fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class ClipfuseError(Exception):
    """Base class: bad input or an unusable resource, explained in one line."""


class BackboneError(ClipfuseError):
    """Unknown backbone spec, missing weights, or weights that cannot be fetched offline."""


class DataError(ClipfuseError):
    """Malformed source string, missing file, empty dataset, class-count mismatch."""


class StoreError(ClipfuseError):
    """Feature store problems: missing entries, provenance mismatch, incomplete extraction."""


class ProvenanceMismatchError(StoreError):
    """An existing store entry was made from different weights, preprocessing or data."""


class FitError(ClipfuseError, ValueError):
    """A combiner cannot be fitted: too few shots, wrong shapes, mismatched class counts."""


class NotFittedError(FitError, AttributeError):
    """A combiner was asked to predict, score or save before ``fit`` (scikit-learn's name)."""


class DeprecatedNameWarning(FutureWarning):
    """A deprecated combiner name or method group was used; the message names the replacement."""
