"""How activating are the synthetic images? For the paper's 18 units on BVLC GoogLeNet:

    ratio = activation of the final visualisation / max activation over the natural images

(activation = the unit's spatial-mean pre-ReLU channel, as the paper's; natural images = the
1000 ImageNet samples in ../shared/data/imagenet_samples with the paper's preprocessing). The
paper's premise is that synthetic images are extremely activating (ratio > 1).

    PYTHONPATH=. python benchmarks/featvis_quality.py --steps 2561 --batch 9      # the paper
    PYTHONPATH=. python benchmarks/featvis_quality.py --steps 128 --batch 1       # CPU-sized
    PYTHONPATH=. python benchmarks/featvis_quality.py --method maco --steps 16 --crops 4
    PYTHONPATH=. python benchmarks/featvis_quality.py --method accentuation --steps 16 --crops 2
    PYTHONPATH=. python benchmarks/featvis_quality.py --method dgn_am --generator G.caffemodel
    PYTHONPATH=. python benchmarks/featvis_quality.py --compare   # the side-by-side sheet

Writes docs/figures/featvis_contact_sheet.png and featvis_quality.md (the table) to --out; other
methods write featvis_quality_<method>.md / .npz and featvis_<method>_sheet.png, and --compare
draws featvis_priors_sheet.png (one block of rows per 6 units: Lucid-FFT, MACO, accentuation
and DGN-AM when its run exists) from the saved images.
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


def report(us, act, nat_v, args, dt, pad, header=None):
  """Markdown table. A natural max <= 0 makes the ratio meaningless; then 'exceeds' is shown."""
  header = header or (f"BVLC GoogLeNet, zimmermann2021 preset with steps={args.steps}, "
                      f"batch={args.batch}, size={args.size} (canvas {args.size + 2 * pad})")
  lines = [f"{header}; natural max over "
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
  ap.add_argument("--method", default="fourier",
                  choices=("fourier", "maco", "accentuation", "dgn_am"))
  ap.add_argument("--crops", type=int, default=4, help="maco/accentuation crops per step")
  ap.add_argument("--canvas", type=int, default=256, help="maco canvas")
  ap.add_argument("--seed_image", default="n01440764_tench.JPEG",
                  help="accentuation seed (a file of the sample folder), shared by all units")
  ap.add_argument("--generator", default="", help="dgn_am generator weights")
  ap.add_argument("--code_bounds", default="", help="dgn_am act_range/3x/fc6.txt")
  ap.add_argument("--compare", action="store_true", help="only draw the side-by-side sheet")
  args = ap.parse_args()
  if args.compare:
    compare_sheet(pathlib.Path(args.out))
    return
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
  nat_v = np.asarray([nat[str(u)][0] for u in us], np.float32)
  if args.method != "fourier":
    return other_method(model, us, nat_v, args)
  cfg = featvis.get_config("zimmermann2021")
  cfg.steps, cfg.batch, cfg.size, cfg.seed = args.steps, args.batch, args.size, args.seed
  t = time.time()
  out = featvis.render(model, us, cfg, progress=True)
  dt = time.time() - t
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


def other_method(model, us, nat_v, args):
  """MACO / accentuation / DGN-AM run of the 18 units in one program; table, sheet, npz."""
  from PIL import Image
  cfg = featvis.get_config(args.method)
  cfg.steps, cfg.seed = args.steps, args.seed
  kw = {}
  if args.method == "maco":
    cfg.size, cfg.crops, cfg.crop_chunk = args.canvas, args.crops, args.crops
    header = (f"BVLC GoogLeNet, maco preset with steps={args.steps}, crops={args.crops}, "
              f"canvas={args.canvas} (Xplique: 256 steps, 32 crops, 512 px)")
  elif args.method == "accentuation":
    cfg.crops = args.crops
    kw["seed_images"] = [SHARED / "data" / "imagenet_samples" / args.seed_image]
    header = (f"BVLC GoogLeNet, accentuation preset with steps={args.steps}, crops={args.crops}, "
              f"seed {args.seed_image}, reg layer = the unit's layer (faccent: 99 steps, 16 "
              "transforms)")
  else:
    from cv_jax.weights.generator import load_generator
    kw["generator"] = load_generator(args.generator)
    cfg.code_bounds = args.code_bounds
    header = f"BVLC GoogLeNet, dgn_am preset with steps={args.steps}"
  t = time.time()
  out = featvis.render(model, us, cfg, progress=True, **kw)
  dt = time.time() - t
  lines = report(us, out["activation"], nat_v, args, dt, 0, header)
  if args.method == "accentuation":
    sa = out["seed_activation"][:, 0]
    lines += ["", "seed activation per unit: " + ", ".join(f"{v:.1f}" for v in sa)]
  text = "\n".join(lines)
  print(text)
  outdir = pathlib.Path(args.out)
  (outdir / f"featvis_quality_{args.method}.md").write_text(text + "\n")
  thumbs = np.stack([np.asarray(Image.fromarray((np.clip(im, 0, 1) * 255).astype(np.uint8))
                                .resize((112, 112), Image.BILINEAR)) for im in out["images"][:, 0]])
  np.savez_compressed(outdir / f"featvis_quality_{args.method}.npz", units=[str(u) for u in us],
                      activation=out["activation"], natural_max=nat_v, objective=out["objective"],
                      wall_s=dt)
  sheet = Image.fromarray(contact_sheet(thumbs.reshape((3, 6) + thumbs.shape[1:]) / 255.0, gap=2))
  _small_png(sheet, outdir / f"featvis_{args.method}_sheet.png")


def _small_png(im, path) -> None:
  """Save a 256-colour PNG (thumbnails: a third of the size, differences invisible)."""
  im.convert("RGB").quantize(256, dither=0).save(path, optimize=True)


def sheet_thumbs(path: pathlib.Path) -> np.ndarray:
  """The 18 images (112 px) cut from a 3 x 6 sheet with 2 px gaps (the committed Lucid-FFT
  contact sheet, or a method's `featvis_<method>_sheet.png`)."""
  from PIL import Image
  sheet = np.asarray(Image.open(path).convert("RGB"))
  gap, n = 2, 112
  return np.stack([sheet[gap + i * (n + gap):gap + i * (n + gap) + n,
                         gap + j * (n + gap):gap + j * (n + gap) + n] for i in range(3)
                   for j in range(6)])


def compare_sheet(outdir: pathlib.Path) -> None:
  """featvis_priors_sheet.png: per block of 6 units, one row per method (Lucid-FFT, MACO,
  accentuation, DGN-AM if run), 112 px thumbnails, labelled at the left."""
  from PIL import Image, ImageDraw
  rows = [("Lucid FFT", sheet_thumbs(outdir / "featvis_contact_sheet.png"))]
  for m, label in (("maco", "MACO"), ("accentuation", "accent."), ("dgn_am", "DGN-AM")):
    f = outdir / f"featvis_{m}_sheet.png"
    if f.exists():
      rows.append((label, sheet_thumbs(f)))
  n, gap, left = 112, 2, 70
  nr = len(rows)
  h = 3 * nr * (n + gap) + 2 * 8 + gap
  w = left + 6 * (n + gap) + gap
  canvas = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(canvas)
  for blk in range(3):
    y0 = blk * (nr * (n + gap) + 8)
    for r, (label, th) in enumerate(rows):
      y = y0 + gap + r * (n + gap)
      draw.text((4, y + n // 2 - 6), label, fill="black")
      for j in range(6):
        canvas.paste(Image.fromarray(th[blk * 6 + j]), (left + gap + j * (n + gap), y))
  _small_png(canvas, outdir / "featvis_priors_sheet.png")
  print(f"wrote {outdir / 'featvis_priors_sheet.png'} ({len(rows)} methods)")


if __name__ == "__main__":
  main()
