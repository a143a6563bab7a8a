"""How activating are the synthetic images? For the paper's 18 units on BVLC GoogLeNet:

    ratio = activation of the final visualisation / max activation over the natural images

(activation = the unit's spatial-mean pre-ReLU channel, as the paper's; natural images = the
1000 ImageNet samples in ../shared/data/imagenet_samples with the paper's preprocessing). The
paper's premise is that synthetic images are extremely activating (ratio > 1).

    PYTHONPATH=. python benchmarks/featvis_quality.py --steps 2561 --batch 9      # the paper
    PYTHONPATH=. python benchmarks/featvis_quality.py --steps 128 --batch 1       # CPU-sized

Writes docs/figures/featvis_contact_sheet.png and featvis_quality.md (the table) to --out.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from cv_jax import data, featvis, models, paper_units as paper
from cv_jax.featvis.outputs import contact_sheet

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", ROOT.parent / "shared"))


def natural_max(model, us, paths, batch=50):
  """Max over images of each unit's spatial-mean activation (and its argmax path)."""
  layers = sorted({u.layer for u in us})
  idx = {l: jnp.asarray([u.channel for u in us if u.layer == l]) for l in layers}
  f = jax.jit(lambda p, x: {l: jnp.mean(a[..., idx[l]], axis=(1, 2))
                            for l, a in model.apply(p, x, layers).items()})
  params = model.params()
  best = {str(u): (-np.inf, None) for u in us}
  from tqdm import tqdm
  for s in tqdm(range(0, len(paths), batch), desc="natural images"):
    chunk = paths[s:s + batch]
    x = np.stack([data.load_image(p) for p in chunk])
    if len(chunk) < batch:
      x = np.concatenate([x, np.repeat(x[-1:], batch - len(chunk), 0)])
    out = {l: np.asarray(v)[:len(chunk)] for l, v in f(params, jnp.asarray(x)).items()}
    for l in layers:
      for j, u in enumerate([u for u in us if u.layer == l]):
        k = int(np.argmax(out[l][:, j]))
        if out[l][k, j] > best[str(u)][0]:
          best[str(u)] = (float(out[l][k, j]), str(chunk[k]))
  return best


def report(us, act, nat_v, args, dt, pad):
  """Markdown table. A natural max <= 0 makes the ratio meaningless; then 'exceeds' is shown."""
  lines = [f"BVLC GoogLeNet, zimmermann2021 preset with steps={args.steps}, batch={args.batch}, "
           f"size={args.size} (canvas {args.size + 2 * pad}); natural max over "
           f"{args.n_images} ImageNet samples; render wall time {dt:.0f}s (incl. compile).", "",
           "| unit (BVLC) | branch address | natural max | synthetic (min / mean over batch) | ratio min / mean |",
           "|---|---|---|---|---|"]
  above = 0
  ratios = []
  for i, u in enumerate(us):
    a = act[i]
    above += int(a.min() > nat_v[i])
    if nat_v[i] > 0:
      r = f"{a.min() / nat_v[i]:.2f} / {a.mean() / nat_v[i]:.2f}"
      ratios.append(a.min() / nat_v[i])
    else:
      r = "n/a (natural max < 0)"
    lines.append(f"| {u} | {paper.PAPER_UNITS[i]} | {nat_v[i]:.1f} | {a.min():.1f} / {a.mean():.1f} | {r} |")
  lines += ["", f"every synthetic image above the natural max: {above}/{len(us)} units; ratio > 1 for "
            f"{sum(r > 1 for r in ratios)}/{len(ratios)} units with a positive natural max; "
            f"median ratio {np.median(ratios):.2f}"]
  return lines


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=2561)
  ap.add_argument("--batch", type=int, default=9)
  ap.add_argument("--size", type=int, default=224)
  ap.add_argument("--n_images", type=int, default=1000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
  args = ap.parse_args()
  os.makedirs(args.out, exist_ok=True)
  model = models.load("googlenet_bvlc", SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz")
  us = paper.paper_units(model)
  cache = pathlib.Path(args.out) / f"natural_max_{args.n_images}.npz"
  if cache.exists():
    z = np.load(cache, allow_pickle=True)
    nat = dict(zip(z["units"], zip(z["value"], z["path"])))
  else:
    paths = sorted((SHARED / "data" / "imagenet_samples").glob("*.JPEG"))[: args.n_images]
    t = time.time()
    nat = natural_max(model, us, paths)
    print(f"natural sweep: {len(paths)} images in {time.time() - t:.0f}s")
    np.savez(cache, units=list(nat), value=[v for v, _ in nat.values()],
             path=[p for _, p in nat.values()])
  cfg = featvis.get_config("zimmermann2021")
  cfg.steps, cfg.batch, cfg.size, cfg.seed = args.steps, args.batch, args.size, args.seed
  t = time.time()
  out = featvis.render(model, us, cfg, progress=True)
  dt = time.time() - t
  nat_v = np.asarray([nat[str(u)][0] for u in us], np.float32)
  lines = report(us, out["activation"], nat_v, args, dt, cfg.pad)
  text = "\n".join(lines)
  print(text)
  (pathlib.Path(args.out) / "featvis_quality.md").write_text(text + "\n")
  from cv_jax.data.png import save_png
  imgs = out["images"]
  if imgs.shape[1] == 1:  # one image per unit: lay the 18 units out as 3 rows of 6
    imgs = imgs.reshape((3, 6) + imgs.shape[2:])
  save_png(pathlib.Path(args.out) / "featvis_contact_sheet.png", contact_sheet(imgs))
  np.savez_compressed(pathlib.Path(args.out) / "featvis_quality.npz", units=[str(u) for u in us],
                      activation=out["activation"], natural_max=nat_v, objective=out["objective"],
                      images=(np.clip(out["images"], 0, 1) * 255).astype(np.uint8))


if __name__ == "__main__":
  main()
