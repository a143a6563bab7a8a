"""`cv-jax mis` / `python -m cv_jax.mis`: MIS of every unit of the requested layers.

    cv-jax mis --model=googlenet_bvlc --weights=bvlc_googlenet_blobs.npz \
        --source=folder:/data/images --out=runs/mis
    cv-jax mis --model=googlenet_bvlc --sweep=runs/demo/sweep --source=folder:/data/images \
        --embedding=embeddings.npz --human=human_accuracy.csv

Writes <out>/mis_scores.{json,csv}, <out>/mis_deltas.npz, <out>/report/report.html and, for a
computed embedding, <out>/embeddings.npz (reusable with --embedding=<out>/embeddings.npz).
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def _define(kind: str, name: str, default, help_: str) -> None:
  if name not in FLAGS:
    getattr(flags, f"DEFINE_{kind}")(name, default, help_)


_define("string", "model", "googlenet_bvlc", "Model whose units are scored.")
_define("string", "weights", None, "Weights of --model (default: $CV_JAX_HOME, then download).")
_define("string", "source", None, "Image source: folder:/path or tfds:name:split (required "
        "unless --sweep names a sweep whose recorded source is readable).")
_define("list", "layers", None, "Layers to score (default: the nine mixedXX_pre_relu).")
_define("string", "sweep", None, "A saved sweep folder (sweep_result.json) to reuse instead "
        "of sweeping.")
_define("string", "out", "runs/mis", "Output folder.")
_define("string", "embedding", "network", "network (a cv_jax network's pooled features; not the "
        "paper's similarity), dreamsim (needs the dreamsim package and local weights), or a "
        "path to an embeddings file (.npz with embeddings+paths, or .npy one row per image).")
_define("string", "embedding_model", None, "Network of --embedding=network (default: --model).")
_define("string", "embedding_weights", None, "Its weights (default: --weights if the same "
        "model).")
_define("string", "embedding_layer", "avgpool0", "Its layer (default avgpool0: pooled "
        "penultimate features).")
_define("string", "dreamsim_cache", None, "Folder holding DreamSim's checkpoint files.")
_define("integer", "k", 9, "K: explanations per side of a task.")
_define("integer", "n_tasks", 20, "N: tasks per unit.")
_define("float", "quantile", 0.1, "q: pools are the top / bottom ceil(q * n) images.")
_define("string", "alpha", "none", "alpha of sigma(alpha * Delta), or 'none' (default) for the "
        "fraction of tasks solved (0.16 is the reference code's calc_MIS_set default).")
_define("integer", "seed", 0, "PRNG seed of the task draws.")
_define("string", "human", None, "Per-unit human 2-AFC accuracy CSV (unit, accuracy[, n_trials, "
        "model]) to report agreement and fit alpha.")
_define("integer", "batch_size", 32, "Images per forward pass.")
_define("integer", "chunk", 64, "Units vmapped together in the scoring program.")
_define("boolean", "progress", True, "Progress bars.")
_define("integer", "random_init", -1, ">= 0: random weights with this seed instead of --weights "
        "(tests, benchmarks; the scores then mean nothing).")


class UsageError(ValueError):
  """A bad flag value (printed as one line)."""


def _alpha(text: str) -> float | None:
  if text.strip().lower() in ("none", "null", ""):
    return None
  try:
    return float(text)
  except ValueError:
    raise UsageError(f"--alpha must be a number or 'none', got {text!r}") from None


def _log(s: str) -> None:
  print(s, file=sys.stderr, flush=True)


def mis_main() -> dict:
  """Run the job the flags describe; returns the summary printed as JSON."""
  import numpy as np
  from cv_jax import models
  from cv_jax.data import open_source
  from cv_jax.mis import human as human_lib
  from cv_jax.mis import report
  from cv_jax.mis.job import run_mis
  from cv_jax.sweep import SweepResult

  alpha = _alpha(FLAGS.alpha)
  source = FLAGS.source
  if source is None:
    if not FLAGS.sweep:
      raise UsageError("no images: pass --source=folder:/path (and optionally --sweep=DIR)")
    source = (SweepResult.load(FLAGS.sweep).info or {}).get("source")
    if not source:
      raise UsageError(f"the sweep in {FLAGS.sweep} records no source; pass --source")
  src = open_source(source)
  # Cheap checks first, so bad input fails before the model loads.
  from cv_jax.mis.embeddings import check_embedding
  from cv_jax.mis.pools import pool_size
  check_embedding(FLAGS.embedding, FLAGS.dreamsim_cache)
  p = pool_size(len(src), FLAGS.quantile)
  if p < FLAGS.k + 1:
    raise UsageError(f"q = {FLAGS.quantile} of {len(src)} images gives pools of {p} images, but "
                     f"MIS needs K + 1 = {FLAGS.k + 1}; use more images, a larger --quantile or "
                     "a smaller --k")
  if FLAGS.random_init >= 0:
    model = models.load(FLAGS.model, random_init=FLAGS.random_init)
  else:
    model = models.load(FLAGS.model, FLAGS.weights)
  emodel = None
  if FLAGS.embedding == "network":
    ename = FLAGS.embedding_model or FLAGS.model
    if ename != FLAGS.model or FLAGS.embedding_weights:
      eweights = FLAGS.embedding_weights or (FLAGS.weights if ename == FLAGS.model else None)
      emodel = models.load(ename, eweights)
  res = run_mis(model, src, layers=FLAGS.layers, sweep_dir=FLAGS.sweep, workdir=FLAGS.out,
                embedding=FLAGS.embedding, embedding_model=emodel,
                embedding_layer=FLAGS.embedding_layer, dreamsim_cache=FLAGS.dreamsim_cache,
                k=FLAGS.k, n_tasks=FLAGS.n_tasks, quantile=FLAGS.quantile, alpha=alpha,
                seed=FLAGS.seed, batch_size=FLAGS.batch_size, chunk=FLAGS.chunk,
                progress=FLAGS.progress, log=_log)
  if FLAGS.human:
    table = human_lib.read_accuracy_table(FLAGS.human)
    for row in table:  # accept "block/branch:index" as well as "layer:channel"
      try:
        row["unit"] = str(models.Unit.parse(row["unit"], model))
      except ValueError:
        pass
    key = "accuracy" if alpha is None else "mis"
    scores = dict(zip(res.units, res.scores[key].tolist()))
    res.human = human_lib.agreement(scores, table)
    res.human["score"] = key
    index = {u: i for i, u in enumerate(res.units)}
    rows = [r for r in table if r["unit"] in index]
    res.human["fit"] = human_lib.fit_alpha(res.scores["deltas"][[index[r["unit"]] for r in rows]],
                                           [r["accuracy"] for r in rows])
  paths = report.write_scores(FLAGS.out, res)
  if FLAGS.embedding in ("network", "dreamsim"):
    # The computed embeddings, reusable with --embedding=<out>/embeddings.npz.
    arr = res.similarity.array
    rows = np.flatnonzero(np.isfinite(arr).all(axis=1))
    np.savez(pathlib.Path(FLAGS.out) / "embeddings.npz", embeddings=arr[rows],
             paths=np.asarray([res.paths[i] for i in rows]), label=res.similarity.label)
  html = report.write_report(FLAGS.out, res, src)
  acc = res.scores["accuracy"]
  summary = dict(model=res.model, units=len(res.units), images=res.pools.n_images,
                 similarity=res.similarity.note, mean_accuracy=float(np.nanmean(acc)),
                 mean_mis=float(np.nanmean(res.scores["mis"])), timings=res.timings,
                 scores=str(paths["json"]), csv=str(paths["csv"]), report=str(html))
  if res.human:
    summary["human_spearman"] = res.human["spearman_units"]
  return summary


def main(argv) -> None:
  """absl entry point: one-line errors, exit code 1."""
  if len(argv) > 1:
    print(f"cv-jax mis: error: unexpected arguments {' '.join(argv[1:])}; every input is a "
          "flag (cv-jax mis --help)", file=sys.stderr)
    sys.exit(1)
  from cv_jax.models import WeightsError
  try:
    summary = mis_main()
  except (ValueError, ImportError, OSError, WeightsError) as e:
    msg = " ".join(str(e).split())
    print(f"cv-jax mis: error: {msg}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
