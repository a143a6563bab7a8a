"""Occlusion maps of many images, spread over the processes of a `jax.distributed` job.

    jax.distributed.initialize(...)            # once per process (see docs/scale.md)
    results = occlusion_maps_batch(model, images, "mixed4a_pre_relu", units)

Image i is computed by process i mod P (the same compiled program as `occlusion_maps`, one
image at a time), then every process receives every map (`process_allgather`). Each map is
therefore bitwise the one a single process computes: only who computes it changes. With one
process this is a loop over `occlusion_maps`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from cv_jax.occlusion.maps import occlusion_maps
from cv_jax.occlusion.result import OcclusionResult


def occlusion_maps_batch(model, images: Sequence[np.ndarray], layer: str | None, units=None,
                         **kwargs) -> list[OcclusionResult]:
  """`occlusion_maps(model, image, layer, units, **kwargs)` for every image, across processes.

  All images must have the same shape (so every process runs the same program). Returns the
  results in image order, on every process.
  """
  images = [np.asarray(im) for im in images]
  if not images:
    raise ValueError("no images given")
  if len({im.shape for im in images}) != 1:
    raise ValueError(f"all images must have one shape, got {sorted({im.shape for im in images})}")
  n_proc, pid = jax.process_count(), jax.process_index()
  if n_proc == 1:
    return [occlusion_maps(model, im, layer, units, **kwargs) for im in images]
  from jax.experimental import multihost_utils
  per = -(-len(images) // n_proc)
  mine = list(range(pid, len(images), n_proc))
  # Every process runs `per` maps (the last ones may repeat image 0, discarded) so that all
  # of them take part in the same number of collectives.
  local = [occlusion_maps(model, images[i], layer, units, **kwargs)
           for i in mine + [0] * (per - len(mine))]
  maps = multihost_utils.process_allgather(np.stack([r.maps for r in local]))
  base = multihost_utils.process_allgather(np.stack([r.base for r in local]))
  return [dataclasses.replace(local[0], maps=np.asarray(maps[i % n_proc, i // n_proc]),
                              base=np.asarray(base[i % n_proc, i // n_proc]))
          for i in range(len(images))]
