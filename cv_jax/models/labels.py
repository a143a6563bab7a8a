"""Class labels for the models' outputs."""

from __future__ import annotations

import os
import pathlib

_HERE = pathlib.Path(__file__).parent


def read_labels(path: str | os.PathLike) -> list[str]:
  """One label per line; a leading WordNet id (`n01440764 tench, ...`) is kept out of the name."""
  labels = []
  for line in pathlib.Path(path).read_text().splitlines():
    line = line.strip()
    if not line:
      continue
    head, _, rest = line.partition(" ")
    labels.append(rest if head.startswith("n") and head[1:].isdigit() and rest else line)
  return labels


def labels_for(model_name: str, n_classes: int, path: str | os.PathLike | None = None) -> list[str]:
  """Labels for a model: an explicit file, else the built-in list where one is known.

  googlenet_bvlc uses the ILSVRC-2012 synset order (`imagenet_synset_words.txt`, shipped).
  inceptionv1's 1008 outputs follow Lucid's "alternate" ImageNet order, which is not shipped:
  without a file the labels are `class_<index>`.
  """
  if path is not None:
    labels = read_labels(path)
  elif model_name == "googlenet_bvlc":
    labels = read_labels(_HERE / "imagenet_synset_words.txt")
  else:
    labels = [f"class_{i}" for i in range(n_classes)]
  if len(labels) < n_classes:
    labels += [f"class_{i}" for i in range(len(labels), n_classes)]
  return labels[:n_classes]
