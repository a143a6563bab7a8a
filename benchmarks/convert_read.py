"""Read speed of the weight converters on full-size files, against the strongest peers.

    PYTHONPATH=. python benchmarks/convert_read.py [--repeats=5]

Files are written to a temporary directory: the BVLC blobs (../shared, else random arrays of the
same shapes) as .caffemodel (V1 and V2 encodings), random InceptionV1 weights as a Lucent-named
.pth (zip and legacy formats; needs torch) and as a TF .pb. Peers: `torch.load` for .pth,
`np.load` of the equivalent .npz for the Caffe blobs. Prints one table (best of N, seconds).
"""

from __future__ import annotations

import pathlib
import tempfile
import time

import numpy as np
from absl import app, flags

from cv_jax import weights as W
from cv_jax.models.spec import SPECS
from cv_jax.weights.formats import caffe, tf_graph, torch_pickle

flags.DEFINE_integer("repeats", 5, "Timing repeats (best is reported).")
FLAGS = flags.FLAGS
NPZ = pathlib.Path(__file__).resolve().parents[2] / "shared/models/bvlc_googlenet/bvlc_googlenet_blobs.npz"


def best(fn, n):
  ts = []
  for _ in range(n):
    t = time.perf_counter()
    fn()
    ts.append(time.perf_counter() - t)
  return min(ts)


def main(argv):
  del argv
  n = FLAGS.repeats
  rows = []
  with tempfile.TemporaryDirectory() as d:
    d = pathlib.Path(d)
    if NPZ.exists():
      npz = NPZ
      with np.load(npz) as z:
        blobs = {k: z[k] for k in z.files}
    else:
      rng = np.random.default_rng(0)
      blobs = {}
      for name, (k, cin, cout) in SPECS["googlenet_bvlc"].conv_layers(False).items():
        shape = (cout, cin) if k == 0 else (cout, cin, k, k)
        blobs[f"{name}/weights"] = rng.standard_normal(shape).astype(np.float32)
        blobs[f"{name}/bias"] = rng.standard_normal(cout).astype(np.float32)
      npz = d / "blobs.npz"
      np.savez(npz, **blobs)
    t_npz = best(lambda: {k: v for k, v in np.load(npz).items()}, n)
    for enc in ("v2", "v1"):
      p = caffe.write_caffemodel(d / f"{enc}.caffemodel", blobs, enc)
      rows.append((f".caffemodel {enc}", p.stat().st_size, best(lambda: caffe.read_caffemodel(p), n),
                   "np.load .npz", t_npz))
    params = W.init_params(SPECS["inceptionv1"], 0)
    consts = {f"{l}_{s}": v for l, dd in params.items() for s, v in (("w", dd["kernel"]), ("b", dd["bias"]))}
    p = tf_graph.write_graphdef(d / "g.pb", consts)
    rows.append((".pb (tensor_content)", p.stat().st_size, best(lambda: tf_graph.read_constants(p), n),
                 "-", float("nan")))
    try:
      import torch
    except ImportError:
      torch = None
    if torch is not None:
      sd = {}
      for l, dd in params.items():
        suffix = "_pre_activation_matmul" if dd["kernel"].ndim == 2 else "_pre_relu_conv"
        w = dd["kernel"].T if dd["kernel"].ndim == 2 else dd["kernel"].transpose(3, 2, 0, 1)
        sd[f"{l}{suffix}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        sd[f"{l}{suffix}.bias"] = torch.from_numpy(dd["bias"])
      for zipped in (True, False):
        p = d / f"w{int(zipped)}.pth"
        torch.save(sd, p, _use_new_zipfile_serialization=zipped)
        peer = best(lambda: torch.load(p, map_location="cpu", weights_only=True), n)
        rows.append((f".pth {'zip' if zipped else 'legacy'}", p.stat().st_size,
                     best(lambda: torch_pickle.load_state_dict(p), n), "torch.load", peer))
  print(f"{'file':22s} {'MB':>7s} {'cv_jax s':>9s} {'peer':>14s} {'peer s':>8s} {'ratio':>6s}")
  for name, size, ours, peer_name, peer in rows:
    print(f"{name:22s} {size / 1e6:7.1f} {ours:9.4f} {peer_name:>14s} {peer:8.4f} {ours / peer:6.2f}")
  return 0


if __name__ == "__main__":
  app.run(main)
