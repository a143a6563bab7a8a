"""featvis speed: optimisation steps per second, JAX (cv_jax.featvis) vs a plain PyTorch loop.

Workload (both sides): the paper's step for one unit: batch 9, 224 px images on a 256 px FFT +
decorrelated canvas, Lucid transforms (jitter 16, random scale, rotate, jitter 8), BVLC
GoogLeNet, objective = mean channel activation of mixed4a_pre_relu - 100 * diversity(mixed4a
pre-ReLU), Adam 0.05. The PyTorch loop (timed in NCHW and in channels-last; the faster is the
peer) does what Lucent does: the whole network forward every
step (to the softmax), then backward. cv_jax runs the steps inside one compiled loop and stops
the forward at mixed4a. (The torch side uses F.interpolate / grid_sample for scale and rotate:
same cost class, not bit-identical; it is a timing reference only.) In `run()` (the table row)
the sides are timed in interleaved rounds after a warm-up, and the medians are reported.

Second table: units per minute when N units are rendered in one program vs one at a time.

    PYTHONPATH=. python benchmarks/featvis_speed.py [--steps 5] [--batch 9] [--units 4]
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from cv_jax import featvis, models
from cv_jax.featvis import optimize as loop

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks.common` when run as a script
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", ROOT.parent / "shared"))


# --- PyTorch reference loop -------------------------------------------------------------------

def torch_googlenet(model, channels_last: bool = False):
  """BVLC GoogLeNet in plain PyTorch from the same weights (NCHW, Caffe conventions); with
  `channels_last` the weights and the input use PyTorch's channels-last memory format."""
  import torch
  import torch.nn.functional as F
  P = {k: {"w": torch.from_numpy(np.asarray(v["kernel"]).transpose(3, 2, 0, 1).copy())
           if np.asarray(v["kernel"]).ndim == 4 else torch.from_numpy(np.array(v["kernel"])),
           "b": torch.from_numpy(np.array(v["bias"]))} for k, v in model.params().items()}
  if channels_last:
    from benchmarks.common import channels_last as to_cl
    P = to_cl(P)
  blocks = list(model.spec.blocks)
  mean = torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)

  def conv(name, x, stride=1, pad=None):
    w = P[name]["w"]
    return F.conv2d(x, w, P[name]["b"], stride, w.shape[-1] // 2 if pad is None else pad)

  def pool(x, stride):
    return F.max_pool2d(x, 3, stride, 1 if stride == 1 else 0, ceil_mode=True)

  def lrn(x):
    return F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)

  def forward(img, keep):
    if channels_last:
      img = img.contiguous(memory_format=torch.channels_last)
    x = img * 255.0
    x = x.flip(1) - mean
    x = pool(F.relu(conv("conv2d0", x, 2, 3)), 2)
    x = lrn(x)
    x = F.relu(conv("conv2d1", x, pad=0))
    x = pool(lrn(F.relu(conv("conv2d2", x, pad=1))), 2)
    out = {}
    for b in blocks:
      if b in ("mixed4a", "mixed5a"):
        x = pool(x, 2)
      p1 = conv(f"{b}_1x1", x)
      p3 = conv(f"{b}_3x3", F.relu(conv(f"{b}_3x3_bottleneck", x)))
      p5 = conv(f"{b}_5x5", F.relu(conv(f"{b}_5x5_bottleneck", x)))
      pp = conv(f"{b}_pool_reduce", pool(x, 1))
      pre = torch.cat([p1, p3, p5, pp], 1)
      if b == keep:
        out[keep] = pre
      x = F.relu(pre)
    h = x.mean((2, 3))
    out["logits"] = h @ P["softmax2"]["w"] + P["softmax2"]["b"]
    return out
  return forward


def torch_stepper(model, batch, size=224, pad=16, channel=490, channels_last=False):
  """One step of the PyTorch loop as a function (state kept inside; one warm-up step done)."""
  import torch
  import torch.nn.functional as F
  torch.manual_seed(0)
  forward = torch_googlenet(model, channels_last)
  h = w = size + 2 * pad
  freqs = np.sqrt(np.fft.fftfreq(w)[: w // 2 + 1][None] ** 2 + np.fft.fftfreq(h)[:, None] ** 2)
  scale = torch.from_numpy((1 / np.maximum(freqs, 1 / max(h, w))).astype(np.float32))
  spec = (0.01 * torch.randn(batch, 3, h, w // 2 + 1, 2)).requires_grad_()
  cn = torch.from_numpy(featvis.param.COLOR_CORRELATION_NORMALIZED)
  opt = torch.optim.Adam([spec], lr=0.05)
  scales = (1.0, 0.975, 1.025, 0.95, 1.05)
  rng = np.random.RandomState(0)

  def step():
    opt.zero_grad()
    c = torch.complex(spec[..., 0], spec[..., 1]) * scale
    t = torch.fft.irfftn(c, s=(h, w), norm="ortho") / 4
    img = torch.sigmoid(torch.einsum("ij,bjhw->bihw", cn, t))
    oy, ox = rng.randint(0, 17, 2)
    img = img[:, :, oy:oy + h - 16, ox:ox + w - 16]
    s = scales[rng.randint(5)]
    n = int(s * img.shape[-1])
    img = F.interpolate(img, size=(n, n), mode="bilinear", align_corners=False)
    a = math.radians(rng.randint(-5, 6))
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]],
                         dtype=torch.float32).expand(batch, 2, 3)
    grid = F.affine_grid(theta, img.shape, align_corners=False)
    img = F.grid_sample(img, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    oy, ox = rng.randint(0, 9, 2)
    img = img[:, :, oy:oy + n - 8, ox:ox + n - 8]
    acts = forward(img, "mixed4a")
    a4 = acts["mixed4a"]
    ch = a4[:, channel].mean()
    f = a4.flatten(2)
    g = f @ f.transpose(1, 2)
    g = g / g.flatten(1).norm(dim=1).clamp_min(1e-5).view(-1, 1, 1)
    sim = torch.einsum("iab,jab->ij", g, g)
    div = (sim.sum() - sim.diagonal().sum()) / batch
    loss = -(ch - 100 * div)   # logits computed (full forward, as Lucent) but not in the loss
    loss.backward()
    opt.step()

  torch.set_num_threads(os.cpu_count() or 1)
  step()                                   # warm-up
  return step


def torch_loop(model, steps, batch, size=224, pad=16, channel=490, channels_last=False):
  """Steps per second of the PyTorch loop (after one warm-up step)."""
  step = torch_stepper(model, batch, size, pad, channel, channels_last)
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return steps / (time.perf_counter() - t)


# --- JAX ---------------------------------------------------------------------------------------

def jax_stepper(model, units, cfg):
  """(run(n) -> seconds for n more steps, compile + first-call seconds) for `units` in one
  program; the optimisation state is carried from call to call."""
  us = featvis.parse_units(model, units)
  eng = loop.get_engine(model, us, cfg)
  mp = model.params()
  idx = jnp.asarray([u.channel for u in us], jnp.int32)
  key = jax.random.PRNGKey(0)
  box = {"state": eng.init_state(key, us, 1), "i": 0}

  def run(n):
    t = time.perf_counter()
    i = box["i"]
    box["state"] = eng.advance(box["state"], jnp.int32(i), jnp.int32(i + n), mp, idx, key)
    jax.block_until_ready(box["state"][0])
    box["i"] = i + n
    return time.perf_counter() - t
  return run, run(1)


def jax_steps_per_s(model, units, cfg, steps):
  """(steps/s after compilation, compile+first-call seconds) for `units` in one program."""
  run, first = jax_stepper(model, units, cfg)
  if not steps:
    return float("nan"), first
  return steps / run(steps), first


def step_flops(model, cfg, layer: str = "mixed4a_pre_relu") -> float:
  """Real convolution FLOPs of one step: forward + input gradient (2 x forward convs) through
  `layer`, averaged over the random-scale branches' input sizes, times the batch."""
  from benchmarks.common import conv_flops
  pipe = loop.make_pipeline(cfg)
  canvas = cfg.size + 2 * cfg.pad
  sizes = [s[0] for s in sorted(pipe.output_sizes((canvas, canvas)))]
  # output_sizes is a set: weight each scale equally (one size per scale here).
  return 2.0 * cfg.batch * float(np.mean([conv_flops(model, s, layer) for s in sizes]))


def demo_compile_seconds(model) -> tuple[float, int]:
  """Compile + first step of the demo experiment's featvis program (all its units, one call)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("exp_cfg", ROOT / "configs" / "experiment.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  demo = mod.get_config("demo")
  cfg = featvis.get_config(demo.featvis.preset)
  for k, v in demo.featvis.overrides.items():
    cfg[k] = v
  cfg.batch = demo.featvis.batch
  units = list(demo.units) + [u.split("@")[0] for u in tuple(demo.catch) + tuple(demo.practice)]
  units = units[:demo.featvis.units_per_call]
  _, first = jax_steps_per_s(model, units, cfg, 0)
  return first, len(units)


def run(quick: bool = False) -> list[dict]:
  """Rows for `benchmarks/run_all.py`: the paper's featvis step vs the PyTorch loop (goal 2x),
  its fraction of the measured matmul peak (goal 30 %), the demo program's compile time (60 s)."""
  import torch
  from benchmarks.common import peak_flops
  model = models.load("googlenet_bvlc", SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz")
  cfg = featvis.get_config("zimmermann2021")
  # Interleaved: each round times a few cv_jax steps, the PyTorch loop in NCHW, the same in
  # channels-last and the matmul peak, so that the machine's drift hits every side alike;
  # the figures are the medians over the rounds. Warm-up first, on every side: the first run
  # of each of cv_jax's five scale branches is slow (fresh buffers), so 25 steps (every branch
  # drawn with probability > 0.99), and 3 for each PyTorch layout (its stepper did one).
  steps, rounds, warm = (1, 1, 1) if quick else (3, 5, 25)
  jrun, jfirst = jax_stepper(model, ["mixed4a/pool:42"], cfg)
  jrun(warm)
  layouts = (("NCHW", False), ("channels-last", True))
  tsteps = {name: torch_stepper(model, cfg.batch, cfg.size, channels_last=cl) for name, cl in layouts}
  for name, _ in layouts:
    for _ in range(min(warm, 3)):
      tsteps[name]()
  rates = {"jax": [], **{name: [] for name, _ in layouts}}
  peaks = []
  for _ in range(rounds):
    jt = steps / jrun(steps)
    tt = {}
    for name, _ in layouts:
      t = time.perf_counter()
      for _ in range(steps):
        tsteps[name]()
      tt[name] = steps / (time.perf_counter() - t)
    pk = peak_flops()
    rates["jax"].append(jt)
    for name in tt:
      rates[name].append(tt[name])
    peaks.append(pk)
  jr = float(np.median(rates["jax"]))
  by_layout = {name: float(np.median(rates[name])) for name, _ in layouts}
  layout = max(by_layout, key=by_layout.get)
  tr = by_layout[layout]
  peer = (f"PyTorch {torch.__version__} loop, {torch.get_num_threads()} threads, {layout} (the "
          f"faster here: " + ", ".join(f"{k} {v:.3f}" for k, v in by_layout.items()) +
          " steps/s): same FFT/colour parameterisation, crop/interpolate/grid_sample transforms, "
          "full forward, autograd, Adam")
  rows = [dict(path="feature-visualisation step, batch 9, 256 px canvas", unit="steps/s",
               command="benchmarks/featvis_speed.py", cv_jax=jr, peer=tr, peer_what=peer, goal=2.0,
               notes=f"compile + first step {jfirst:.0f} s (5 scale branches); medians of "
                     f"{rounds} interleaved rounds of {steps} steps per side after a warm-up "
                     f"({warm} cv_jax steps; cv_jax "
                     + ", ".join(f"{v:.2f}" for v in rates["jax"]) + " steps/s)")]
  jpeak, tpeak = (float(np.median([p[i] for p in peaks])) for i in (0, 1))
  fl = step_flops(model, cfg)
  rows.append(dict(path="feature-visualisation step, % of measured matmul peak", unit="%",
                   command="benchmarks/featvis_speed.py", cv_jax=100 * jr * fl / jpeak,
                   peer=100 * tr * fl / jpeak, peer_what="same FLOPs, PyTorch loop", goal_abs=30.0,
                   notes=f"{fl / 1e9:.0f} GFLOP/step (convs fwd + input grad); peak {jpeak / 1e9:.0f}"
                         f" GFLOP/s jax matmul ({tpeak / 1e9:.0f} torch), median of the rounds' "
                         "measurements"))
  if not quick:
    first, n = demo_compile_seconds(model)
    rows.append(dict(path=f"compile, demo featvis program ({n} units)", unit="s",
                     command="benchmarks/featvis_speed.py", cv_jax=first, peer=None,
                     peer_what="-", goal_max=60.0, notes="compile + first step"))
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--batch", type=int, default=9)
  ap.add_argument("--size", type=int, default=224)
  ap.add_argument("--units", type=int, default=4, help="N for the one-program vs one-at-a-time table")
  ap.add_argument("--unit_batch", type=int, default=1)
  ap.add_argument("--skip_torch", action="store_true")
  ap.add_argument("--skip_units", action="store_true")
  ap.add_argument("--compile_only", action="store_true",
                  help="only time compiling the demo experiment's featvis program")
  args = ap.parse_args()
  model = models.load("googlenet_bvlc", SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz")
  cfg = featvis.get_config("zimmermann2021")
  cfg.batch, cfg.size = args.batch, args.size
  if args.compile_only:
    first, n = demo_compile_seconds(model)
    print(f"demo featvis program ({n} units): compile + first step {first:.1f} s")
    return
  print(f"device: {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores; batch {args.batch}, "
        f"{args.size}px (+16 pad), timed steps {args.steps}")
  jr, jfirst = jax_steps_per_s(model, ["mixed4a/pool:42"], cfg, args.steps)
  rows = [("cv_jax (one compiled loop, forward to mixed4a)", jr, jfirst)]
  print(f"cv_jax: {jr:.3f} steps/s, compile + first step {jfirst:.1f}s", flush=True)
  if not args.skip_torch:
    for name, cl in (("NCHW", False), ("channels-last", True)):
      r = torch_loop(model, args.steps, args.batch, args.size, channels_last=cl)
      rows.append((f"PyTorch loop, {name} (full forward each step)", r, float("nan")))
    tr = max(r for _, r, _ in rows[1:])
  print("\n| implementation | steps/s | compile + first step (s) |\n|---|---|---|")
  for name, r, f in rows:
    print(f"| {name} | {r:.3f} | {f:.1f} |")
  if not args.skip_torch:
    print(f"\nspeed-up cv_jax / PyTorch: {jr / tr:.2f}x")
  if args.skip_units:
    return
  # N units in one program vs one at a time (same layer -> the single-unit program is shared).
  cfg1 = featvis.get_config("zimmermann2021")
  cfg1.batch, cfg1.size = args.unit_batch, args.size
  names = [f"mixed4a/pool:{i}" for i in range(args.units)]
  rn, fn = jax_steps_per_s(model, names, cfg1, args.steps)
  r1, f1 = jax_steps_per_s(model, names[:1], cfg1, args.steps)
  full = cfg1.steps
  per_min_n = 60 * args.units / (full / rn)
  per_min_1 = 60 / (full / r1)
  print(f"\nunits per minute at {full} steps, batch {args.unit_batch} (excluding compilation):")
  print("| mode | steps/s | units/min | compile + first step (s) |\n|---|---|---|---|")
  print(f"| {args.units} units in one program | {rn:.3f} | {per_min_n:.3f} | {fn:.1f} |")
  print(f"| one unit at a time | {r1:.3f} | {per_min_1:.3f} | {f1:.1f} |")
  print(f"ratio (one program / one at a time): {per_min_n / per_min_1:.2f}x")


if __name__ == "__main__":
  main()
