"""Dataset adapters: every dataset becomes one metadata DataFrame (wildlife-datasets convention)
plus, for embedding-level datasets, a feature matrix in the same row order."""

from alreid.datasets.base import DatasetAdapter, ReidDataset, load_dataset, validate_metadata

__all__ = ["DatasetAdapter", "ReidDataset", "load_dataset", "validate_metadata"]
