"""`cv-jax human export --db=URL --out=DIR|FILE.zip`: write the response export (manifest +
CSV tables + the jsPsych-style trial table), read in one transaction."""

from __future__ import annotations

from absl import flags

from cv_jax.human import export, export_format, store
from cv_jax.human.commands.common import fail, need, one_line_errors

_DB = flags.DEFINE_string("db", "human.db", "database: a SQLite file path or a URL")
_OUT = flags.DEFINE_string("out", None, "output folder, or a .zip file")


@one_line_errors("export")
def main(argv: list[str]) -> None:
  """absl main of `cv-jax human export`."""
  if len(argv) > 1:
    fail("export", f"unexpected arguments {argv[1:]}")
  need("export", out=_OUT.value)
  if "://" not in _DB.value and not __import__("os").path.exists(_DB.value):
    fail("export", f"no database file {_DB.value}; pass --db")
  try:
    path = export.export(store.make_engine(_DB.value), _OUT.value)
  except export_format.ExportError as e:
    fail("export", str(e))
  counts = export_format.read_export(path).manifest["counts"]
  print(f"wrote {path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
