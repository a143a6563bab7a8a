"""Tasks, catch/practice trials and the JSON schema on a hand-made experiment document."""

from __future__ import annotations

import copy
import json

import pytest

from cv_jax.experiment import schema as S
from cv_jax.experiment import trials as T


def _trial(uid, b, role):
  d = f"stimuli/{uid}/set{b:02d}"
  refs = {"synthetic": [f"stimuli/{uid}/synthetic9_{k}.png" for k in range(9)],
          "natural": [f"{d}/natural_{k}.png" for k in range(9)],
          "mixed": [f"stimuli/{uid}/synthetic4_{k}.png" for k in range(4)]
          + [f"{d}/natural_{k}.png" for k in range(4, 9)],
          "blur": [f"{d}/blur_{k}.png" for k in range(9)], "none": []}
  return {"id": T.trial_id(uid, b), "unit": uid, "image_set": b, "role": role,
          "images": {k: f"{d}/query_{k}.png" for k in ("base", "max", "min")}, "correct": "max",
          "occlusion": {"max": [0, 2], "min": [4, 6], "size": 90, "map": None},
          "activations": {"base": 1.0, "min": 0.5, "max": 1.5}, "references": refs}


def _doc(seed=1, catch_mode="swap"):
  units = ["a", "b", "c"]
  trials = [_trial(u, b, "main") for b in range(2) for u in units]
  trials += [_trial("k", 0, "catch"), _trial("p", 3, "practice")]
  T.assign_catch_swaps(trials, catch_mode, seed=seed)
  tasks = T.make_tasks(trials, n_tasks=4, n_sets=2, seed=seed, practice=[T.trial_id("p", 3)])
  return {"schema": S.SCHEMA_NAME, "schema_version": S.SCHEMA_VERSION,
          "generator": {"package": "cv_jax", "version": "0"}, "model": {"name": "m"},
          "occlusion": {"size": 90, "stride": 2, "fill": "mean", "image_size": 224},
          "conditions": {c: {"n_references": S.N_REFERENCES[c]} for c in S.CONDITIONS}
          | {"mixed": {"n_references": 9, "n_synthetic": 4, "n_natural": 5}},
          "units": [{"id": u, "unit": f"l:{i}", "layer": "l", "channel": i,
                     "role": "main" if u in units else {"k": "catch", "p": "practice"}[u]}
                    for i, u in enumerate(units + ["k", "p"])],
          "trials": trials, "tasks": tasks}


def test_tasks_structure():
  doc = _doc()
  tasks = doc["tasks"]
  assert len(tasks) == 5 * 4
  trials = {t["id"]: t for t in doc["trials"]}
  for task in tasks:
    b = (task["index"] - 1) % 2
    assert task["image_set"] == b
    main = [trials[e["trial"]] for e in task["trials"] if e["mode"] == "normal"]
    # Every main unit exactly once, at the task's image set.
    assert sorted(t["unit"] for t in main) == ["a", "b", "c"]
    assert all(t["image_set"] == b for t in main)
    catch = [e for e in task["trials"] if e["mode"] == "catch_trial"]
    assert [e["trial"] for e in catch] == ["k/set00"]
    assert task["catch_trial_idxs"] == [i + 1 for i, e in enumerate(task["trials"])
                                        if e["mode"] == "catch_trial"]
    assert [e["trial"] for e in task["practice"]] == ["p/set03"]
    n = doc["conditions"][task["condition"]]["n_references"]
    for e in task["trials"]:
      assert sorted(e["reference_order"]) == list(range(n))
      if task["condition"] == "mixed":
        assert sorted(e["reference_order"][:4]) == [0, 1, 2, 3]
  # Same trial order and sides for task k in every condition (as in the paper); slots differ.
  by = {(t["condition"], t["index"]): t for t in tasks}
  for k in range(1, 5):
    seqs = {c: [(e["trial"], e["max_side"]) for e in by[(c, k)]["trials"]] for c in S.CONDITIONS}
    assert len({json.dumps(v) for v in seqs.values()}) == 1
  orders = [e["reference_order"] for t in tasks if t["condition"] == "natural"
            for e in t["trials"]]
  assert len({tuple(o) for o in orders}) > 1
  sides = [e["max_side"] for t in tasks for e in t["trials"]]
  assert {"left", "right"} <= set(sides)


def test_tasks_reproducible_per_seed():
  a, b, c = _doc(seed=1), _doc(seed=1), _doc(seed=2)
  assert json.dumps(a) == json.dumps(b)
  assert json.dumps(a["tasks"]) != json.dumps(c["tasks"])


def test_catch_swap_modes():
  doc = _doc(catch_mode="swap")
  k = next(t for t in doc["trials"] if t["role"] == "catch")
  assert k["catch"]["conditions"] == list(S.CONDITIONS)
  assert k["catch"]["min"] != k["images"]["min"]
  assert k["catch"]["min_source"] != k["id"]
  doc = _doc(catch_mode="paper")
  k = next(t for t in doc["trials"] if t["role"] == "catch")
  assert k["catch"]["conditions"] == ["none"]
  task_none = next(t for t in doc["tasks"] if t["condition"] == "none")
  task_nat = next(t for t in doc["tasks"] if t["condition"] == "natural")
  e = next(e for e in task_none["trials"] if e["mode"] == "catch_trial")
  shown = T.shown_images(doc, task_none, e)
  assert k["catch"]["min"] in (shown["left"], shown["right"])
  assert shown["references"] == []
  e = next(e for e in task_nat["trials"] if e["mode"] == "catch_trial")
  shown = T.shown_images(doc, task_nat, e)
  assert k["images"]["min"] in (shown["left"], shown["right"])
  assert shown[shown["correct"]] == k["images"]["max"]
  with pytest.raises(ValueError, match="catch mode"):
    T.assign_catch_swaps(doc["trials"], "obvious")


def test_make_tasks_errors():
  trials = [_trial("a", 0, "main")]
  with pytest.raises(ValueError, match="image set 1 has no trial"):
    T.make_tasks(trials, n_tasks=2, n_sets=2)
  with pytest.raises(ValueError, match="unknown condition"):
    T.make_tasks(trials, ["pure"], n_tasks=1, n_sets=1)
  with pytest.raises(ValueError, match="practice trial"):
    T.make_tasks(trials, n_tasks=1, n_sets=1, practice=["nope"])


def test_schema_validates_and_rejects():
  pytest.importorskip("jsonschema")
  doc = _doc()
  S.validate(doc)
  import jsonschema
  jsonschema.Draft202012Validator.check_schema(S.SCHEMA)
  bad = copy.deepcopy(doc)
  bad["tasks"][0]["trials"][0]["reference_order"] = [0] * 9
  with pytest.raises(S.SchemaError, match="permutation"):
    S.validate(bad)
  bad = copy.deepcopy(doc)
  bad["trials"][0]["correct"] = "min"
  with pytest.raises(S.SchemaError, match="correct"):
    S.validate(bad)
  bad = copy.deepcopy(doc)
  bad["schema_version"] = "2.0.0"
  with pytest.raises(S.SchemaError):
    S.validate(bad)
  bad = copy.deepcopy(doc)
  bad["trials"][0]["references"]["natural"] = bad["trials"][0]["references"]["natural"][:8]
  with pytest.raises(S.SchemaError, match="8 references"):
    S.validate(bad)
  bad = copy.deepcopy(doc)
  mixed = next(t for t in bad["tasks"] if t["condition"] == "mixed")
  mixed["trials"][0]["reference_order"] = list(range(8, -1, -1))
  with pytest.raises(S.SchemaError, match="synthetic"):
    S.validate(bad)
  bad = copy.deepcopy(doc)
  bad["tasks"][0]["trials"][0]["trial"] = "zz/set00"
  with pytest.raises(S.SchemaError, match="unknown trial"):
    S.validate(bad)


def test_schema_checks_files(tmp_path):
  doc = _doc()
  with pytest.raises(S.SchemaError, match="missing"):
    S.validate(doc, tmp_path)


def test_write_schema(tmp_path):
  p = S.write_schema(tmp_path / "s.json")
  assert json.loads(p.read_text())["$id"].endswith(S.SCHEMA_VERSION)


def test_unit_id():
  assert T.unit_id("mixed4a/pool:42") == "mixed4a-pool-42"
  with pytest.raises(ValueError):
    T.unit_id("//")


def _configs():
  from cv_jax.experiment import config
  return config


def test_configs_units_are_the_papers():
  mod = _configs()
  # The paper's concat indices on inceptionv1 -> within-branch indices.
  assert mod.PAPER_UNITS[:2] == ("mixed3a/3x3:125", "mixed3a/pool:3")
  assert mod.PAPER_UNITS[-1] == "mixed5b/pool:111"
  assert mod.CATCH == ("mixed4e/pool:79@0", "mixed4c/pool:36@1", "mixed5a/3x3:301@14")
  assert len(mod.PAPER_UNITS) == 18 and len(mod.PRACTICE) == 10
  from cv_jax import paper_units as units
  assert tuple(mod.PAPER_UNITS) == tuple(units.PAPER_UNITS)
  assert [c.split("@")[0] for c in mod.CATCH] == [units.CATCH_UNITS[k] for k in "jtz"]


def test_configs_resolve_on_both_models():
  from cv_jax import models
  from cv_jax.experiment.pipeline import parse_unit_specs
  mod = _configs()
  for name in ("inceptionv1", "googlenet_bvlc"):
    model = models.load(name, random_init=0)
    specs = parse_unit_specs(model, mod.get_config("zimmermann2021"))
    assert len(specs) == 18 + 3 + 10
    main = [s for s in specs if s.role == "main"]
    assert all(sorted(s.sets) == list(range(10)) for s in main)
    got = {s.branch: s.channel for s in specs}
    # mixed4a pool:42 is inceptionv1 concat 486 (paper) and BVLC 490 (3x3 branch 208 wide).
    assert got["mixed4a/pool:42"] == (486 if name == "inceptionv1" else 490)
  assert mod.get_config("demo").n_sets >= 2
  with pytest.raises(ValueError, match="unknown experiment config"):
    mod.get_config("nope")
