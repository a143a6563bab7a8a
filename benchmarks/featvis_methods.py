"""Speed of the feature-visualisation priors: Lucid FFT, MACO, accentuation, DGN-AM.

For each method: U units in ONE compiled program against the peer "one objective per run"
(Xplique's MACO and faccent render one objective per call): the same U units rendered one call
each, reusing the compiled one-unit program. Both after compilation; compile time reported.

    PYTHONPATH=. python benchmarks/featvis_methods.py [--quick]

`run(quick) -> rows` is the entry point for the benchmark table (`benchmarks/run_all.py`).
Rows (run_all's schema): `path`, `unit` ("unit-steps/s": units × steps per second),
`cv_jax` (U units in one program), `peer` (one unit per call), `peer_what`, `command`, `notes`,
`goal` (1.0: batching must not lose), plus `method`, `compile_s`, `ratio`, `load_before/after`. The model is BVLC GoogLeNet (real weights
when ../shared is present, else random weights: same speed); DGN-AM uses a random-weight fc6
generator (the real one is not redistributable; speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax
import numpy as np

from cv_jax import featvis, models

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CV_JAX_SHARED", ROOT.parent / "shared"))
UNITS = ("mixed3a_pre_relu:10", "mixed3a_pre_relu:20", "mixed3b_pre_relu:30",
         "mixed3b_pre_relu:40")


def _load() -> float:
  return os.getloadavg()[0]


def _model():
  npz = SHARED / "models" / "bvlc_googlenet" / "bvlc_googlenet_blobs.npz"
  return models.load("googlenet_bvlc", npz) if npz.exists() else \
      models.load("googlenet_bvlc", random_init=0)


def _configs(quick: bool):
  """(method, config, render kwargs, description) for each method."""
  from cv_jax.models import deepsim
  from cv_jax.weights.generator import load_generator
  steps = 4 if quick else 16
  out = []
  c = featvis.get_config("lucid")
  c.size, c.steps = (64 if quick else 128), steps
  out.append(("lucid_fft", c, {}, f"lucid preset, {c.size}px, batch 1"))
  c = featvis.get_config("maco")
  c.size, c.crops, c.crop_chunk, c.steps = (128 if quick else 512), (2 if quick else 8), \
      (2 if quick else 8), steps
  c.model_size = 96 if quick else 224
  out.append(("maco", c, {}, f"canvas {c.size}, {c.crops} crops -> {c.model_size}px"))
  c = featvis.get_config("accentuation")
  c.size, c.crops, c.steps = (96 if quick else 224), (2 if quick else 8), steps
  c.model_size = 96 if quick else 224
  seed = np.random.default_rng(0).uniform(size=(1, c.size, c.size, 3)).astype(np.float32)
  out.append(("accentuation", c, {"seed_images": seed},
              f"1 seed, {c.size}px, {c.crops} crops -> {c.model_size}px"))
  c = featvis.get_config("dgn_am")
  c.steps = steps
  spec = deepsim.narrow(deepsim.FC6, 4) if quick else deepsim.FC6
  gen = load_generator(spec=spec, random_init=0)
  out.append(("dgn_am", c, {"generator": gen},
              "fc6 generator" + (" (widths / 4)" if quick else "") + ", 224 crop"))
  return out


def _time(model, units, cfg, kw) -> float:
  t = time.perf_counter()
  featvis.render(model, units, cfg, progress=False, key=jax.random.PRNGKey(1), **kw)
  return time.perf_counter() - t


def run(quick: bool = True) -> list[dict]:
  """Rows of the method speed table (see module doc)."""
  model = _model()
  units = list(UNITS[:2] if quick else UNITS)
  rows = []
  for method, cfg, kw, setting in _configs(quick):
    load0 = _load()
    t0 = time.perf_counter()
    featvis.render(model, units, cfg, progress=False, **kw)  # compile (+ one run)
    first = time.perf_counter() - t0
    for u in units:  # compile the one-unit programs
      featvis.render(model, [u], cfg, progress=False, **kw)
    ours = _time(model, units, cfg, kw)
    peer = sum(_time(model, [u], cfg, kw) for u in units)
    steps = int(cfg.steps)
    ups, peer_ups = len(units) * steps / ours, len(units) * steps / peer
    rows.append({"path": f"featvis {method}: {len(units)} units in one program ({setting})",
                 "unit": "unit-steps/s", "command": "benchmarks/featvis_methods.py"
                 + (" --quick" if quick else ""), "cv_jax": round(ups, 3),
                 "peer": round(peer_ups, 3),
                 "peer_what": "cv_jax, the same units one call each (one objective per run, as "
                              "Xplique / faccent)",
                 "goal": 1.0, "notes": f"{steps} steps; compile {first - ours:.0f} s",
                 "method": method, "units": len(units), "steps": steps,
                 "compile_s": round(first - ours, 1), "ratio": round(peer / ours, 2),
                 "load_before": round(load0, 1), "load_after": round(_load(), 1)})
    print(rows[-1], flush=True)
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true")
  args = ap.parse_args()
  print(f"device: {jax.devices()[0].platform}, {os.cpu_count()} CPUs; load {os.getloadavg()}")
  rows = run(args.quick)
  print("\n| method | what | units | compile (s) | unit-steps/s (one program) | "
        "unit-steps/s (one unit per call) | ratio | load before / after |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['method']} | {r['path']} | {r['units']} | {r['compile_s']} | "
          f"{r['cv_jax']} | {r['peer']} | {r['ratio']}x | "
          f"{r['load_before']} / {r['load_after']} |")


if __name__ == "__main__":
  main()
