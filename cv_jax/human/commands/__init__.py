"""The `cv-jax human` subcommands (one module each, each with its own absl flags)."""
