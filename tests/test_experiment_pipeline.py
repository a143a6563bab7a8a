"""End-to-end: the `tiny` experiment config on real BVLC weights and sample images.

Checks the output schema, that every trial's max image really is the more activating one (by an
independent forward pass of the saved PNGs), the occluded images themselves, reproducibility of
a whole run, per-item resume, and the fingerprint guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(workdir, images_dir, weights=None, **kw):
  from cv_jax.experiment.config import get_config
  c = get_config("tiny")
  c.workdir = str(workdir)
  c.data.source = f"folder:{images_dir}"
  if weights is not None:
    c.model.weights = str(weights)
  for k, v in kw.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


def _digest(root: pathlib.Path) -> dict[str, str]:
  """sha1 of every stimulus file (PNG / npy) under root/stimuli."""
  return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
          for p in sorted((root / "stimuli").rglob("*")) if p.suffix in (".png", ".npy")}


def _doc(root: pathlib.Path) -> dict:
  d = json.loads((root / "experiment.json").read_text())
  d["config"].pop("workdir")
  return d


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, bvlc_npz, sample_images):
  """Run A: the README quickstart command (`python -m cv_jax.experiment`), tiny config."""
  root = tmp_path_factory.mktemp("exp_a")
  images = sample_images[0].parent
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  cmd = [sys.executable, "-m", "cv_jax.experiment",
         f"--config={REPO / 'configs' / 'experiment.py'}:tiny", f"--workdir={root}",
         f"--images=folder:{images}", f"--weights={bvlc_npz}", "--noprogress"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Cohen's kappa" in proc.stdout and "report:" in proc.stdout, proc.stdout
  cfg = _config(root, images, bvlc_npz)
  return root, cfg, proc.stdout


def test_schema_and_contents(run_a, bvlc_model):
  from cv_jax.experiment import schema
  root, cfg, summary = run_a
  doc = json.loads((root / "experiment.json").read_text())
  schema.validate(doc, root)  # JSON-Schema + semantic checks + every referenced file exists
  written = json.loads((root / "experiment.schema.json").read_text())
  assert written == json.loads(json.dumps(schema.SCHEMA))
  assert doc["schema_version"] == schema.SCHEMA_VERSION
  roles = sorted(t["role"] for t in doc["trials"])
  assert roles == ["catch"] + ["main"] * 4 + ["practice"]
  assert len(doc["tasks"]) == 5 * cfg.tasks.n_tasks
  assert {c: v["n_references"] for c, v in doc["conditions"].items()} == {
      "synthetic": 9, "natural": 9, "mixed": 9, "blur": 9, "none": 0}
  for t in doc["trials"]:
    assert t["references"]["mixed"][:4] == [
        u for u in doc["units"] if u["id"] == t["unit"]][0]["synthetic"]["4"]
    assert t["references"]["mixed"][4:] == t["references"]["natural"][4:]
    if t["role"] == "main":
      assert set(t["baselines"]) == {"center", "center_published", "variance", "saliency"}
  assert "report" in summary and "ran" in summary
  res = json.loads((root / "results.json").read_text())
  assert res["n_units"] == 2 and res["n_sets"] == 2
  assert set(res["accuracy"]) == {"center", "center_published", "variance", "saliency"}
  html = (root / "report" / "report.html").read_text()
  assert "Cohen's kappa" in html and "31 ± 12" in html
  for u in doc["units"]:
    if u["role"] == "main":
      assert (root / "report" / f"unit_{u['id']}.png").exists()


def test_every_max_image_is_more_activating(run_a, bvlc_model, sample_images):
  from PIL import Image
  from cv_jax.data import load_image
  root, cfg, _ = run_a
  doc = json.loads((root / "experiment.json").read_text())
  units = {u["id"]: u for u in doc["units"]}
  size, stride = cfg.occlusion.size, cfg.occlusion.stride
  for t in doc["trials"]:
    u = units[t["unit"]]
    a = t["activations"]
    assert a["max"] > a["min"], t["id"]
    ims = {k: np.asarray(Image.open(root / p).convert("RGB"), np.float32) / 255
           for k, p in t["images"].items()}
    # Independent forward pass of the saved PNGs.
    out = bvlc_model(np.stack([ims["base"], ims["max"], ims["min"]]), (u["layer"],))[u["layer"]]
    acts = np.asarray(out).mean(axis=(1, 2))[:, u["channel"]]
    assert acts[1] > acts[2], t["id"]
    np.testing.assert_allclose(acts, [t["activations_png"][k] for k in ("base", "max", "min")],
                               rtol=1e-4, atol=1e-4)
    # The query is the swept image (quantised), and each occluded image differs from it only
    # inside its patch, which is filled with the patch's mean colour.
    src = load_image(t["query"]["path"])
    np.testing.assert_allclose(ims["base"], np.round(src * 255) / 255, atol=1.01 / 255)
    for key in ("max", "min"):
      r, c = t["occlusion"][key]
      assert r % stride == 0 and c % stride == 0
      inside = np.zeros(src.shape[:2], bool)
      inside[r:r + size, c:c + size] = True
      np.testing.assert_array_equal(ims[key][~inside], ims["base"][~inside])
      mean = src[r:r + size, c:c + size].reshape(-1, 3).mean(0)
      np.testing.assert_allclose(ims[key][inside], np.broadcast_to(mean, ims[key][inside].shape),
                                 atol=1.01 / 255)
    # Positions are the first arg-max / arg-min of the stored map.
    m = np.load(root / t["occlusion"]["map"])
    assert m.max() == pytest.approx(a["max"], rel=1e-6)
    assert m.min() == pytest.approx(a["min"], rel=1e-6)
    rx, cx = np.unravel_index(np.argmax(m), m.shape)
    rn, cn = np.unravel_index(np.argmin(m), m.shape)
    assert t["occlusion"]["max"] == [rx * stride, cx * stride]
    assert t["occlusion"]["min"] == [rn * stride, cn * stride]
    if t.get("catch"):
      assert t["catch"]["min_activation"] < a["max"]


def test_reproducible_and_resumable(run_a, bvlc_model, tmp_path, sample_images):
  from cv_jax.experiment import pipeline
  root_a, cfg_a, _ = run_a
  # Copy run A, then drop one trial's occlusion results and every stage from occlusion on, as
  # if the run had been killed inside the occlusion stage. Resuming must rebuild exactly A.
  root_b = tmp_path / "b"
  shutil.copytree(root_a, root_b)
  victim = next((root_b / "stimuli").glob("*/set01"))
  for f in ("occlusion.json", "occlusion_map.npy", "query_max.png", "query_min.png"):
    (victim / f).unlink()
  for stage in ("occlusion", "blur", "trials", "baselines", "report"):
    (root_b / "stages" / f"{stage}.json").unlink()
  (root_b / "experiment.json").unlink()
  cfg_b = _config(root_b, sample_images[0].parent, cfg_a.model.weights)
  summary = pipeline.run(cfg_b, progress=False, log=lambda s: None, model=bvlc_model)
  assert [summary["stages"][s][0] for s in pipeline.STAGES] == (
      ["skipped (done)"] * 3 + ["ran"] * 5)
  assert _digest(root_b) == _digest(root_a)
  doc_a, doc_b = _doc(root_a), _doc(root_b)
  assert json.dumps(doc_a, sort_keys=True) == json.dumps(doc_b, sort_keys=True)
  # Everything done: a second call skips every stage.
  summary = pipeline.run(cfg_b, progress=False, log=lambda s: None, model=bvlc_model)
  assert all(v[0] == "skipped (done)" for v in summary["stages"].values())
  # Changed settings for a finished stage are refused, not silently mixed.
  cfg_c = _config(root_b, sample_images[0].parent, cfg_a.model.weights,
                  **{"occlusion.stride": 45})
  with pytest.raises(ValueError, match="different settings"):
    pipeline.run(cfg_c, progress=False, log=lambda s: None, model=bvlc_model)


def test_seed_changes_synthetic_images_and_tasks_and_is_reproducible(run_a, bvlc_model, tmp_path, sample_images):
  from cv_jax.experiment import pipeline
  root_a, cfg_a, _ = run_a
  root = tmp_path / "seed"
  shutil.copytree(root_a, root)
  for stage in ("featvis", "trials", "baselines", "report"):
    (root / "stages" / f"{stage}.json").unlink()
  for p in (root / "stimuli").glob("*/featvis*.json"):
    p.unlink()
  cfg = _config(root, sample_images[0].parent, cfg_a.model.weights, seed=1,
                **{"tasks.seed": 2})
  pipeline.run(cfg, progress=False, log=lambda s: None, model=bvlc_model)
  da, db = _digest(root_a), _digest(root)
  syn = [k for k in da if "synthetic" in k]
  assert syn and all(da[k] != db[k] for k in syn)
  assert all(da[k] == db[k] for k in da if "synthetic" not in k)
  assert _doc(root_a)["tasks"] != _doc(root)["tasks"]
  # Back to seed 0: the feature visualizations are bit-identical to run A's again.
  for stage in ("featvis", "trials", "baselines", "report"):
    (root / "stages" / f"{stage}.json").unlink()
  for p in (root / "stimuli").glob("*/featvis*.json"):
    p.unlink()
  pipeline.run(_config(root, sample_images[0].parent, cfg_a.model.weights), progress=False,
               log=lambda s: None, model=bvlc_model)
  assert _digest(root) == da
  assert json.dumps(_doc(root), sort_keys=True) == json.dumps(_doc(root_a), sort_keys=True)


def test_human_analysis_on_the_pipelines_experiment(run_a, tmp_path):
  """Simulated participants on the real tiny experiment -> `cv-jax human analyze`: every figure,
  the planted exclusion, the baseline kappas equal results.json, the report links it."""
  from cv_jax.experiment import report as machine_report
  from cv_jax.human import export_format, report, simulate
  root = run_a[0]
  doc = json.loads((root / "experiment.json").read_text())
  sim = simulate.simulate(doc, policy="irt", root=root, misbehave=["skim@1"], seed=0)
  export = simulate.write_offline(sim, tmp_path / "export", export_format.experiment_sha256(root))
  results, html = report.run(export, root, tmp_path / "human")
  assert html.is_file() and len(list((tmp_path / "human").glob("*.png"))) == 10
  assert results["counts"]["all"]["excluded_per_criterion"]["instruction_time"] == 1
  assert results["counts"]["all"]["included"] == len(doc["tasks"]) - 1
  machine = json.loads((root / "results.json").read_text())["kappa"]
  k = results["kappa"]
  for i, a in enumerate(machine["names"]):
    for j, b in enumerate(machine["names"]):
      if i < j and a in k["names"] and b in k["names"]:
        p, q = k["names"].index(a), k["names"].index(b)
        if machine["nan_sets"][f"{a}|{b}"] == 0:
          assert k["mean100"][p][q] == machine["mean100"][i][j], (a, b)
  assert f"../{machine_report.HUMAN_REPORT}" in (root / "report" / "report.html").read_text()
