"""The 2-AFC exemplar task (cv_jax.experiment.exemplar_2afc, stages_2afc, schema_2afc).

The trial builder is checked against a full sort of an activation matrix; the predecessor mode
against the ICLR selection (cv_jax.sweep.select_exemplars, itself checked against the paper's
notebook); the tiny pipeline end to end on real BVLC weights, with every query's and reference's
activation recomputed from the saved PNGs.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from cv_jax.data.png import load_png
from cv_jax.experiment import exemplar_2afc as x2
from cv_jax.experiment import schema as schema_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _ranked(a):
  ids = np.arange(a.size)
  return np.lexsort((ids, -a)), np.lexsort((ids, a))  # most / least activating first


@pytest.mark.parametrize("n,bins,b,p", [(1000, 9, 10, 0.1), (600, 9, 20, 0.35), (300, 4, 7, 0.2)])
def test_builder_against_full_sort(n, bins, b, p):
  rng = np.random.default_rng(n)
  a = rng.normal(size=n)
  top, bot = _ranked(a)
  need = x2.required_depth(n, bins, b, p)
  sel = x2.select_2afc(top[:need], bot[:need], n, channel=5, n_references=bins, bin_size=b,
                       query_percentile=p, seed=3)
  start = int(round(p * n))
  desc = np.argsort(np.argsort(-a, kind="stable"), kind="stable")  # 0-based rank from the top
  asc = np.argsort(np.argsort(a, kind="stable"), kind="stable")
  for side, rank_of in (("max", desc), ("min", asc)):
    s = sel[side]
    # Queries: exactly the window [start, start + B) of the full sort, one per image set.
    assert sorted(rank_of[s["query"]]) == list(range(start, start + b))
    np.testing.assert_array_equal(s["query_rank"], rank_of[s["query"]] + 1)
    # References: bin k of every image set holds ranks [kB, (k+1)B), each image once.
    for k in range(bins):
      assert sorted(rank_of[s["references"][:, k]]) == list(range(k * b, (k + 1) * b))
    np.testing.assert_array_equal(s["reference_ranks"], rank_of[s["references"]] + 1)
    # Queries are less extreme than every reference.
    assert (rank_of[s["query"]] > rank_of[s["references"]].max()).all()
  # Max side activations above min side.
  assert a[sel["max"]["query"]].min() > a[sel["min"]["query"]].max()
  # Deterministic, and a different seed permutes differently.
  again = x2.select_2afc(top[:need], bot[:need], n, channel=5, n_references=bins, bin_size=b,
                         query_percentile=p, seed=3)
  np.testing.assert_array_equal(again["max"]["references"], sel["max"]["references"])
  other = x2.select_2afc(top[:need], bot[:need], n, channel=5, n_references=bins, bin_size=b,
                         query_percentile=p, seed=4)
  assert not np.array_equal(other["max"]["references"], sel["max"]["references"])


def test_predecessor_mode_and_errors():
  from cv_jax.sweep import select_exemplars
  a = np.random.default_rng(0).normal(size=500)
  top, bot = _ranked(a)
  sel = x2.select_2afc(top[:200], bot[:200], 500, channel=41, query_percentile=None)
  mx = select_exemplars(top[:200], seed=42, kind="max", permute_query_bin=True)
  mn = select_exemplars(bot[:200], seed=41, kind="min", permute_query_bin=True)
  np.testing.assert_array_equal(sel["max"]["query"], mx["query"])
  np.testing.assert_array_equal(sel["min"]["query"], mn["query"])
  assert sorted(sel["max"]["query_rank"]) == list(range(1, 21))
  assert sel["max"]["reference_ranks"][:, 0].min() == 21            # most extreme bin first
  assert sel["max"]["reference_ranks"][:, 8].max() == 200
  assert sorted(sel["min"]["reference_ranks"][:, 0]) == list(range(21, 41))
  assert set(sel["max"]["references"].ravel()) == set(mx["references"].ravel())
  with pytest.raises(ValueError, match="k >= 110"):
    x2.select_2afc(top[:100], bot[:100], 1000, channel=0, bin_size=10)
  with pytest.raises(ValueError, match="overlaps the references"):
    x2.select_2afc(top, bot, 500, channel=0, bin_size=10, query_percentile=0.1)


def _fake_doc():
  trials = []
  for u in ("u1", "u2"):
    for b, role in ((0, "main"), (1, "main")) + (((2, "catch"),) if u == "u1" else ()):
      refs = {side: [f"{u}/{b}/{side}_{k}.png" for k in range(9)] for side in ("max", "min")}
      queries = {"max": f"{u}/{b}/qmax.png", "min": f"{u}/{b}/qmin.png"}
      info = {s: dict(image_id=1, rank=3) for s in ("max", "min")}
      trials.append(dict(id=f"{u}/set{b:02d}", kind="exemplar_2afc", unit=u, image_set=b,
                         role=role, queries=queries, correct="max", query_info=info,
                         references={"natural": refs}))
  tasks = x2.make_tasks_2afc(trials, ["natural"], n_tasks=4, sets=[0, 1], seed=1)
  return {"schema": "cv_jax.experiment", "schema_version": schema_lib.SCHEMA_VERSION,
          "task": "exemplar_2afc", "generator": {"package": "cv_jax", "version": "0"},
          "model": {"name": "m"}, "selection": dict(n_references=9, bin_size=20,
                                                   query_percentile=0.1, n_images=1000),
          "conditions": {"natural": {"n_references": 9}},
          "units": [dict(id=u, unit=f"l:{i}", layer="l", channel=i, role="main")
                    for i, u in enumerate(("u1", "u2"))],
          "trials": trials, "tasks": tasks}


def test_tasks_and_schema():
  doc = _fake_doc()
  schema_lib.validate(doc)
  t1 = doc["tasks"][0]
  assert [e["trial"] for e in t1["trials"]].count("u1/set02") == 1
  assert sorted(e["trial"] for e in t1["trials"] if e["mode"] == "normal") == ["u1/set00",
                                                                               "u2/set00"]
  assert doc["tasks"][1]["image_set"] == 1
  for task in doc["tasks"]:
    for e in task["trials"]:
      for side in ("max", "min"):
        assert e["reference_order"][side][0] == 0
        assert sorted(e["reference_order"][side]) == list(range(9))
  sides = [e["max_side"] for t in doc["tasks"] for e in t["trials"]]
  assert "left" in sides and "right" in sides
  seen = x2.shown_2afc(doc, t1, t1["trials"][0])
  assert seen[seen["correct"]] == doc["trials"][
      [t["id"] for t in doc["trials"]].index(t1["trials"][0]["trial"])]["queries"]["max"]
  bad = copy.deepcopy(doc)
  bad["tasks"][0]["trials"][0]["reference_order"]["max"] = [1, 0, 2, 3, 4, 5, 6, 7, 8]
  with pytest.raises(schema_lib.SchemaError, match="starting with 0"):
    schema_lib.validate(bad)
  bad = copy.deepcopy(doc)
  bad["trials"][0]["references"]["natural"]["min"].pop()
  with pytest.raises(schema_lib.SchemaError, match="8 min references"):
    schema_lib.validate(bad)
  bad = copy.deepcopy(doc)
  bad["trials"][0]["correct"] = "min"
  with pytest.raises(schema_lib.SchemaError):
    schema_lib.validate(bad)


def test_tiny_pipeline_end_to_end(tmp_path, bvlc_model, sample_images):
  from cv_jax.experiment import pipeline
  spec = importlib.util.spec_from_file_location("exp_configs", REPO / "configs" / "experiment.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config("exemplar_2afc_tiny")
  c.workdir = str(tmp_path / "run")
  c.data.source = f"folder:{sample_images[0].parent}"
  summary = pipeline.run(c, progress=False, log=lambda s: None, model=bvlc_model)
  assert list(summary["stages"]) == list(pipeline.STAGES_2AFC)
  root = tmp_path / "run"
  doc = json.loads((root / "experiment.json").read_text())
  schema_lib.validate(doc, root)
  assert doc["task"] == "exemplar_2afc" and doc["selection"]["query_window"] == [33, 35]
  main = [t for t in doc["trials"] if t["role"] == "main"]
  catch = [t for t in doc["trials"] if t["role"] == "catch"]
  assert len(main) == 4 and len(catch) == 1 and len(doc["tasks"]) == 8
  acts = pipeline.ActivationFn.for_model(bvlc_model)
  for t in main + catch:
    u = next(x for x in doc["units"] if x["id"] == t["unit"])
    q = [load_png(root / t["queries"][s]) for s in ("max", "min")]
    refs = {s: [load_png(root / p) for p in t["references"]["natural"][s]]
            for s in ("max", "min")}
    a = acts(np.stack(q + refs["max"] + refs["min"]), u["layer"])[:, u["channel"]]
    q_max, q_min, r_max, r_min = a[0], a[1], a[2:11], a[11:]
    # Saved PNGs keep the ranking: max query above min query, references beyond queries.
    assert q_max > q_min
    if t["role"] == "main":
      assert r_max.min() >= q_max - 1e-3 * abs(q_max) - 0.05
      assert r_min.max() <= q_min + 1e-3 * abs(q_min) + 0.05
    else:
      assert t["queries"]["max"] == t["references"]["natural"]["max"][0]
    np.testing.assert_allclose(q_max, t["query_info"]["max"]["activation"], rtol=0.05, atol=0.5)
  syn = doc["units"][0]["synthetic_activations"]
  assert np.mean(syn["max"]) > np.mean(syn["min"])
  assert (root / "report" / "report.html").exists()
  again = pipeline.run(c, progress=False, log=lambda s: None, model=bvlc_model)
  assert all(v[0] == "skipped (done)" for v in again["stages"].values())
