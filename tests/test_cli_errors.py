"""Every command's bad input ends in one line: `cv-jax <command>: error: ...`, exit status 1.

Each case runs the real command in a subprocess, with inputs the test makes itself (random
weights written as a cv_jax .npz, a tiny image folder), no network (`CV_JAX_MIRROR` points at a
closed port) and a fresh `$CV_JAX_HOME`. Every case fails before any long work starts.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Paths the cases use: random googlenet_bvlc weights, images, a corrupt file, empty folder."""
  from PIL import Image

  from cv_jax import models, weights
  d = tmp_path_factory.mktemp("cli_errors")
  params = weights.init_params(models.SPECS["googlenet_bvlc"], seed=0)
  np.savez(d / "random_bvlc.npz", **{f"{l}/{k}": v for l, p in params.items() for k, v in p.items()})
  (d / "images").mkdir()
  rng = np.random.default_rng(0)
  for i in range(2):
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(d / "images" / f"{i}.png")
  (d / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
  (d / "corrupt.pth").write_bytes(b"\x80\x02 not a pickle")
  (d / "empty").mkdir()
  (d / "home").mkdir()
  (d / "exp").mkdir()
  (d / "exp" / "experiment.json").write_text('{"tasks": [], "trials": []}')
  return d


def _run(args: list[str], d: pathlib.Path, module: str = "cv_jax.cli", **env_extra):
  env = dict(os.environ)
  env.pop("CV_JAX_DEBUG", None)
  env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu",
             CV_JAX_HOME=str(d / "home"), CV_JAX_MIRROR="http://127.0.0.1:9", **env_extra)
  return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=d, capture_output=True,
                        text=True, timeout=240)


W = "--weights={d}/random_bvlc.npz"
IMG = "{d}/images/0.png"
CFG = str(REPO / "configs")
CASES = [
    # (command line, words the one line must contain)
    (["classify", "--model=resnet50", IMG], "unknown model 'resnet50'"),
    (["classify", "/no/such/photo.jpg"], "image not found: /no/such/photo.jpg"),
    (["classify", "--weights={d}/corrupt.npz", IMG], "cannot read"),
    (["classify", "--weights={d}/nothere.npz", IMG], "weights file not found"),
    (["activations", "--batch_size=many", IMG], "--batch_size"),
    (["activations", W, "--layers=mixed9z", IMG], "unknown layer 'mixed9z'"),
    (["convert"], "missing required flag(s) --model, --input, --output"),
    (["convert", "--model=inceptionv1", "--input={d}/corrupt.pth", "--output={d}/o"],
     "is not a readable PyTorch file"),
    (["featvis", W, "--config.steps=-5", "--config.units=mixed4a/pool:3"],
     "config.steps must be at least 0, got -5"),
    (["featvis", W, "--config.units=mixed9z/pool:1"], "'mixed9z' is not an inception block"),
    (["featvis", W, "--config.units=mixed4a/pool:1000"], "out of range"),
    (["featvis", W], "no units"),
    (["featvis", f"--config={CFG}/featvis.py:nosuch"], "unknown featvis preset 'nosuch'"),
    (["featvis", "--config=nosuch/featvis.py"], "cannot read the config file"),
    (["featvis", "--no_such_flag"], "Unknown command line flag 'no_such_flag'"),
    (["sweep", f"--config={CFG}/sweep.py:test", "--config.source=folder:/no/such/folder"],
     "image folder '/no/such/folder' does not exist"),
    (["sweep", f"--config={CFG}/sweep.py:test", "--config.source=folder:{d}/empty"],
     "no image files"),
    (["sweep", f"--config={CFG}/sweep.py:test", "--config.source=folder:{d}/images",
      "--config.layers=mixed9z_pre_relu"], "unknown layer 'mixed9z_pre_relu'"),
    (["sweep", "--config.k=abc"], "--config.k=abc"),
    (["sweep", "--config.model=resnet50", "--config.random_init=0"], "unknown model"),
    # Before the demo's images are looked up (here, without ../shared: downloaded).
    (["sweep", "--config.model=resnet50", "--config.random_init=0"], "unknown model",
     {"CV_JAX_SHARED": ""}),
    (["experiment", "--config.model.name=resnet50"], "unknown model 'resnet50'",
     {"CV_JAX_SHARED": ""}),
    (["occlusion", W, "--image=" + IMG, "--units=mixed4a/3x3:999"], "out of range"),
    (["occlusion", "--image=/no/such.jpg", "--units=mixed4a_pre_relu:1"], "image not found"),
    (["occlusion", W, "--image=" + IMG, "--units=mixed4a_pre_relu:1", "--fill=purple"],
     "--fill must be mean, blur"),
    (["occlusion", W, "--image={d}/corrupt.npz", "--units=mixed4a_pre_relu:1"], "cannot read image"),
    (["experiment", f"--config={CFG}/experiment.py:nosuch"], "unknown experiment config 'nosuch'"),
    (["experiment", "--stages=sweep,nosuch"], "unknown stage 'nosuch'"),
    (["experiment", f"--config={CFG}/experiment.py:tiny", "--weights={d}/nothere.npz",
      "--images=folder:{d}/images", "--workdir={d}/run1"], "weights file not found"),
    (["experiment", f"--config={CFG}/experiment.py:tiny", W, "--images=folder:/no/such/folder",
      "--workdir={d}/run2"], "image folder '/no/such/folder' does not exist"),
    (["experiment", f"--config={CFG}/experiment.py:tiny", W, "--images=folder:{d}/images",
      "--config.units=mixed4a/pool:1000", "--workdir={d}/run3"], "out of range"),
    (["spectrum", "--source=/no/such/folder"], "/no/such/folder"),
    (["mis", "--no_such_flag"], "Unknown command line flag 'no_such_flag'"),
    (["human", "nosuch"], "unknown subcommand 'nosuch'"),
    # An override of a field the config lacks fails while the flag is defined (at import).
    (["featvis", W, "--config.stpes=3"],
     "--config.stpes: the config has no field 'stpes'; did you mean 'steps'?"),
    (["experiment", "--config.nosuch.deeper=3"],
     "--config.nosuch.deeper: the config has no field 'nosuch'"),
    (["sweep", "--config.data.sorce=3"], "the config has no field"),
    # With an explicit --config=FILE the override is checked while the flags are parsed.
    (["sweep", f"--config={CFG}/sweep.py:test", "--config.sourc=x"],
     "--config.sourc: the config has no field 'sourc'; did you mean 'source'?"),
    (["classify", "--cpu_devices=0x"], "--cpu_devices"),
    # No server: one line at once, not a minute of retries per simulated participant.
    (["human", "simulate", "--experiment={d}/exp", "--url=http://127.0.0.1:9"],
     "no study server answers at http://127.0.0.1:9"),
    (["human", "simulate", "--experiment={d}/exp", "--url=localhost:8000"],
     "is not an http:// or https:// address"),
    (["human", "analyze", "--export={d}/nothere", "--out={d}/ho"], "no export at {d}/nothere"),
]


@pytest.mark.parametrize("args,words,env", [c if len(c) == 3 else (*c, {}) for c in CASES],
                         ids=[" ".join(c[0][:2]) + (" no shared" if len(c) == 3 else "")
                              for c in CASES])
def test_bad_input_is_one_line(inputs, args, words, env):
  args = [a.format(d=inputs) for a in args]
  r = _run(args, inputs, **env)
  lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
  assert r.returncode == 1, r.stderr[-3000:]
  assert len(lines) == 1, r.stderr[-3000:]
  command = " ".join(args[:2]) if args[0] == "human" and not args[1].startswith("nosuch") else args[0]
  assert lines[0].startswith(f"cv-jax {command}: error: "), lines[0]
  assert words.format(d=inputs) in lines[0], lines[0]
  assert not r.stdout.strip(), r.stdout


def test_python_m_entry_points_fail_the_same_way(inputs):
  for module, command in (("cv_jax.featvis", "featvis"), ("cv_jax.sweep", "sweep"),
                          ("cv_jax.weights", "convert")):
    r = _run(["--no_such_flag"], inputs, module=module)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"cv-jax {command}: error: Unknown command line flag"), lines[0]


@pytest.mark.parametrize("how", ["env", "verbosity"])
def test_traceback_only_when_asked(inputs, how):
  args = ["featvis", W.format(d=inputs), "--config.steps=-5", "--config.units=mixed4a/pool:3"]
  extra = {}
  if how == "env":
    extra["CV_JAX_DEBUG"] = "1"
  else:
    args.append("--verbosity=1")
  r = _run(args, inputs, **extra)
  assert r.returncode != 0
  assert "Traceback (most recent call last)" in r.stderr
  assert "config.steps must be at least 0, got -5" in r.stderr


@pytest.mark.parametrize("args,flag", [
    (["classify"], "--weights"), (["convert"], "--input"), (["featvis"], "--seed_images"),
    (["sweep"], "--config"), (["experiment"], "--workdir"), (["mis"], "--quantile"),
    (["human", "analyze"], "--export"), (["human", "simulate"], "--url")])
def test_help_lists_the_commands_own_flags(inputs, args, flag):
  """`cv-jax COMMAND --help` (absl's own --help would list the dispatcher's flags: none)."""
  r = _run([*args, "--help"], inputs)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.startswith(f"usage: cv-jax {' '.join(args)} "), r.stdout[:300]
  assert f"\n  {flag}" in r.stdout, r.stdout
