"""Data: source strings -> ImageDataset, class names and prompt templates by dataset name."""

from clipfuse.data.catalog import list_datasets, templates_for
from clipfuse.data.dataset import ImageDataset
from clipfuse.data.sources import open_dataset

__all__ = ["ImageDataset", "list_datasets", "open_dataset", "templates_for"]
