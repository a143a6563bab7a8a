"""`cv-jax classify` and `cv-jax activations`: run a model on image files.

    cv-jax classify --model=googlenet_bvlc --weights=bvlc_googlenet_blobs.npz a.jpg b.jpg
    cv-jax activations --model=googlenet_bvlc --weights=... --layers=mixed4a_pre_relu,softmax2 \
        --output=acts.npz a.jpg b.jpg

Images get the paper's preprocessing (shorter side 256, centre crop 224) unless --resize/--crop
say otherwise.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
from absl import flags

from cv_jax.cli_support import UsageError, check_files, load_model

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "googlenet_bvlc", "Model name (see cv_jax.models.available()).")
flags.DEFINE_string("weights", None, "Weights file or cv_jax checkpoint (default: $CV_JAX_HOME, then download).")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
flags.DEFINE_integer("resize", 256, "Shorter side is resized to this (0: no resize).")
flags.DEFINE_integer("crop", 224, "Centre crop size (0: no crop).")
flags.DEFINE_integer("top", 5, "classify: number of labels printed per image.")
flags.DEFINE_string("labels", None, "classify: label file, one class per line (default: built in).")
flags.DEFINE_list("layers", ["softmax2"], "activations: layer names (Lucid names; Caffe aliases for BVLC).")
flags.DEFINE_string("output", "activations.npz", "activations: output .npz path.")
flags.DEFINE_boolean("spatial_mean", False, "activations: store the spatial mean of spatial layers.")


def _batches(paths: Sequence[str], batch_size: int, resize: int, crop: int) -> Iterator[np.ndarray]:
  from cv_jax.data import load_image
  for i in range(0, len(paths), batch_size):
    imgs = []
    for p in paths[i:i + batch_size]:
      try:
        imgs.append(load_image(p, resize, crop))
      except (OSError, ValueError) as e:
        raise UsageError(f"cannot read image {p}: {e}") from e
    if len({im.shape for im in imgs}) > 1:
      raise UsageError("images have different sizes; use --crop to give them one size")
    yield np.stack(imgs)


def run_model(model_name: str, weights: str | None, paths: Sequence[str], layers: Sequence[str],
              batch_size: int = 32, resize: int = 256, crop: int = 224,
              spatial_mean: bool = False, progress: bool = True) -> dict[str, np.ndarray]:
  """Activations of `layers` for image files, batched and jit-compiled once per batch shape."""
  from tqdm import tqdm

  from cv_jax.models import data_parallel

  if not paths:
    raise UsageError("no images given; pass image files as arguments")
  check_files(paths)
  model = load_model(model_name, weights)
  layers = [model.resolve(l) for l in layers]

  def batch_forward(params, x):
    acts = model.apply(params, x, layers)
    if spatial_mean:
      acts = {k: v.mean(axis=(1, 2)) if v.ndim == 4 else v for k, v in acts.items()}
    return acts

  forward = data_parallel(batch_forward)  # a slice per device (per core with --cpu_devices)

  params = model.params()
  chunks: dict[str, list[np.ndarray]] = {l: [] for l in layers}
  n_batches = -(-len(paths) // batch_size)
  for x in tqdm(_batches(paths, batch_size, resize, crop), total=n_batches, unit="batch",
                disable=not progress or n_batches < 2, desc=model_name):
    n = len(x)
    if n_batches > 1 and n < batch_size:
      # Pad the last batch to the compiled shape instead of compiling a second program.
      x = np.concatenate([x, np.repeat(x[-1:], batch_size - n, axis=0)])
    out = forward(params, x)
    for l in layers:
      chunks[l].append(np.asarray(out[l])[:n])
  return {l: np.concatenate(v) for l, v in chunks.items()}


def main_classify(argv: Sequence[str]) -> None:
  """Print the top labels of each image."""
  from cv_jax.models.labels import labels_for
  paths = list(argv[1:])
  probs = run_model(FLAGS.model, FLAGS.weights, paths, ["softmax2"], FLAGS.batch_size,
                    FLAGS.resize, FLAGS.crop)["softmax2"]
  labels = labels_for(FLAGS.model, probs.shape[1], FLAGS.labels)
  for path, p in zip(paths, probs):
    print(path)
    for i in np.argsort(-p)[:FLAGS.top]:
      print(f"  {p[i]:7.4f}  {i:4d}  {labels[i]}")


def main_activations(argv: Sequence[str]) -> None:
  """Save the requested layers' activations (N, ...) to an .npz, with the image paths."""
  paths = list(argv[1:])
  acts = run_model(FLAGS.model, FLAGS.weights, paths, FLAGS.layers, FLAGS.batch_size,
                   FLAGS.resize, FLAGS.crop, FLAGS.spatial_mean)
  out = os.path.abspath(FLAGS.output)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  np.savez(out, paths=np.asarray(paths), **{k.replace("/", "__"): v for k, v in acts.items()})
  shapes = ", ".join(f"{k} {v.shape}" for k, v in acts.items())
  print(f"wrote {out}: {shapes}")
