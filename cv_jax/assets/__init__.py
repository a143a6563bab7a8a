"""The demo's public files (weights, sample images): find them, or download and verify them.

See `resolve` for the search order and docs/assets.md for the files, sizes, digests and licences.
"""

from cv_jax.assets.catalog import ASSETS, Asset, get
from cv_jax.assets.download import DownloadError, RemoteFile, fetch, mirror
from cv_jax.assets.resolve import AssetError, ensure, find, home, in_shared, locate, shared_root

__all__ = ["ASSETS", "Asset", "AssetError", "DownloadError", "RemoteFile", "ensure", "fetch",
           "find", "get", "home", "in_shared", "locate", "mirror", "shared_root"]
