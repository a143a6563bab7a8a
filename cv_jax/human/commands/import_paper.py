"""`cv-jax human import-paper --pkl_dir=DIR --structure_dir=DIR --out=DIR`: the paper's raw
MTurk results (`<condition>/result_task_<k>.pkl` + task structure JSONs) as a cv_jax export,
read with a restricted unpickler (no code from the files runs)."""

from __future__ import annotations

from absl import flags

from cv_jax import cli_support
from cv_jax.human import export_format, import_paper

_PKL = flags.DEFINE_string("pkl_dir", None, "folder with the condition folders (optimized, "
                           "natural, mixed, blur, none) of result_task_<k>.pkl files")
_STRUCT = flags.DEFINE_string("structure_dir", None, "folder with the task structure JSONs "
                              "(natural_with_baselines.json, ...)")
_OUT = flags.DEFINE_string("out", None, "export folder to write (with experiment.json)")
_FOLDERS = flags.DEFINE_list("folders", None, "condition folders to import (default: present)")


def _fail(message: str) -> None:
  """The one-line error of `cv-jax human import-paper` (exit status 1)."""
  cli_support.fail("human import-paper", message)


def main(argv: list[str]) -> None:
  """absl main of `cv-jax human import-paper`."""
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}")
  for name, v in (("pkl_dir", _PKL.value), ("structure_dir", _STRUCT.value),
                  ("out", _OUT.value)):
    if not v:
      _fail(f"--{name} is required")
  try:
    path = import_paper.import_paper(_PKL.value, _STRUCT.value, _OUT.value,
                                     folders=_FOLDERS.value)
  except (import_paper.ImportPaperError, export_format.ExportError, OSError, ValueError) as e:
    _fail(str(e).splitlines()[0])
  counts = export_format.read_export(path).manifest["counts"]
  print(f"wrote {path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  print(f"analyse with: cv-jax human analyze --export={path} --out=REPORT_DIR")
