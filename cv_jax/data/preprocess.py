"""The paper's preprocessing: shorter side to 256 (PIL bilinear), centre crop 224, RGB in [0, 1].

This is torchvision's `Resize(256)`, `CenterCrop(224)`, `ToTensor()` re-done with PIL alone
(no torch), in NHWC float32.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def preprocess_pil(image: Image.Image, resize: int = 256, crop: int = 224) -> np.ndarray:
  """Resize the shorter side to `resize` (bilinear), centre-crop `crop`; (crop, crop, 3) float32."""
  image = image.convert("RGB")
  w, h = image.size
  if resize:
    # torchvision.transforms.Resize(int): the shorter side becomes `resize`, the longer side
    # int(resize * long / short) (truncated).
    if w <= h:
      size = (resize, int(resize * h / w))
    else:
      size = (int(resize * w / h), resize)
    if size != (w, h):
      image = image.resize(size, Image.BILINEAR)
    w, h = image.size
  if crop:
    if w < crop or h < crop:
      raise ValueError(f"image of size {w}x{h} is smaller than the crop {crop}")
    # torchvision.transforms.CenterCrop: offsets round((size - crop) / 2).
    left = int(round((w - crop) / 2.0))
    top = int(round((h - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
  return np.asarray(image, dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike, resize: int = 256, crop: int = 224) -> np.ndarray:
  """Read an image file and apply `preprocess_pil`. Raises OSError/ValueError on bad files."""
  with Image.open(path) as im:
    im.load()
    return preprocess_pil(im, resize, crop)
