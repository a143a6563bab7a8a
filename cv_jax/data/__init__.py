"""Image sources and the paper's preprocessing."""

from cv_jax.data.preprocess import load_image, preprocess_pil
from cv_jax.data.sources import (BatchLoader, FolderSource, IMAGE_EXTENSIONS, Source,
                                 SubsetSource, TFDSSource, open_source)

__all__ = ["load_image", "preprocess_pil", "open_source", "Source", "FolderSource", "TFDSSource",
           "SubsetSource", "BatchLoader", "IMAGE_EXTENSIONS"]
