"""`cv-jax human simulate --experiment=DIR (--offline --out=DIR | --url=URL)`: simulated
participants (spec §3.10). Offline writes an export directly; online plays a running study
server through `cv_jax.human.client`."""

from __future__ import annotations

import pathlib
from absl import flags

from cv_jax import cli_support
from cv_jax.human import export_format, report, simulate

_EXPERIMENT = flags.DEFINE_string("experiment", None, "the experiment folder (experiment.json)")
_POLICY = flags.DEFINE_string("policy", "fixed", "oracle | chance | baseline:<name>:<flip p> | "
                              "fixed[:p] (default the paper's accuracy per condition) | "
                              "irt[:sd_ability:sd_difficulty]")
_N = flags.DEFINE_integer("n", None, "participants per condition (default: one per task)")
_CONDITIONS = flags.DEFINE_list("conditions", None, "conditions (default: all with tasks)")
_MISBEHAVE = flags.DEFINE_list("misbehave", [], "misbehaviours NAME[:ARG]@COUNT or @PERCENT%: "
                               "always_left, skim, slow, catch_fail, practice_fail:K, "
                               "abandon_at:I, reload_at:I, duplicate_posts")
_SEED = flags.DEFINE_integer("seed", 0, "random seed")
_OFFLINE = flags.DEFINE_bool("offline", False, "write an export directly (needs --out)")
_OUT = flags.DEFINE_string("out", None, "export folder or .zip (offline)")
_URL = flags.DEFINE_string("url", None, "a running study server, http://127.0.0.1:PORT (online)")
_PRACTICE_NONE = flags.DEFINE_bool("practice_in_none", False, "practice in the None condition too")


def _fail(message: str) -> None:
  """The one-line error of `cv-jax human simulate` (exit status 1)."""
  cli_support.fail("human simulate", message)


def main(argv: list[str]) -> None:
  """absl main of `cv-jax human simulate`."""
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}")
  if not _EXPERIMENT.value:
    _fail("--experiment is required (the experiment folder)")
  if _OFFLINE.value == bool(_URL.value):
    _fail("choose one mode: --offline --out=DIR, or --url=http://127.0.0.1:PORT")
  if _OFFLINE.value and not _OUT.value:
    _fail("--offline needs --out=DIR (or a .zip path)")
  try:
    doc = report.load_experiment(_EXPERIMENT.value)
    kw = {"policy": _POLICY.value, "n": _N.value, "conditions": _CONDITIONS.value,
          "misbehave": _MISBEHAVE.value, "seed": _SEED.value,
          "practice_in_none": _PRACTICE_NONE.value, "root": pathlib.Path(_EXPERIMENT.value)}
    if _OFFLINE.value:
      sim = simulate.simulate(doc, **kw)
      path = simulate.write_offline(sim, _OUT.value,
                                    export_format.experiment_sha256(_EXPERIMENT.value))
      counts = export_format.read_export(path).manifest["counts"]
      print(f"wrote {path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    else:
      try:
        from cv_jax.human import simulate_online
      except ImportError as e:
        _fail(f"online mode needs the study server's client ({e}); use --offline --out=DIR")
      summary = simulate_online.run(doc, _URL.value, **kw)
      print(f"{len(summary['participants'])} participants against {_URL.value}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
            + "; export with `cv-jax human export`")
  except (simulate.SimulationError, export_format.ExportError, ValueError, OSError) as e:
    _fail(str(e).splitlines()[0])
