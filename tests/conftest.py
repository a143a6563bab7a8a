"""Shared fixtures: where ../shared is, the real BVLC weights and sample images (skip if absent)."""

import os
import pathlib

import pytest

# Under CI=true a skipped test is a failure (cv_jax/testing/ci_no_skips.py).
pytest_plugins = ["cv_jax.testing.ci_no_skips"]

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", REPO.parent / "shared"))
BVLC_DIR = SHARED / "models" / "bvlc_googlenet"
BVLC_NPZ = BVLC_DIR / "bvlc_googlenet_blobs.npz"
SAMPLES = SHARED / "data" / "imagenet_samples"


def need(path: pathlib.Path, what: str) -> pathlib.Path:
  if not path.exists():
    pytest.skip(f"{what} not found at {path} (set CV_JAX_SHARED to the shared folder)")
  return path


@pytest.fixture(scope="session")
def bvlc_npz():
  return need(BVLC_NPZ, "BVLC GoogLeNet weights")


@pytest.fixture(scope="session")
def bvlc_model(bvlc_npz):
  from cv_jax import models
  return models.load("googlenet_bvlc", bvlc_npz)


@pytest.fixture(scope="session")
def sample_images():
  """Sorted paths of the ImageNet sample photos (one per class, in class order)."""
  need(SAMPLES, "ImageNet sample images")
  return sorted(SAMPLES.glob("*.JPEG"))


@pytest.fixture(scope="module")
def highest_precision():
  """Full float32 matmul/conv precision in JAX and one torch thread, for reference comparisons."""
  import jax
  old = jax.config.jax_default_matmul_precision
  jax.config.update("jax_default_matmul_precision", "highest")
  try:
    import torch
    torch.set_num_threads(1)
  except ImportError:
    pass
  yield
  jax.config.update("jax_default_matmul_precision", old)
