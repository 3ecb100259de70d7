"""Extraction: decode each image once, run every backbone, write shards to the feature store."""

from clipfuse.extraction.engine import ExtractionReport, extract, view_name

__all__ = ["ExtractionReport", "extract", "view_name"]
