"""One embedding per image for MIS similarities: a file, DreamSim, or a cv_jax network.

* **File** (`load_embeddings_file`): `.npz` with `embeddings` (n, D) float and `paths` (n,)
  image names, matched to the sweep's image names (exactly, else by the path relative to the
  source folder); or `.npy` (n, D) whose row i is image id i of the sweep. Rows may come in any
  order and may include extra images; every image of a pool must have one.
* **DreamSim** (`dreamsim_embeddings`): the paper's similarity (the DreamSim ensemble, 1,792-d,
  its own per-embedding normalisation), when the `dreamsim` package and its weights are
  installed locally; cv_jax never downloads them.
* **Network** (`network_embeddings`): a cv_jax network's spatially pooled features, by default
  BVLC GoogLeNet's `avgpool0` (the 1,024-d penultimate layer). It is NOT the paper's similarity:
  every output labels it as such.

Each returns an `Embeddings` (array, label, paper_similarity flag, details).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

DREAMSIM_FILES = ("dino_vitb16_pretrain.pth", "open_clip_vitb16_pretrain.pth.tar",
                  "clip_vitb16_pretrain.pth.tar", "dino_vitb16_lora", "open_clip_vitb16_lora",
                  "clip_vitb16_lora")
"""What `dreamsim.dreamsim(cache_dir=...)` checks for before it would download (dreamsim 0.2)."""

NOT_PAPER = ("not the paper's similarity: MIS as published uses DreamSim; scores with another "
             "embedding are not comparable to published MIS values")


@dataclasses.dataclass
class Embeddings:
  """Image embeddings for MIS: row i belongs to image id i of the sweep."""

  array: np.ndarray
  label: str
  paper_similarity: bool
  details: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def note(self) -> str:
    """The label, plus the not-the-paper's-similarity warning where it applies."""
    return self.label if self.paper_similarity else f"{self.label} ({NOT_PAPER})"


def _relative(paths: Sequence[str], root: str | None) -> list[str] | None:
  if not root:
    return None
  out = []
  for p in paths:
    try:
      out.append(os.path.relpath(p, root))
    except ValueError:
      return None
  return out


def load_embeddings_file(path: str | os.PathLike, paths: Sequence[str],
                         needed: np.ndarray | None = None, root: str | None = None,
                         label: str | None = None) -> Embeddings:
  """Read precomputed embeddings and order them by the sweep's image ids.

  Args:
    path: `.npz` (arrays `embeddings` (n, D) and `paths` (n,)) or `.npy` ((n, D), row i = image
      id i).
    paths: the sweep's image names (SweepResult.paths).
    needed: image ids that must have an embedding (the pools); default all.
    root: the source folder, for matching names given relative to it.
    label: how outputs name the similarity (default: "embeddings file <name>").

  Returns an `Embeddings` whose rows follow the sweep's image ids; images outside `needed`
  that the file lacks get NaN rows (the scoring never reads them).
  """
  p = pathlib.Path(path)
  if not p.is_file():
    raise ValueError(f"embeddings file {str(p)!r} does not exist")
  needed = np.arange(len(paths)) if needed is None else np.unique(np.asarray(needed))
  if p.suffix == ".npy":
    arr = np.load(p)
    if arr.ndim != 2:
      raise ValueError(f"{p.name}: embeddings must be (n_images, dim), got shape {arr.shape}")
    if arr.shape[0] != len(paths):
      raise ValueError(f"{p.name} has {arr.shape[0]} rows but the sweep has {len(paths)} images; "
                       "a .npy must have one row per image id, or use an .npz with `paths`")
    out = arr.astype(np.float32)
  elif p.suffix == ".npz":
    with np.load(p, allow_pickle=False) as z:
      if label is None and "label" in z.files:
        label = f"{z['label']} (from {p.name})"
      if "embeddings" not in z.files or "paths" not in z.files:
        raise ValueError(f"{p.name} must hold arrays 'embeddings' (n, D) and 'paths' (n,); "
                         f"found {sorted(z.files)}")
      arr, names = z["embeddings"], [str(s) for s in z["paths"]]
    if arr.ndim != 2 or arr.shape[0] != len(names):
      raise ValueError(f"{p.name}: 'embeddings' {arr.shape} must be (n, D) with n = "
                       f"{len(names)} paths")
    row_of = {n: i for i, n in enumerate(names)}
    if len(row_of) != len(names):
      raise ValueError(f"{p.name}: duplicate entries in 'paths'")
    rel = _relative(paths, root)
    out = np.full((len(paths), arr.shape[1]), np.nan, np.float32)
    for i, name in enumerate(paths):
      r = row_of.get(name)
      if r is None and rel is not None:
        r = row_of.get(rel[i])
      if r is not None:
        out[i] = arr[r]
  else:
    raise ValueError(f"embeddings file must be .npz or .npy, got {p.name!r}")
  missing = needed[~np.isfinite(out[needed]).all(axis=1)]
  if missing.size:
    raise ValueError(f"{p.name} has no (finite) embedding for {missing.size} of the {needed.size} "
                     f"images MIS needs, e.g. {[paths[i] for i in missing[:3]]}")
  return Embeddings(out, label or f"embeddings file {p.name}", paper_similarity=False,
                    details=dict(kind="file", path=str(p.resolve()), dim=int(out.shape[1])))


def network_embeddings(model, source, ids: np.ndarray | None = None, *,
                       layer: str = "avgpool0", batch_size: int = 32, progress: bool = True,
                       log: Callable[[str], None] | None = None) -> Embeddings:
  """Spatially pooled features of `layer` of a cv_jax network, one row per image id.

  Only the images in `ids` (default: all) are run through the network; other rows are NaN.
  Images are `source.load(i)` (the sweep's preprocessing). One compiled program (the last
  batch is padded to the compiled shape).
  """
  import jax
  from tqdm.auto import tqdm

  layer = model.resolve(layer)
  n = len(source)
  ids = np.arange(n) if ids is None else np.unique(np.asarray(ids))

  @jax.jit
  def forward(params, x):
    a = model.apply(params, x, (layer,))[layer]
    return a.mean(axis=(1, 2)) if a.ndim == 4 else a

  params = model.params()
  out = None
  if log:
    log(f"embedding {ids.size} images with {model.name}:{layer} (compiling first)")
  for s in tqdm(range(0, ids.size, batch_size), desc=f"embed {model.name}:{layer}",
                unit="batch", disable=not progress):
    chunk = ids[s:s + batch_size]
    x = np.stack([source.load(int(i)) for i in chunk])
    if len(chunk) < batch_size:
      x = np.concatenate([x, np.repeat(x[-1:], batch_size - len(chunk), axis=0)])
    f = np.asarray(forward(params, x))[:len(chunk)]
    if out is None:
      out = np.full((n, f.shape[1]), np.nan, np.float32)
    out[chunk] = f
  label = f"cv_jax {model.name} {layer} features (spatial mean), cosine similarity"
  return Embeddings(out, label, paper_similarity=False,
                    details=dict(kind="network", model=model.name, layer=layer,
                                 dim=int(out.shape[1]), n_embedded=int(ids.size)))


def _dreamsim_cache(cache_dir: str | None) -> pathlib.Path:
  return pathlib.Path(cache_dir or os.environ.get("DREAMSIM_CACHE", "./models"))


def check_embedding(embedding: str, dreamsim_cache: str | None = None) -> None:
  """Fail early (before any sweep) if an embedding choice cannot work; ValueError/ImportError."""
  if embedding == "network":
    return
  if embedding == "dreamsim":
    try:
      import dreamsim  # noqa: F401
      import torch  # noqa: F401
    except ImportError as e:
      raise ImportError("the DreamSim embedding needs the `dreamsim` package and PyTorch "
                        f"({e}); install them (`pip install dreamsim`) and place its weights "
                        "locally, or pass --embedding=network or a precomputed embeddings file"
                        ) from None
    cache = _dreamsim_cache(dreamsim_cache)
    missing = [f for f in DREAMSIM_FILES if not (cache / f).exists()]
    if missing:
      raise ValueError(f"DreamSim weights are not in {str(cache)!r} (missing "
                       f"{', '.join(missing)}); cv_jax does not download them: unpack DreamSim's "
                       "pretrained checkpoint there or set --dreamsim_cache / $DREAMSIM_CACHE")
    return
  p = pathlib.Path(embedding)
  if p.suffix not in (".npz", ".npy"):
    raise ValueError(f"--embedding must be network, dreamsim or an .npz/.npy embeddings file, "
                     f"got {embedding!r}")
  if not p.is_file():
    raise ValueError(f"embeddings file {embedding!r} does not exist")


def dreamsim_embeddings(source, ids: np.ndarray | None = None, *, cache_dir: str | None = None,
                        device: str | None = None, batch_size: int = 32,
                        progress: bool = True) -> Embeddings:
  """DreamSim ensemble embeddings (the paper's similarity) of the images in `ids`.

  Needs the `dreamsim` package (and PyTorch) and its checkpoint files already in `cache_dir`
  (default `$DREAMSIM_CACHE`, else `./models`, dreamsim's own default); ImportError or
  ValueError with the fix otherwise. The images are the sweep's crops (`source.load`), which
  DreamSim's preprocessing resizes to 224 px bicubic.
  """
  check_embedding("dreamsim", cache_dir)
  import torch
  from dreamsim import dreamsim
  from PIL import Image
  from tqdm.auto import tqdm

  cache = _dreamsim_cache(cache_dir)
  device = device or ("cuda" if torch.cuda.is_available() else "cpu")
  model, preprocess = dreamsim(pretrained=True, device=device, cache_dir=str(cache))
  n = len(source)
  ids = np.arange(n) if ids is None else np.unique(np.asarray(ids))
  out = None
  with torch.no_grad():
    for s in tqdm(range(0, ids.size, batch_size), desc="embed dreamsim", unit="batch",
                  disable=not progress):
      chunk = ids[s:s + batch_size]
      x = torch.cat([preprocess(Image.fromarray(
          np.clip(np.round(source.load(int(i)) * 255), 0, 255).astype(np.uint8)))
                     for i in chunk]).to(device)
      f = model.embed(x).detach().cpu().numpy().reshape(len(chunk), -1)
      if out is None:
        out = np.full((n, f.shape[1]), np.nan, np.float32)
      out[chunk] = f
  return Embeddings(out, "DreamSim ensemble (dino_vitb16, clip_vitb16, open_clip_vitb16), "
                    "cosine similarity", paper_similarity=True,
                    details=dict(kind="dreamsim", cache_dir=str(cache.resolve()),
                                 dim=int(out.shape[1]), device=device))
