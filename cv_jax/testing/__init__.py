"""Test and benchmark helpers. `cv_jax.testing.torch_reference` needs PyTorch (not a dependency)."""
