"""CLI: the mean magnitude spectrum of an image folder, for MACO (`config.spectrum`).

    cv-jax spectrum --source=DIR [--size=256] [--out=spectrum.npz]

Writes an .npz (uint16-quantised log-magnitude, compact) or, for an --out ending in .npy, a
float32 (3, size, size//2 + 1) array like Xplique's `spectrum_decorrelated.npy`.
"""

from __future__ import annotations

from absl import flags

from cv_jax import cli_support

_SOURCE = flags.DEFINE_string("source", None, "folder of images (jpg, png, ...)")
_SIZE = flags.DEFINE_integer("size", 256, "spectrum size S (images: shorter side S, centre crop)")
_OUT = flags.DEFINE_string("out", "spectrum.npz", "output file (.npz or .npy)")
_DECORRELATE = flags.DEFINE_bool("decorrelate", True, "express colours in MACO's decorrelated "
                                 "basis first (as the shipped default)")


def main(argv: list[str]) -> None:
  """Compute and save the spectrum (errors: `cli_support`'s one line)."""
  from cv_jax.featvis import spectrum
  if len(argv) > 1:
    raise cli_support.UsageError(f"unexpected arguments {argv[1:]}; give the folder as "
                                 "--source=DIR")
  if not _SOURCE.value:
    raise cli_support.UsageError("give an image folder with --source=DIR")
  if _SIZE.value < 8 or _SIZE.value % 2:
    raise cli_support.UsageError(f"--size must be even and at least 8, got {_SIZE.value}")
  n = len(spectrum.list_images(_SOURCE.value))
  m = spectrum.compute_spectrum(_SOURCE.value, _SIZE.value, _DECORRELATE.value, progress=True)
  path = spectrum.save_spectrum(_OUT.value, m, source=str(_SOURCE.value), n_images=n)
  print(f"wrote {path}: shape {m.shape}, {n} images")


if __name__ == "__main__":
  cli_support.run("spectrum", main)
