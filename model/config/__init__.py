"""One config dataclass per architecture family, each built from a checkpoint's config.json."""

from model.config.dense import DenseConfig

__all__ = ["DenseConfig"]
