"""`cv-jax human init --experiment=DIR --db=URL`: create the study (one slot per task).

Records the sha256 of `experiment.json`; serving another document against the database is
refused. Running it again on the same database and experiment changes nothing.
"""

from __future__ import annotations

from absl import flags

from cv_jax.human import stimuli, store, study
from cv_jax.human.commands.common import fail, need, one_line_errors
from cv_jax.human.settings import Settings

_EXP = flags.DEFINE_string("experiment", None, "the experiment folder (with experiment.json)")
_DB = flags.DEFINE_string("db", "human.db", "database: a SQLite file path or a URL "
                          "(sqlite:///FILE, postgresql://USER@HOST:PORT/DB)")
_LEASE = flags.DEFINE_float("lease_s", 3600.0, "seconds a participant keeps a task")
_MAX_ATTEMPTS = flags.DEFINE_integer("max_attempts", 3, "failed-exclusion sessions per task "
                                     "before the task is retired")
_CODE = flags.DEFINE_string("prolific_code", None, "the Prolific study's completion code")
_NO_PRACTICE = flags.DEFINE_list("practice_conditions", list(Settings().practice_conditions),
                                 "conditions with practice blocks")


@one_line_errors("init")
def main(argv: list[str]) -> None:
  """absl main of `cv-jax human init`."""
  if len(argv) > 1:
    fail("init", f"unexpected arguments {argv[1:]}")
  need("init", experiment=_EXP.value, db=_DB.value)
  settings = Settings(lease_s=_LEASE.value, max_attempts=_MAX_ATTEMPTS.value,
                      prolific_completion_code=_CODE.value,
                      practice_conditions=tuple(_NO_PRACTICE.value))
  Settings.from_mapping(__import__("json").loads(settings.to_json()))  # range checks
  exp = stimuli.load(_EXP.value)
  engine = store.make_engine(_DB.value)
  sid, created = study.init_study(engine, exp, settings)
  n = len(exp.doc["tasks"])
  word = "created" if created else "already exists"
  print(f"study {sid} {word}: {n} tasks, experiment sha256 {exp.sha256[:16]}..., "
        f"db {store.normalize_url(_DB.value)}")
