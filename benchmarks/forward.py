"""Forward and forward+backward throughput: cv_jax (jit) vs the PyTorch port, same weights.

    PYTHONPATH=. python benchmarks/forward.py [--model=googlenet_bvlc] [--batch=32] [--iters=5] \
        [--cpu_devices=2] [--micro_batch=2]

cv_jax runs its batched path, `cv_jax.models.data_parallel`: the batch split over the JAX CPU
devices (`--cpu_devices`, one per core in `python -m benchmarks`) and micro-batches on each.
Both use every core; the PyTorch side (intra-op threads, all cores) runs in the faster
of its two memory formats (NCHW or channels-last, measured in the same run). The PyTorch side is
`cv_jax.testing.torch_reference.CaffeGoogLeNet` (BVLC weights from the Caffe npz) or
`LucentInceptionV1` (`--model=inceptionv1`, random weights), under `torch.inference_mode` for the
forward pass. "fwd+bwd" is the input gradient of a channel mean at `--grad_layer` (what feature
visualisation computes each step). FLOPs are counted analytically: 2 x multiply-adds of every
convolution and dense layer (pools, LRN, ReLU and softmax are not counted).
"""

from __future__ import annotations

import copy
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from cv_jax import models

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `benchmarks.common` when run as a script
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", REPO.parent / "shared"))

MODEL = flags.DEFINE_enum("model", "googlenet_bvlc", ["googlenet_bvlc", "inceptionv1"], "Network.")
WEIGHTS = flags.DEFINE_string("weights", str(SHARED / "models/bvlc_googlenet/bvlc_googlenet_blobs.npz"),
                              "BVLC weights (npz, Caffe blob layout); inceptionv1 uses random weights.")
BATCH = flags.DEFINE_integer("batch", 32, "Images per call.")
SIZE = flags.DEFINE_integer("size", 224, "Image side.")
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed calls (the first includes jit compilation).")
ITERS = flags.DEFINE_integer("iters", 5, "Timed calls.")
THREADS = flags.DEFINE_integer("threads", 0, "Torch threads (0 = all cores, as XLA uses).")
GRAD_LAYER = flags.DEFINE_string("grad_layer", "mixed4a", "Layer of the channel-mean objective.")
CHANNEL = flags.DEFINE_integer("channel", 476, "Channel of the objective.")
MICRO = flags.DEFINE_integer("micro_batch", 2, "cv_jax rows per device per pass (0: all at once).")
CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "JAX CPU devices (0: $CV_JAX_CPU_DEVICES, else 1).")


def timeit(fn, warmup: int, iters: int) -> tuple[float, float]:
  """(first call seconds, median seconds of the timed calls); `warmup` counts the first call."""
  t0 = time.perf_counter()
  fn()
  first = time.perf_counter() - t0
  for _ in range(max(warmup - 1, 0)):
    fn()
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return first, float(np.median(times))


def compare(model_name: str = "googlenet_bvlc", weights: str = WEIGHTS.default, batch: int = 32,
            size: int = 224, warmup: int = 3, iters: int = 5, threads: int = 0,
            grad_layer: str = "mixed4a", channel: int = 476,
            micro_batch: int | None = 2) -> tuple[list, dict]:
  """Time forward and forward + input gradient, cv_jax vs PyTorch, after checking both agree.

  Returns (rows, info): rows (pass, jax first-call s, jax s/call, torch s/call, FLOPs/image).
  """
  import torch
  from cv_jax.testing import torch_reference as R

  threads = threads or os.cpu_count()
  torch.set_num_threads(threads)
  if model_name == "googlenet_bvlc":
    model = models.load("googlenet_bvlc", weights)
    ref = R.CaffeGoogLeNet(weights)
  else:
    model = models.load("inceptionv1", random_init=0, lrn="lucent")
    ref = R.LucentInceptionV1(model.params(), lrn="lucent")
  layer = model.resolve(grad_layer)
  b, s, c = batch, size, channel
  x_np = np.random.default_rng(0).random((b, s, s, 3), np.float32)
  params = model.params()
  x = jnp.asarray(x_np)
  xt = R.to_nchw(x_np)

  # cv_jax's batched path: rows split over the local devices (one per core when the run asks
  # for it, `cv_jax.devices`), micro-batches of `micro_batch` on each (models.data_parallel).
  # 4 was the fastest of {whole shard, 4, 8, 16} on the 2-core build machine (docs/models.md).
  fwd = models.data_parallel(lambda p, v: model.apply(p, v, ("softmax2",))["softmax2"],
                             micro_batch=micro_batch)

  def loss(p, v):  # the batch's mean channel activation; a sum over rows, so it splits exactly
    return -jnp.sum(jnp.mean(model.apply(p, v, (layer,))[layer][..., c], axis=(1, 2))) / b

  grad = models.data_parallel(jax.grad(loss, argnums=1), micro_batch=micro_batch)

  from benchmarks.common import channels_last, faster_torch_layout
  ref_cl, xt_cl = channels_last(copy.deepcopy(ref)), channels_last(xt)

  def make_fwd(cl):
    m, v = (ref_cl, xt_cl) if cl else (ref, xt)

    def torch_fwd():
      with torch.inference_mode():
        return m(v, ("softmax2",))["softmax2"]
    return torch_fwd

  def make_grad(cl):
    m, v0 = (ref_cl, xt_cl) if cl else (ref, xt)

    def torch_grad():
      v = v0.clone().requires_grad_(True)
      out = m(v, (layer,))[layer]
      (g,) = torch.autograd.grad(-out[:, c].mean(), v)
      return g
    return torch_grad

  torch_fwd, torch_grad = make_fwd(False), make_grad(False)

  # Same results before timing anything (the first jax calls include compilation).
  t0 = time.perf_counter()
  yj = np.asarray(fwd(params, x))
  compile_fwd = time.perf_counter() - t0
  np.testing.assert_allclose(yj, torch_fwd().numpy(), rtol=1e-4, atol=1e-6)
  t0 = time.perf_counter()
  gj = np.asarray(grad(params, x))
  compile_grad = time.perf_counter() - t0
  gt = R.to_nhwc(torch_grad())
  rel = np.linalg.norm(gj - gt) / max(np.linalg.norm(gt), 1e-30)
  if not np.abs(gt).max() > 0:
    raise SystemExit(f"objective {layer}:{c} has zero gradient on these inputs; pick another --channel")
  assert rel < 1e-3, rel  # float32 round-off; ReLU sign flips of near-zero units at batch 32

  # The stronger memory format for each PyTorch peer (channels-last is faster on many CPUs).
  torch_fwd, fwd_layout = faster_torch_layout(make_fwd)
  torch_grad, grad_layout = faster_torch_layout(make_grad)
  rows = []
  from benchmarks.common import conv_flops
  f_fwd = conv_flops(model, s)
  f_grad = 2 * conv_flops(model, s, upto=layer)  # input gradient ~ one more pass of convs
  for what, jfn, tfn, fl, first in (
      ("forward", lambda: fwd(params, x).block_until_ready(), torch_fwd, f_fwd, compile_fwd),
      (f"fwd+bwd {layer}:{c}", lambda: grad(params, x).block_until_ready(), torch_grad, f_grad,
       compile_grad)):
    # Interleaved A/B: alternate the two sides, take each side's median (robust to load drift).
    for _ in range(max(warmup - 1, 0)):
      jfn()
      tfn()
    jt, tt = [], []
    for _ in range(iters):
      t0 = time.perf_counter()
      jfn()
      jt.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      tfn()
      tt.append(time.perf_counter() - t0)
    rows.append((what, first, float(np.median(jt)), float(np.median(tt)), fl))
  info = dict(model=model.name, batch=b, size=s, threads=threads, torch=torch.__version__,
              jax_devices=jax.local_device_count(), micro_batch=micro_batch,
              jax=jax.__version__, device=jax.devices()[0].device_kind, grad_rel_diff=float(rel),
              layer=layer, channel=c, torch_layout_forward=fwd_layout,
              torch_layout_grad=grad_layout)
  return rows, info


def run(quick: bool = False) -> list[dict]:
  """Rows for `benchmarks/run_all.py`: forward (goal 2x) and forward + input gradient (1.5x)."""
  rows, info = compare(batch=8 if quick else 32, warmup=2, iters=2 if quick else 5)
  out = []
  for (what, first, j_t, t_t, fl), goal, layout in zip(
      rows, (2.0, 1.5), (info["torch_layout_forward"], info["torch_layout_grad"])):
    peer = (f"PyTorch {info['torch']} port (cv_jax.testing.torch_reference), {info['threads']} "
            f"threads, {layout} (the faster of NCHW and channels-last here), inference_mode for "
            "the forward, autograd for the gradient")
    name = "forward, batch %d, 224 px" % info["batch"] if what == "forward" else (
        f"forward + input gradient to {info['layer']}, batch {info['batch']}")
    out.append(dict(path=name, command="benchmarks/forward.py", unit="img/s",
                    cv_jax=info["batch"] / j_t, peer=info["batch"] / t_t, peer_what=peer, goal=goal,
                    notes=f"cv_jax: models.data_parallel over {info['jax_devices']} JAX "
                          f"device(s), micro-batches of {info['micro_batch']}; jax "
                          f"{fl * info['batch'] / j_t / 1e9:.0f} GFLOP/s, first call "
                          f"{first:.1f} s"))
  return out


def main(argv):
  del argv
  from cv_jax import devices
  if CPU_DEVICES.value or devices.requested():
    devices.use_cpu_devices(CPU_DEVICES.value or devices.requested())
  rows, info = compare(MODEL.value, WEIGHTS.value, BATCH.value, SIZE.value, WARMUP.value,
                       ITERS.value, THREADS.value, GRAD_LAYER.value, CHANNEL.value,
                       MICRO.value or None)
  b = info["batch"]
  print(f"\nmodel {info['model']}, batch {b}, {info['size']}x{info['size']}, float32, "
        f"jax devices {info['jax_devices']}, micro-batch {info['micro_batch']}, "
        f"{info['device']}, {os.cpu_count()} cores, torch threads {info['threads']}, "
        f"torch {info['torch']}, jax {info['jax']}")
  print(f"grad rel. diff jax vs torch {info['grad_rel_diff']:.1e}; torch layout: forward "
        f"{info['torch_layout_forward']}, gradient {info['torch_layout_grad']}")
  print("| pass | jax 1st call s (incl. compile) | jax img/s | torch img/s | jax/torch | jax GFLOP/s | torch GFLOP/s |")
  print("|---|---|---|---|---|---|---|")
  for what, j_first, j_t, t_t, fl in rows:
    print(f"| {what} | {j_first:.2f} | {b / j_t:.1f} | {b / t_t:.1f} | {t_t / j_t:.2f}x | "
          f"{fl * b / j_t / 1e9:.1f} | {fl * b / t_t / 1e9:.1f} |")


if __name__ == "__main__":
  app.run(main)
