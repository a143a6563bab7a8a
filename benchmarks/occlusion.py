"""Occlusion speed: cv_jax vs Captum's `Occlusion` (and a plain batched PyTorch loop) on the same
BVLC GoogLeNet weights, plus the fraction of the machine's measured FLOP peak.

    PYTHONPATH=. python benchmarks/occlusion.py [--positions=192] [--layers=mixed4a] [--chunk=0]

Setting (paper §2.3): one 224 px query image, 90 px occluder, stride 2 (4,624 positions), units
of mixed4a (pre-ReLU spatial mean). To keep runs short on small CPUs every method is timed on a
subset of positions and positions/s extrapolated to the full 4,624 (per-position work does not
depend on where the occluder is, except for cv_jax's incremental stem, whose timed subset is a
full-width band of rows, i.e. representative). Compile/warm-up time is reported separately.
FLOPs: convolutions of one forward pass truncated at the layer (2 per MAC, pooling/LRN not
counted); peak: a large float32 matmul in JAX and in PyTorch in the same run (the larger one).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.common

flags.DEFINE_integer("positions", 192, "Positions timed per method (then extrapolated).")
flags.DEFINE_list("layers", ["mixed4a"], "Blocks to time cv_jax at (mixed3a..mixed5b); the "
                  "Captum comparison uses the first.")
flags.DEFINE_integer("chunk", 0, "cv_jax positions per forward pass (0: default_chunk).")
flags.DEFINE_integer("captum_batch", 32, "Captum perturbations_per_eval.")
flags.DEFINE_string("weights", None, "BVLC blobs .npz (default ../shared/models/...).")
flags.DEFINE_string("image", None, "Query image (default: a sample image, else random).")
flags.DEFINE_boolean("captum", True, "Also time Captum and the plain PyTorch loop.")
flags.DEFINE_boolean("plain", True, "Also time cv_jax's plain (non-incremental) path on the first layer.")
FLAGS = flags.FLAGS

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


def _timeit(fn, reps=1):
  fn()  # warm-up
  t = time.perf_counter()
  for _ in range(reps):
    fn()
  return (time.perf_counter() - t) / reps


def peak_flops():
  """Measured float32 matmul FLOP/s: (jax, torch)."""
  import jax
  import jax.numpy as jnp
  n = 2048
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  t = _timeit(lambda: jax.block_until_ready(f(a)), 3)
  jp = 2 * n ** 3 / t
  tp = float("nan")
  try:
    import torch
    b = torch.rand(n, n)
    t = _timeit(lambda: b @ b, 3)
    tp = 2 * n ** 3 / t
  except ImportError:
    pass
  return jp, tp


def run(quick: bool = False) -> list[dict]:
  """Row for `benchmarks/run_all.py`: occlusion maps at mixed4a, cv_jax vs Captum (goal 6x).

  cv_jax: the incremental program (default chunk) on a full-width band of positions; Captum:
  `Occlusion` on the PyTorch trunk (torch.no_grad, perturbations_per_eval 32, constant
  baseline), every position a full truncated forward. positions/s, extrapolation-free.
  """
  import jax
  import jax.numpy as jnp
  import torch
  from captum.attr import Occlusion
  from cv_jax import models
  from cv_jax import occlusion as O
  from torch_googlenet import GoogLeNetTrunk
  weights = os.path.join(SHARED, "models", "bvlc_googlenet", "bvlc_googlenet_blobs.npz")
  model = models.load("googlenet_bvlc", weights)
  sample = os.path.join(SHARED, "data", "imagenet_samples")
  img = O.load_query(os.path.join(sample, sorted(os.listdir(sample))[9]))
  size, stride, npos, block = 90, 2, (64 if quick else 128), "mixed4a"
  layer = f"{block}_pre_relu"
  rs = O.occluder_starts(224, size, stride)
  chunk = O.default_chunk(model, layer)
  n = max(chunk, (npos // chunk) * chunk)
  rows = np.repeat(rs, len(rs))[:n].reshape(-1, chunk)
  cols = np.tile(rs, len(rs))[:n].reshape(-1, chunk)
  colours = O.patch_means(img, size, rs, rs).reshape(-1, 3)[:n].reshape(-1, chunk, 3)
  prog = O.maps._program(model, layer, size, "colour", True)
  params, ij = model.params(), jnp.asarray(img)
  t0 = time.perf_counter()
  jax.block_until_ready(prog(params, ij, ij, colours, rows, cols)[0])
  compile_s = time.perf_counter() - t0
  torch.set_num_threads(os.cpu_count())
  x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
  unit = models.Unit.parse(f"{block}/3x3:10", model).channel
  ncol = max(2, min(68, round(npos / 68)))
  cstride = min(size, (224 - size) // (ncol - 1))
  npc = len(range(0, 224 - size + 1, cstride)) * 68

  def make_captum_run(cl):
    trunk = GoogLeNetTrunk(weights, block[len("mixed"):]).eval()
    trunk = trunk.channels_last() if cl else trunk
    occ = Occlusion(lambda inp: trunk(inp)[:, unit])

    def captum_run():
      with torch.no_grad():
        occ.attribute(x, sliding_window_shapes=(3, size, size), strides=(3, stride, cstride),
                      baselines=0.5, perturbations_per_eval=32, show_progress=False)
    return captum_run

  from benchmarks.common import faster_torch_layout
  captum_run, layout = faster_torch_layout(make_captum_run, reps=1)

  jt, ct = [], []
  for _ in range(1 if quick else 2):
    t = time.perf_counter()
    jax.block_until_ready(prog(params, ij, ij, colours, rows, cols)[0])
    jt.append(time.perf_counter() - t)
    t = time.perf_counter()
    captum_run()
    ct.append(time.perf_counter() - t)
  import captum
  return [dict(path="occlusion, mixed4a, 90 px occluder, stride 2", unit="positions/s",
               command="benchmarks/occlusion.py", cv_jax=n / min(jt), peer=npc / min(ct), goal=6.0,
               peer_what=f"Captum {captum.__version__} Occlusion, PyTorch trunk ({layout} weights, "
                         f"the faster of NCHW and channels-last here), no_grad, "
                         f"{torch.get_num_threads()} threads, 32 perturbations per eval",
               notes=f"cv_jax incremental, chunk {chunk}, compile {compile_s:.0f} s; {n} vs "
                     f"{npc} positions timed")]


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from cv_jax import models
  from cv_jax import occlusion as O

  weights = FLAGS.weights or os.path.join(SHARED, "models", "bvlc_googlenet", "bvlc_googlenet_blobs.npz")
  model = models.load("googlenet_bvlc", weights)
  if FLAGS.image:
    img = O.load_query(FLAGS.image)
  else:
    sample = os.path.join(SHARED, "data", "imagenet_samples")
    files = sorted(os.listdir(sample)) if os.path.isdir(sample) else []
    img = (O.load_query(os.path.join(sample, files[9])) if files
           else np.random.default_rng(0).random((224, 224, 3), np.float32))
  size, stride = 90, 2
  rs = O.occluder_starts(224, size, stride)
  n_full = len(rs) ** 2
  npos = FLAGS.positions
  jpeak, tpeak = peak_flops()
  peak = np.nanmax([jpeak, tpeak])
  print(f"machine: {os.cpu_count()} CPU cores, jax {jax.__version__} ({jax.default_backend()}); "
        f"matmul peak: jax {jpeak / 1e9:.1f} GFLOP/s, torch {tpeak / 1e9:.1f} GFLOP/s")
  print(f"setting: 224 px image, {size} px occluder, stride {stride} -> {n_full} positions; "
        f"timed on {npos} positions and extrapolated\n")
  print("(% peak = positions/s x full-forward FLOPs / matmul peak: the incremental path does fewer\n"
        " FLOPs than counted, so it can exceed 100 %)")
  print(f"{'method':<38}{'layer':<10}{'GFLOP/pos':>10}{'pos/s':>9}{'4624 pos (s)':>14}"
        f"{'% peak':>8}")
  results = {}
  runs = [(b, True) for b in FLAGS.layers]
  if FLAGS.plain:
    runs.insert(1, (FLAGS.layers[0], False))
  for block, incremental in runs:
    layer = f"{block}_pre_relu"
    flops = O.forward_flops(model, layer)
    chunk = FLAGS.chunk or O.default_chunk(model, layer)
    n = max(chunk, (npos // chunk) * chunk)
    rows = np.repeat(rs, len(rs))[:n].reshape(-1, chunk)  # a full-width band of rows
    cols = np.tile(rs, len(rs))[:n].reshape(-1, chunk)
    colours = O.patch_means(img, size, rs, rs).reshape(-1, 3)[:n].reshape(-1, chunk, 3)
    prog = O.maps._program(model, layer, size, "colour", incremental)
    params = model.params()
    ij = jnp.asarray(img)
    t0 = time.perf_counter()
    jax.block_until_ready(prog(params, ij, ij, colours, rows, cols)[0])
    compile_s = time.perf_counter() - t0
    t = _timeit(lambda: jax.block_until_ready(prog(params, ij, ij, colours, rows, cols)[0]))
    pps = n / t
    if incremental:
      results[block] = pps
    name = f"cv_jax{'' if incremental else ' plain'} (chunk {chunk}, compile {compile_s:.0f}s)"
    print(f"{name:<38}{block:<10}"
          f"{flops / 1e9:>10.3f}{pps:>9.1f}{n_full / pps:>14.0f}{100 * pps * flops / peak:>8.1f}")

  if not FLAGS.captum:
    return
  import torch
  from torch_googlenet import GoogLeNetTrunk
  torch.set_num_threads(os.cpu_count())
  block = FLAGS.layers[0]
  layer = f"{block}_pre_relu"
  flops = O.forward_flops(model, layer)
  trunk = GoogLeNetTrunk(weights, block[len("mixed"):]).eval()
  x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
  unit = models.Unit.parse(f"{block}/3x3:10", model).channel
  with torch.no_grad():
    ref = trunk(x)[0].numpy()
  base = np.asarray(model(img[None], [layer])[layer]).mean((1, 2))[0]
  print(f"\n(PyTorch trunk vs cv_jax on the un-occluded image: max |diff| "
        f"{np.abs(ref - base).max():.2e}, max |act| {np.abs(base).max():.1f})")

  # Plain batched PyTorch loop with the paper's mean fill.
  bs = FLAGS.captum_batch
  n = max(bs, (npos // bs) * bs)
  pr = np.repeat(rs, len(rs))[:n]
  pc = np.tile(rs, len(rs))[:n]
  pm = O.patch_means(img, size, rs, rs).reshape(-1, 3)[:n]

  def torch_loop():
    with torch.no_grad():
      for s in range(0, n, bs):
        xb = x.repeat(bs, 1, 1, 1)
        for k in range(bs):
          r, c = pr[s + k], pc[s + k]
          xb[k, :, r:r + size, c:c + size] = torch.from_numpy(pm[s + k]).view(3, 1, 1)
        trunk(xb)[:, unit]

  t = _timeit(torch_loop)
  tl = n / t
  print(f"{'PyTorch batched loop (bs %d)' % bs:<38}{block:<10}{flops / 1e9:>10.3f}{tl:>9.1f}"
        f"{n_full / tl:>14.0f}{100 * tl * flops / peak:>8.1f}")

  try:
    from captum.attr import Occlusion
  except ImportError:
    print("captum not installed: pip install captum")
    return
  occ = Occlusion(lambda inp: trunk(inp)[:, unit])
  # A 68 x k sub-grid of the paper's grid: column stride chosen to give ~npos positions
  # (every Captum position costs one full truncated forward, wherever it is).
  ncol = max(2, min(68, round(npos / 68)))
  cstride = min(size, (224 - size) // (ncol - 1))  # Captum needs stride <= window
  npc = len(range(0, 224 - size + 1, cstride)) * 68

  def captum_run():
    with torch.no_grad():
      occ.attribute(x, sliding_window_shapes=(3, size, size), strides=(3, stride, cstride),
                    baselines=0.5, perturbations_per_eval=bs, show_progress=False)

  t = _timeit(captum_run)
  tc = npc / t
  print(f"{'Captum Occlusion (ppe %d, grey)' % bs:<38}{block:<10}{flops / 1e9:>10.3f}{tc:>9.1f}"
        f"{n_full / tc:>14.0f}{100 * tc * flops / peak:>8.1f}")
  print(f"\ncv_jax / Captum = {results[block] / tc:.2f}x ; cv_jax / PyTorch loop = "
        f"{results[block] / tl:.2f}x  (goal >= 3x vs Captum)")
  print("Captum has no mean-colour fill (a constant baseline is used, same work per position); "
        f"Captum timed on {npc} positions (68 x {npc // 68} grid), the others on {n}.")


if __name__ == "__main__":
  app.run(main)
