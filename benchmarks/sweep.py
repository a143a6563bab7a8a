"""Dataset-sweep throughput: decode-only, forward-only and end to end, JAX vs PyTorch.

    python benchmarks/sweep.py                     # BVLC GoogLeNet, 128 ImageNet sample JPEGs
    python benchmarks/sweep.py --n_images=1000 --workers=1,2,4

Both sides do the same job on the same images in the same run: the paper's preprocessing
(PIL: shorter side 256 bilinear, centre crop 224), the network up to mixed5b, the spatial mean
of every channel of the nine mixedXX_pre_relu layers, and running top-k / bottom-k tables
(k=200) per channel. PyTorch: the same BVLC weights in a plain torch GoogLeNet (defined below,
checked against cv_jax's activations first), a torch DataLoader with worker processes for
decoding, `torch.topk` merges. JAX: `cv_jax.sweep.run` (threaded decoding, one jit step).

Prints one table: images/s for each stage and the JAX/PyTorch ratio.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", REPO.parent / "shared"))

flags.DEFINE_integer("n_images", 128, "Images swept (from the ImageNet sample folder).")
flags.DEFINE_integer("batch_size", 32, "Global batch size (both frameworks).")
flags.DEFINE_integer("micro_batch", 8, "cv_jax micro-batch per device.")
flags.DEFINE_list("workers", ["1", "2", "4"], "Decoding threads/processes to try for decode-only.")
flags.DEFINE_integer("k", 200, "Top-k / bottom-k depth.")
flags.DEFINE_string("source", str(SHARED / "data" / "imagenet_samples"), "Image folder.")
flags.DEFINE_string("weights", str(SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz"),
                    "BVLC GoogLeNet Caffe-blob .npz.")
flags.DEFINE_boolean("torch", True, "Also run the PyTorch peer.")
FLAGS = flags.FLAGS

LAYERS = tuple(f"mixed{b}_pre_relu" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))
CAFFE_BLOCKS = {"3a": "mixed3a", "3b": "mixed3b", "4a": "mixed4a", "4b": "mixed4b", "4c": "mixed4c",
                "4d": "mixed4d", "4e": "mixed4e", "5a": "mixed5a", "5b": "mixed5b"}


# ----------------------------------------------------------------------------- PyTorch peer

def torch_googlenet(npz_path: str, channels_last: bool = False):
  """BVLC GoogLeNet in plain torch from the Caffe blobs; returns fn(x NCHW RGB [0,1]) -> means.
  With `channels_last` the weights use PyTorch's channels-last memory format (pass the input
  in that format too)."""
  import torch
  import torch.nn.functional as F
  z = np.load(npz_path)
  w = {k: torch.from_numpy(np.ascontiguousarray(z[k])) for k in z.files}
  if channels_last:
    from benchmarks.common import channels_last as to_cl
    w = to_cl(w)
  mean_bgr = torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)

  def conv(x, name, pad=0, stride=1):
    return F.conv2d(x, w[f"{name}/weights"], w[f"{name}/bias"], stride=stride, padding=pad)

  def lrn(x):  # Caffe LRN across channels: local_size 5, alpha 1e-4, beta 0.75, k 1
    return F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)

  def pool(x):
    return F.max_pool2d(x, 3, 2, ceil_mode=True)

  def inception(x, b):
    p = f"inception_{b}"
    b1 = conv(x, f"{p}/1x1")
    b3 = conv(F.relu(conv(x, f"{p}/3x3_reduce")), f"{p}/3x3", pad=1)
    b5 = conv(F.relu(conv(x, f"{p}/5x5_reduce")), f"{p}/5x5", pad=2)
    bp = conv(F.max_pool2d(x, 3, 1, padding=1), f"{p}/pool_proj")
    return torch.cat([b1, b3, b5, bp], 1)  # pre-ReLU concat

  def forward(x):
    x = x.flip(1) * 255.0 - mean_bgr  # RGB [0,1] -> BGR*255 - mean
    x = lrn(pool(F.relu(conv(x, "conv1/7x7_s2", pad=3, stride=2))))
    x = F.relu(conv(x, "conv2/3x3_reduce"))
    x = pool(lrn(F.relu(conv(x, "conv2/3x3", pad=1))))
    out = {}
    for b, name in CAFFE_BLOCKS.items():
      if b in ("4a", "5a"):
        x = pool(x)
      pre = inception(x, b)
      out[f"{name}_pre_relu"] = pre.mean(dim=(2, 3))
      x = F.relu(pre)
    return out

  return forward


class _TorchTables:
  """Running top-k / bottom-k per channel with torch.topk (ties: whatever torch does)."""

  def __init__(self, k):
    self.k, self.top, self.bot = k, {}, {}

  def update(self, acts, ids):
    import torch
    for l, a in acts.items():
      a = a.T  # (C, B)
      i = ids.expand_as(a)
      for table, largest in ((self.top, True), (self.bot, False)):
        if l in table:
          v0, i0 = table[l]
          a_, i_ = torch.cat([v0, a], 1), torch.cat([i0, i], 1)
        else:
          a_, i_ = a, i
        v, j = torch.topk(a_, min(self.k, a_.shape[1]), dim=1, largest=largest, sorted=True)
        table[l] = (v, torch.gather(i_, 1, j))


class _TorchDataset:
  def __init__(self, paths):
    self.paths = paths

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, i):
    from cv_jax.data import load_image
    import torch
    return torch.from_numpy(load_image(self.paths[i]).transpose(2, 0, 1).copy()), i


# ----------------------------------------------------------------------------- timing helpers

def _time(fn, repeat=1):
  t = time.perf_counter()
  for _ in range(repeat):
    fn()
  return (time.perf_counter() - t) / repeat


def run(quick: bool = False) -> list[dict]:
  """Row for `benchmarks/run_all.py`: forward + top-k on decoded batches (goal 1.5x).

  Both sides get the same decoded batch of 32 sample images; cv_jax runs its sweep step
  (micro-batches of 8, spatial means of nine layers, exact top/bottom-200 merge), PyTorch the
  same network under inference_mode with `torch.topk` merges. Interleaved, medians.
  """
  import jax
  import torch
  from cv_jax import models
  from cv_jax.data import BatchLoader, open_source
  from cv_jax.sweep.ranking import _build_step, _NO_ID, _shard_tables
  weights = str(SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz")
  bs, k, micro = 32, 200, 8
  src = open_source(f"folder:{SHARED / 'data' / 'imagenet_samples'}", max_images=bs)
  model = models.load("googlenet_bvlc", weights)
  x = next(iter(BatchLoader(src, bs, workers=2)(0)))[1]
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
  step = _build_step(model, LAYERS, k, micro, mesh)
  chans = {l: model.channels(l) for l in LAYERS}
  state = _shard_tables({l: dict(top_val=np.full((c, k), -np.inf, np.float32),
                                top_idx=np.full((c, k), _NO_ID, np.int32),
                                bot_val=np.full((c, k), np.inf, np.float32),
                                bot_idx=np.full((c, k), _NO_ID, np.int32))
                         for l, c in chans.items()}, mesh)  # split by channel, as run() does
  # placed once, as the sweep does (the batch is transferred every step, as there)
  params = jax.device_put(model.params(), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  ids, valid = np.arange(bs, dtype=np.int32), np.ones(bs, bool)
  from benchmarks.common import channels_last, faster_torch_layout

  def make_torch_side(cl):
    tfwd = torch_googlenet(weights, channels_last=cl)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    xt = channels_last(xt) if cl else xt
    tables = _TorchTables(k)

    def torch_side():
      with torch.inference_mode():
        tables.update(tfwd(xt), torch.arange(bs).view(1, -1))
    return torch_side

  def jax_side():
    nonlocal state
    state, _ = step(params, state, x, ids, valid)
    jax.block_until_ready(state)

  t0 = time.perf_counter()
  jax_side()
  compile_s = time.perf_counter() - t0
  torch_side, layout = faster_torch_layout(make_torch_side)
  jt, tt = [], []
  for _ in range(2 if quick else 5):
    jt.append(_time(jax_side))
    tt.append(_time(torch_side))
  return [dict(path="sweep, forward + top-k (9 layers, k=200), batch 32", unit="img/s",
               command="benchmarks/sweep.py", cv_jax=bs / float(np.median(jt)),
               peer=bs / float(np.median(tt)), goal=1.5,
               peer_what=f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"{layout} (the faster of NCHW and channels-last here), "
                         "inference_mode, torch.topk merges",
               notes=f"cv_jax micro-batch {micro}; compile {compile_s:.0f} s")]


def main(argv):
  del argv
  import jax
  import torch
  from cv_jax import models
  from cv_jax.data import BatchLoader, open_source
  from cv_jax.sweep import run
  from cv_jax.sweep.ranking import _build_step, _NO_ID, _shard_tables

  from cv_jax import devices
  if devices.requested():  # CV_JAX_CPU_DEVICES=2: one JAX device per core
    devices.use_cpu_devices(devices.requested())
  n, bs = FLAGS.n_images, FLAGS.batch_size
  src = open_source(f"folder:{FLAGS.source}", max_images=n)
  model = models.load("googlenet_bvlc", FLAGS.weights)
  rows = []
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, cpu cores: {os.cpu_count()}, "
        f"torch threads: {torch.get_num_threads()}, images: {len(src)}, batch: {bs}")

  # Decode only.
  for w in [int(x) for x in FLAGS.workers]:
    loader = BatchLoader(src, bs, workers=w)
    dt = _time(lambda: [None for _ in loader(0)])
    rows.append((f"decode only, {w} thread(s)", n / dt, None))

  # Forward only (+ top-k merge), compiled, on one decoded batch.
  x = next(iter(BatchLoader(src, bs, workers=4)(0)))[1]
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
  step = _build_step(model, LAYERS, FLAGS.k, FLAGS.micro_batch, mesh)
  chans = {l: model.channels(l) for l in LAYERS}

  def fresh():
    return _shard_tables({l: dict(top_val=np.full((c, FLAGS.k), -np.inf, np.float32),
                                  top_idx=np.full((c, FLAGS.k), _NO_ID, np.int32),
                                  bot_val=np.full((c, FLAGS.k), np.inf, np.float32),
                                  bot_idx=np.full((c, FLAGS.k), _NO_ID, np.int32))
                          for l, c in chans.items()}, mesh)
  params = jax.device_put(model.params(), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  ids, valid = np.arange(bs, dtype=np.int32), np.ones(bs, bool)
  t0 = time.perf_counter()
  jax.block_until_ready(step(params, fresh(), x, ids, valid))
  compile_s = time.perf_counter() - t0
  st = fresh()
  reps = max(1, n // bs)

  def jax_fwd():
    nonlocal st
    st, _ = step(params, st, x, ids, valid)
    jax.block_until_ready(st)
  dt = _time(jax_fwd, reps)
  rows.append(("forward + top-k only", bs / dt, None))

  # PyTorch forward on the same batch; check it is the same net first.
  tfwd, layout = (torch_googlenet(FLAGS.weights) if FLAGS.torch else None), "NCHW"
  if tfwd is not None:
    from benchmarks.common import channels_last, faster_torch_layout
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
      ref = tfwd(xt[:4])
    # The stronger of PyTorch's two memory formats for the timed peer (as in `run`).
    nets = {False: tfwd, True: torch_googlenet(FLAGS.weights, channels_last=True)}

    def make_fwd(cl):
      net, xin = nets[cl], channels_last(xt) if cl else xt

      def fwd():
        with torch.inference_mode():
          net(xin)
      return fwd
    _, layout = faster_torch_layout(make_fwd)
    cl = layout == "channels-last"
    tfwd, xt = nets[cl], channels_last(xt) if cl else xt
    print(f"torch peer layout: {layout} (the faster of NCHW and channels-last here)")
    mine = model(x[:4], LAYERS)
    err = max(float(np.abs(np.asarray(mine[l]).mean(axis=(1, 2)) - ref[l].numpy()).max()
                    / (np.abs(ref[l].numpy()).max() + 1e-9)) for l in LAYERS)
    print(f"torch vs cv_jax spatial means, max relative error over 9 layers: {err:.2e}")
    tables = _TorchTables(FLAGS.k)

    def torch_fwd():
      with torch.inference_mode():
        tables.update(tfwd(xt), torch.arange(bs).view(1, -1))
    torch_fwd()
    dt_t = _time(torch_fwd, reps)
    rows[-1] = ("forward + top-k only", bs / dt, bs / dt_t)

  # End to end (decode + forward + top-k). The step is cached, so run() does not recompile.
  t = time.perf_counter()
  res = run(model, src, LAYERS, k=FLAGS.k, batch_size=bs, micro_batch=FLAGS.micro_batch,
            workers=max(int(w) for w in FLAGS.workers), progress=False)
  e2e = n / (time.perf_counter() - t)
  e2e_t = None
  if tfwd is not None:
    w = max(int(w) for w in FLAGS.workers)
    dl = torch.utils.data.DataLoader(_TorchDataset(src.paths), batch_size=bs, num_workers=w,
                                     shuffle=False, multiprocessing_context="spawn" if w else None)
    tables = _TorchTables(FLAGS.k)
    t = time.perf_counter()
    with torch.inference_mode():
      for xb, ib in dl:
        tables.update(tfwd(channels_last(xb) if cl else xb), ib.view(1, -1))
    e2e_t = n / (time.perf_counter() - t)
    l = "mixed4a_pre_relu"
    same = np.mean(tables.top[l][1][:, :10].numpy() == res.top_idx[l][:, :10])
    print(f"top-10 ids of {l} identical to torch for {100 * same:.1f} % of (channel, rank)")
  rows.append((f"end to end ({max(int(w) for w in FLAGS.workers)} decode workers)", e2e, e2e_t))

  print(f"\njit compile of the sweep step: {compile_s:.1f} s (once per run)")
  print(f"{'stage':<40} {'cv_jax img/s':>13} {'torch img/s':>12} {'jax/torch':>10}")
  for name, a, b in rows:
    bt = f"{b:12.1f}" if b else f"{'-':>12}"
    ratio = f"{a / b:10.2f}" if b else f"{'-':>10}"
    print(f"{name:<40} {a:13.1f} {bt} {ratio}")
  # FLOPs of the forward up to mixed5b, from XLA's cost analysis of one image.
  fwd1 = jax.jit(lambda p, xx: model.apply(p, xx, LAYERS))
  cost = fwd1.lower(params, x[:1]).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  gflop = float(cost.get("flops", 0.0)) / 1e9
  print(f"\nforward FLOPs (XLA cost analysis): {gflop:.2f} GFLOP/image -> cv_jax forward "
        f"{rows[len(FLAGS.workers)][1] * gflop:.0f} GFLOP/s; input bytes/image "
        f"{x[0].nbytes / 1e6:.2f} MB")


if __name__ == "__main__":
  app.run(main)
