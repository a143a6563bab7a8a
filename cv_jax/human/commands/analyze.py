"""`cv-jax human analyze --export=DIR --experiment=DIR --out=DIR`: the paper's human results.

Writes `results_human.json`, one PNG per figure and `report.html` into --out (spec §3.9).
"""

from __future__ import annotations

import json
import os
from absl import flags

from cv_jax import cli_support
from cv_jax.human import analysis, exclusion, export_format, report

_EXPORT = flags.DEFINE_string("export", None, "the export: a folder or .zip (`cv-jax human "
                              "export`, `simulate --offline` or `import-paper`)")
_EXPERIMENT = flags.DEFINE_string("experiment", None, "the experiment folder the study served "
                                  "(default: the export's own experiment.json, as import-paper "
                                  "writes)")
_OUT = flags.DEFINE_string("out", None, "output folder for the report")
_EXCLUSION = flags.DEFINE_enum("exclusion", "recompute", ["recompute", "stored"],
                               "recompute the exclusion with --rules, or use the stored verdicts")
_RULES = flags.DEFINE_string("rules", None, "exclusion rules as JSON (fields of "
                             "cv_jax.human.exclusion.Rules), e.g. '{\"row_variability\": "
                             "\"intended\"}'; default: the paper's")
_ONE = flags.DEFINE_bool("one_per_task", True, "keep only the first passing session per task")
_CONF = flags.DEFINE_enum("confidence", "shown", ["shown", "published"],
                          "confidence labels: shown under the button, or the paper's stored "
                          "field (inverted on the left)")


def _fail(message: str) -> None:
  """The one-line error of `cv-jax human analyze` (exit status 1)."""
  cli_support.fail("human analyze", message)


def main(argv: list[str]) -> None:
  """absl main of `cv-jax human analyze`."""
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}")
  for name, v in (("export", _EXPORT.value), ("out", _OUT.value)):
    if not v:
      _fail(f"--{name} is required")
  try:
    rules = exclusion.Rules.from_dict(json.loads(_RULES.value)) if _RULES.value else None
  except (ValueError, TypeError) as e:
    _fail(f"bad --rules: {str(e).splitlines()[0]}")
  if not os.path.exists(_EXPORT.value):
    _fail(f"no export at {_EXPORT.value}; pass the folder or .zip that `cv-jax human export`, "
          "`simulate --offline` or `import-paper` wrote")
  doc_path = os.path.join(_EXPERIMENT.value, "experiment.json") if _EXPERIMENT.value else None
  if doc_path and os.path.isfile(doc_path):
    with open(doc_path) as f:
      doc = json.load(f)
    if doc.get("task") == "exemplar_2afc":
      from cv_jax.human import unit_scores
      try:
        res = unit_scores.analyze_export(_EXPORT.value, doc, _OUT.value)
      except (export_format.ExportError, ValueError, OSError) as e:
        _fail(str(e).splitlines()[0])
      print(f"2-AFC exemplar task: {res['n_sessions']} sessions, {res['n_passed']} passed")
      for c, v in res["conditions"].items():
        print(f"  {c}: {v['n_units']} units, {v['n_trials']} trials, accuracy "
              f"{v['accuracy']:.3f}")
      print(f"per-unit scores: {os.path.join(_OUT.value, 'unit_scores.json')}")
      return
  print("analysing and drawing the figures...", flush=True)
  try:
    results, path = report.run(_EXPORT.value, _EXPERIMENT.value, _OUT.value, rules=rules,
                               exclusion=_EXCLUSION.value, one_per_task=_ONE.value,
                               confidence_labels=_CONF.value)
  except (export_format.ExportError, analysis.AnalysisError, OSError) as e:
    _fail(str(e).splitlines()[0])
  n = results["counts"]["all"]
  print(f"{n['started']} sessions: {n['completed']} completed, {n['abandoned']} abandoned, "
        f"{n['excluded']} excluded, {n['included']} included")
  print("\n".join(analysis.summary_lines(results)))
  print(f"report: {path}")
