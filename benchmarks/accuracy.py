"""Top-1 / top-5 accuracy of BVLC GoogLeNet on the ImageNet sample folder (one image per class).

    PYTHONPATH=. python benchmarks/accuracy.py [--weights=...] [--images=...] [--batch=50] [--torch]

Images are sorted by file name; the i-th image belongs to class i (synset order of
synset_words.txt). Preprocessing is the paper's: shorter side 256 (PIL bilinear), centre crop 224
(`cv_jax.data.load_image`). Expected (README of the shared weights): top-1 74.1 %, top-5 92.9 %.
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from tqdm import tqdm

from cv_jax import models
from cv_jax.data import load_image

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

FLAGS = flags.DEFINE_string("weights", str(SHARED / "models/bvlc_googlenet/bvlc_googlenet_blobs.npz"),
                            "BVLC GoogLeNet weights (any format models.load accepts).")
IMAGES = flags.DEFINE_string("images", str(SHARED / "data/imagenet_samples"),
                             "Folder of 1000 images, one per class, sorted name order = class order.")
BATCH = flags.DEFINE_integer("batch", 50, "Images per forward pass.")
LIMIT = flags.DEFINE_integer("limit", 0, "Use only the first N images (0 = all).")
EXPECT = flags.DEFINE_string("expect", "74.1,92.9",
                             "Expected top-1,top-5 in percent (checked only with all 1000 images).")
TOL = flags.DEFINE_float("tol", 0.5, "Allowed deviation from --expect in percentage points.")
TORCH = flags.DEFINE_bool("torch", False, "Also score the independent PyTorch port "
                          "(cv_jax.testing.torch_reference.CaffeGoogLeNet) on the same images.")


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """Boolean per row: is the label among the k largest logits."""
  top = np.argsort(-logits, axis=1)[:, :k]
  return (top == labels[:, None]).any(axis=1)


def evaluate(model: models.Network, paths: list[pathlib.Path], batch: int, ref=None) -> dict:
  """Logits of every image (batched, jit) and top-1/top-5 accuracy; labels = position in `paths`.

  With `ref` (a torch_reference module) its logits on the same batches are scored too.
  """
  fwd = jax.jit(lambda p, x: model.apply(p, x, ("softmax2_pre_activation",))["softmax2_pre_activation"])
  params = model.params()
  logits, ref_logits, ref_time = [], [], 0.0
  for start in tqdm(range(0, len(paths), batch), desc="batches"):
    chunk = paths[start:start + batch]
    x = np.stack([load_image(p) for p in chunk])
    if len(chunk) < batch:  # keep one static shape under jit
      x = np.concatenate([x, np.zeros((batch - len(chunk),) + x.shape[1:], x.dtype)])
    logits.append(np.asarray(fwd(params, jnp.asarray(x)))[: len(chunk)])
    if ref is not None:
      import torch
      from cv_jax.testing.torch_reference import to_nchw
      t0 = time.perf_counter()
      with torch.inference_mode():
        out = ref(to_nchw(x[: len(chunk)]), ("softmax2_pre_activation",))
      ref_logits.append(out["softmax2_pre_activation"].numpy())
      ref_time += time.perf_counter() - t0
  logits = np.concatenate(logits)
  labels = np.arange(len(paths))
  res = {"logits": logits, "top1": 100 * topk_correct(logits, labels, 1).mean(),
         "top5": 100 * topk_correct(logits, labels, 5).mean()}
  if ref is not None:
    r = np.concatenate(ref_logits)
    res["ref"] = {"top1": 100 * topk_correct(r, labels, 1).mean(),
                  "top5": 100 * topk_correct(r, labels, 5).mean(),
                  "same_top1": float((r.argmax(1) == logits.argmax(1)).mean()),
                  "rel_err": float(np.linalg.norm(r - logits) / np.linalg.norm(r)),
                  "time": ref_time}
  return res


def main(argv):
  del argv
  paths = sorted(p for p in pathlib.Path(IMAGES.value).iterdir()
                 if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
  if not paths:
    raise SystemExit(f"no images in {IMAGES.value}")
  n_all = len(paths)
  if LIMIT.value:
    paths = paths[: LIMIT.value]
  t0 = time.perf_counter()  # wall time of the cv_jax path: load, decode, preprocess, forward
  model = models.load("googlenet_bvlc", FLAGS.value)
  ref = None
  if TORCH.value:
    from cv_jax.testing.torch_reference import CaffeGoogLeNet
    ref = CaffeGoogLeNet(FLAGS.value)
  res = evaluate(model, paths, BATCH.value, ref)
  wall = time.perf_counter() - t0 - (res["ref"]["time"] if ref is not None else 0.0)
  print("\n| model | images | top-1 % | top-5 % | wall s | device |")
  print("|---|---|---|---|---|---|")
  print(f"| googlenet_bvlc | {len(paths)} | {res['top1']:.1f} | {res['top5']:.1f} | {wall:.1f} | "
        f"{jax.devices()[0].device_kind} |")
  if ref is not None:
    r = res["ref"]
    print(f"| torch CaffeGoogLeNet (reference) | {len(paths)} | {r['top1']:.1f} | {r['top5']:.1f} | "
          f"{r['time']:.1f} (forward only) | cpu |")
    print(f"same top-1 class on {100 * r['same_top1']:.1f} % of images; logits rel. L2 diff "
          f"{r['rel_err']:.1e}")
  if len(paths) == n_all == 1000 and EXPECT.value:
    e1, e5 = (float(v) for v in EXPECT.value.split(","))
    ok = abs(res["top1"] - e1) <= TOL.value and abs(res["top5"] - e5) <= TOL.value
    print(f"expected {e1:.1f} / {e5:.1f} within {TOL.value} points: {'OK' if ok else 'MISMATCH'}")
    if not ok:
      sys.exit(1)


if __name__ == "__main__":
  app.run(main)
