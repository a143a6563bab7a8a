"""The paper's blur reference: an image blurred everywhere except its most activating window."""

from __future__ import annotations

import numpy as np

from cv_jax.models import Network, Unit
from cv_jax.occlusion.blur import gaussian_blur
from cv_jax.occlusion.maps import occlusion_maps
from cv_jax.occlusion.occluder import check_image, occlude
from cv_jax.occlusion.result import extreme_positions


def blur_reference(model: Network, image, unit, *, size: int | float = 90, stride: int = 2,
                   ksize: int = 21, sigma: float = 3.5, chunk: int | None = None,
                   progress: bool = False, incremental: bool = True):
  """The paper's blur reference (§3.4): `image` blurred everywhere except one sharp window.

  The whole image is blurred (separable `ksize` Gaussian, `sigma`, reflect-101 borders, OpenCV's
  GaussianBlur); for every window position on the occluder grid the sharp pixels are pasted
  back and the unit's activation is computed; the window with the largest activation (ties to the
  first row-major index) is kept. Returns (image, (row, col) pixel start of the window, activation).
  """
  img = check_image(image)
  u = Unit.parse(unit, model)
  blurred = np.asarray(gaussian_blur(img, ksize, sigma))
  res = occlusion_maps(model, blurred, u.layer, [u], size=size, stride=stride, fill=img,
                       chunk=chunk, progress=progress, incremental=incremental)
  _, (i, j) = extreme_positions(res.maps[..., 0])
  r, c = int(res.starts[0][i]), int(res.starts[1][j])
  out = occlude(blurred, r, c, res.size, fill=img)
  return out, (r, c), float(res.maps[i, j, 0])
