"""`cv-jax COMMAND [--flags] [ARGS]`: one entry point for every job.

Commands:
  classify      top-5 labels for images
  activations   save layer activations of images to .npz
  convert       convert weights into a cv_jax checkpoint
  featvis       render feature visualizations
  spectrum      the mean magnitude spectrum of an image folder (for MACO)
  sweep         rank a dataset's images per unit
  occlusion     occlusion maps for one image
  experiment    the whole causal-understanding study (sweep -> ... -> report)
  human         the human study server and its data (`cv-jax human --help`)
  mis           machine interpretability score of every unit of some layers

`cv-jax COMMAND --help` lists a command's flags.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "classify": ("cv_jax.inference", "main_classify", "top-5 labels for images"),
    "activations": ("cv_jax.inference", "main_activations", "save layer activations to .npz"),
    "convert": ("cv_jax.weights.__main__", "main", "convert weights into a cv_jax checkpoint"),
    "featvis": ("cv_jax.featvis.__main__", "main", "render feature visualizations"),
    "spectrum": ("cv_jax.featvis.spectrum_cli", "main", "an image folder's magnitude spectrum"),
    "sweep": ("cv_jax.sweep.__main__", "main", "rank a dataset's images per unit"),
    "occlusion": ("cv_jax.occlusion.__main__", "main", "occlusion maps for one image"),
    "experiment": ("cv_jax.experiment.__main__", "main", "the whole study, from model to report"),
    "human": ("cv_jax.human.cli", "SUBCOMMANDS", "the human study: serve, analyze, simulate, ..."),
    "mis": ("cv_jax.mis.__main__", "main", "machine interpretability score (MIS) of units"),
}


def _usage() -> str:
  lines = ["usage: cv-jax COMMAND [--flags] [ARGS]", "", "commands:"]
  lines += [f"  {name:<12} {help_}" for name, (_, _, help_) in COMMANDS.items()]
  return "\n".join(lines)


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point: dispatch to the command's absl main."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  cmd = argv[1]
  if cmd not in COMMANDS:
    print(f"cv-jax: error: unknown command {cmd!r}; commands: {', '.join(COMMANDS)} "
          "(`cv-jax --help` says what each does)", file=sys.stderr)
    sys.exit(1)
  module, func, _ = COMMANDS[cmd]
  main = getattr(importlib.import_module(module), func)
  if isinstance(main, dict):  # a table of subcommands: `cv-jax CMD SUB [--flags]`
    table = main
    if len(argv) < 3 or argv[2] in ("-h", "--help", "help"):
      lines = [f"usage: cv-jax {cmd} SUBCOMMAND [--flags]", "", "subcommands:"]
      lines += [f"  {name:<12} {help_}" for name, (_, _, help_) in table.items()]
      print("\n".join(lines))
      sys.exit(0 if len(argv) >= 3 else 2)
    sub = argv[2]
    if sub not in table:
      print(f"cv-jax {cmd}: error: unknown subcommand {sub!r}; choose from {sorted(table)}",
            file=sys.stderr)
      sys.exit(1)
    module, func, _ = table[sub]
    main = getattr(importlib.import_module(module), func)
    cmd, argv = f"{cmd} {sub}", argv[:1] + [f"{cmd} {sub}"] + argv[3:]
  from cv_jax import cli_support
  cli_support.run(cmd, main, argv[2:])


if __name__ == "__main__":
  run()
