"""What every `cv-jax COMMAND` shares: running its absl main, its config flag, its model, errors.

    from cv_jax import cli_support
    _CONFIG = cli_support.define_config_flag("sweep", "demo")
    def main(argv):
      model = cli_support.load_model(cfg.model, cfg.weights)
      ...
    if __name__ == "__main__":
      cli_support.run("sweep", main)

* `run(command, main, argv)` parses the flags and runs `main`. A user error -- a missing or
  corrupt file, an unknown model, layer, unit or preset, a bad value, an unknown flag -- ends
  the command with exactly one line on stderr, `cv-jax COMMAND: error: <what and how to fix>`,
  and exit status 1. The traceback is shown only with `--verbosity=1` (or more) or
  `CV_JAX_DEBUG=1`. Errors that are not the user's (bugs) keep their traceback.
* `define_config_flag(job, preset)`: `--config`, defaulting to the preset in the installed
  package (`cv_jax/<job>/config.py:<preset>`), so it works after a non-editable `pip install`;
  `--config=configs/<job>.py:<preset>` works from a checkout, and `--config.FIELD=VALUE`
  overrides fields.
* `load_model`, `check_files`: inputs checked before any long work starts.
Status lines and progress bars of the library's long jobs are `cv_jax.progress`'.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

DEBUG_ENV = "CV_JAX_DEBUG"
PACKAGE = pathlib.Path(__file__).resolve().parent

# Exceptions that mean "the input is wrong" rather than "the program is wrong". ValueError
# includes WeightsError, AssetError, SchemaError and ProtobufError; OSError missing or unreadable
# files; ImportError a missing optional dependency (e.g. tensorflow-datasets).
USER_ERRORS = (ValueError, OSError, ImportError, app.UsageError, flags.Error)

_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None,
    "JAX CPU devices (0 or unset: $CV_JAX_CPU_DEVICES, else XLA's one device); one per core "
    "lets the sweep, occlusion and batched forward passes run a slice per core (cv_jax.devices)")


class UsageError(ValueError):
  """Bad input from the command line; reported as one line."""


def debug() -> bool:
  """Whether tracebacks were asked for: `CV_JAX_DEBUG=1` or `--verbosity=1` (or more)."""
  if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
    return True
  return bool(flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].value >= 1)


def one_line(error: BaseException) -> str:
  """The message of `error` as one line.

  A message that carries a traceback (ml_collections wraps a config's own error in one) keeps
  its first line and the error at the end of the traceback; other line breaks become spaces.
  `[Errno N]` and `XyzError:` prefixes are dropped.
  """
  if isinstance(error, OSError) and error.strerror and error.filename:
    return f"{error.strerror}: {error.filename}"
  lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
  if not lines:
    return type(error).__name__
  if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
    head = re.sub(r":?\s*Error whilst parsing config file:?$", "", lines[0])
    last = re.sub(r"^([\w.]*(Error|Exception)):\s*", "", lines[-1])
    lines = [f"{head}: {last}"]
  return re.sub(r"\[Errno \d+\]\s*", "", " ".join(lines))


def _verbose(argv: Sequence[str]) -> bool:
  """Whether `argv` asks for `--verbosity` >= 1 (read before the flags are parsed)."""
  for a in argv:
    m = re.match(r"^--(?:verbosity|v)=(-?\d+)$", a)
    if m and int(m.group(1)) >= 1:
      return True
  return False


def _flag_error(command: str, error: flags.Error) -> str:
  """One line for a flag that could not be parsed: unknown, missing or with a bad value."""
  missing = re.findall(r"Flag --(\w+) must have a value other than None", str(error))
  if missing:
    return (f"missing required flag(s) {', '.join('--' + m for m in missing)} "
            f"(`cv-jax {command} --help` lists the flags)")
  if isinstance(error, flags.UnrecognizedFlagError):
    return f"{one_line(error)} (`cv-jax {command} --help` lists the flags)"
  return one_line(error)


def fail(command: str, message: str) -> NoReturn:
  """Print `cv-jax <command>: error: <message>` on stderr and exit with status 1."""
  print(f"cv-jax {command}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def guard(command: str, main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
  """`main` with user errors turned into the one-line error (traceback only when debugging)."""

  def guarded(argv: list[str]):
    try:
      return main(argv)
    except USER_ERRORS as e:
      if debug():
        raise
      fail(command, one_line(e))
    except KeyboardInterrupt:
      if debug():
        raise
      fail(command, "interrupted; run the same command again to resume where it can")

  return guarded


HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")


def command_help(command: str, main: Callable[[list[str]], object]) -> str:
  """`cv-jax <command> --help`: the command's module docstring and the flags the command defines.

  absl's own `--help` lists the flags of the `__main__` module, which under the `cv-jax` entry
  point is the dispatcher, so it would list none of the command's flags.
  """
  doc = (getattr(sys.modules.get(main.__module__), "__doc__", None) or "").strip()
  by_module = flags.FLAGS.flags_by_module_dict()
  sections = [flags.FLAGS.module_help(m) for m in sorted(by_module)
              if m.split(".", 1)[0] == "cv_jax" and by_module[m]]
  parts = [f"usage: cv-jax {command} [--flags] [ARGS]"]
  if doc:
    parts.append(doc)
  parts.append("flags:\n" + "\n".join(sec.split("\n", 1)[1] for sec in sections if "\n" in sec)
               if sections else "flags: none of its own")
  parts.append("--helpfull also lists absl's own flags (--verbosity=1 shows tracebacks).")
  return "\n\n".join(parts)


def run(command: str, main: Callable[[list[str]], object],
        argv: Sequence[str] | None = None) -> None:
  """Parse the flags in `argv` (default `sys.argv[1:]`) and run the absl `main` as `cv-jax
  <command>`. Logging is quiet (warnings and errors) unless `--verbosity` is given.
  `--help` prints `command_help` and exits with status 0."""
  args = list(sys.argv[1:] if argv is None else argv)
  if any(a in HELP_FLAGS for a in args):
    print(command_help(command, main), flush=True)
    sys.exit(0)

  def parse(full_argv: list[str]) -> list[str]:
    try:
      try:
        rest = flags.FLAGS(full_argv)
      except (AttributeError, KeyError) as e:
        # With an explicit --config=FILE, ml_collections checks the --config.FIELD overrides
        # here, while parsing (with the default file, at definition: define_config_flag).
        if debug() or _verbose(full_argv):
          raise
        name = next((a[2:].split("=", 1)[0].split(".", 1)[0] for a in full_argv
                     if a.startswith("--") and "." in a.split("=", 1)[0]), "config")
        fail(command, _unknown_field(name, e, full_argv))
      from cv_jax import devices
      n = _CPU_DEVICES.value or devices.requested()
      if n:
        devices.use_cpu_devices(n)
      return rest
    except (flags.Error, ValueError) as e:
      if debug() or _verbose(full_argv):
        raise
      fail(command, _flag_error(command, e) if isinstance(e, flags.Error) else str(e))

  app.run(guard(command, main), argv=[f"cv-jax {command}", "--verbosity=-1", *args],
          flags_parser=parse)


def default_config(job: str, preset: str) -> str:
  """`<installed package>/<job>/config.py:<preset>`: the job's presets, found beside the code."""
  return f"{PACKAGE / job / 'config.py'}:{preset}"


def define_config_flag(job: str, preset: str, name: str = "config"):
  """Define `--<name>` (an ml_collections config file flag) defaulting to `job`'s `preset`."""
  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_file(
        name, default_config(job, preset),
        f"{job} settings: a config file and preset, e.g. configs/{job}.py:{preset} (default: the "
        f"installed package's {job} presets, '{preset}'); override fields with "
        f"--{name}.FIELD=VALUE")
  except (AttributeError, KeyError) as e:
    # ml_collections checks the --config.FIELD overrides in sys.argv against the config while
    # the flag is defined (at import): an unknown field fails here, before any flag parsing.
    if debug() or _verbose(sys.argv):
      raise
    fail(job, _unknown_field(name, e, sys.argv))


def _unknown_field(name: str, error: BaseException, argv: Sequence[str]) -> str:
  """One line for a `--<name>.FIELD=VALUE` override naming a field the config lacks."""
  text = str(error)
  overrides = [a[2:].split("=", 1)[0] for a in argv if a.startswith(f"--{name}.")]
  # The override (and its component) that the error message names.
  flag, key = next(((o, c) for o in overrides for c in reversed(o.split(".")[1:])
                    if re.search(rf"\b{re.escape(c)}\b", text)), (None, None))
  if flag is None:
    return f"an override --{name}.FIELD names a field the config lacks ({one_line(error)})"
  guess = re.search(r'Did you mean \\*"(\w+)\\*"', text)
  hint = f"; did you mean {guess.group(1)!r}?" if guess else ""
  return (f"--{flag}: the config has no field {key!r}{hint} (`--{name}.FIELD=VALUE` only "
          f"overrides fields the config has; the preset files in configs/ list them)")


def config_value(holder, name: str = "config"):
  """The config a `define_config_flag` holder parsed, or a UsageError naming the file."""
  try:
    cfg = holder.value
    _ = cfg.keys  # a config that failed to load raises on its first attribute access
    return cfg
  except OSError as e:
    spec = flags.FLAGS[name].config_filename if name in flags.FLAGS else ""
    path = spec.split(":", 1)[0]
    raise UsageError(f"--{name}={spec}: cannot read the config file {path!r}; give an existing "
                     f"file and preset, e.g. --{name}=configs/<job>.py:<preset>") from e


def check_files(paths: Sequence[str], what: str = "image") -> None:
  """UsageError naming the first missing file (and how many more are missing)."""
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
    raise UsageError(f"{what} not found: {missing[0]}{more}")


def check_model(name: str) -> None:
  """UsageError for a model name `cv_jax.models` lacks: checked before any image or weights
  download starts, so a typo does not cost a 110 MB download first."""
  from cv_jax import models
  if name not in models.available():
    raise UsageError(f"unknown model {name!r}; available: {', '.join(models.available())}")


def load_model(name: str, weights: str | None = None, *, random_init: int | None = None,
               download: bool = True):
  """`cv_jax.models.load` for a command: "" means no weights path (the default location),
  a negative `random_init` means none."""
  from cv_jax import models
  if random_init is not None and int(random_init) >= 0:
    return models.load(name, random_init=int(random_init))
  return models.load(name, weights or None, download=download)
