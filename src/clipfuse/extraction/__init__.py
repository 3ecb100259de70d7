"""Extraction: decode each image once, run every backbone, write shards to the feature store."""

from clipfuse.extraction.engine import ExtractionReport, extract, view_name
from clipfuse.extraction.options import ExtractOptions

__all__ = ["ExtractOptions", "ExtractionReport", "extract", "view_name"]
