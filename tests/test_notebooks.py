"""The Colab notebooks (colab/*.ipynb) run top to bottom, on CPU, with shrunken parameters.

Each notebook's `parameters` cell is kept and followed by an injected cell (as papermill does)
that shrinks every size knob; the notebook is executed with nbclient in a fresh kernel of this
interpreter, with cwd = colab/, and the test fails if any cell raises. Static checks make sure the
committed files carry no outputs and keep the conventions CI relies on.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from conftest import BVLC_NPZ, SAMPLES  # noqa: E402  (tests/ is on sys.path under pytest)

REPO = pathlib.Path(__file__).resolve().parents[1]
COLAB = REPO / "colab"
NOTEBOOKS = ("quickstart.ipynb", "causal_occlusion_experiment.ipynb",
             "feature_visualization_gallery.ipynb")

# Shared overrides: real weights and images when ../shared has them (else the notebooks fall back
# to random weights / a test pattern and say so loudly), outputs into a temporary folder.
COMMON = dict(
    CV_JAX_SOURCE="",
    WEIGHTS=str(BVLC_NPZ) if BVLC_NPZ.exists() else "",
)

# Per notebook: the injected parameter values (every key must exist in the parameters cell).
SHRINK: dict[str, dict] = {
    "quickstart.ipynb": dict(
        IMAGE_DIR=str(SAMPLES),
        IMAGE=str(SAMPLES / "n02099601_golden_retriever.JPEG"),
        FV_UNITS=["mixed3a/3x3:125", "mixed3a/pool:3"],
        FV_STEPS=3, FV_SIZE=64, FV_BATCH=1, FV_TRANSFORMS=(("jitter", 4),),
        OCC_UNIT="mixed3a/3x3:125", OCC_SIZE=90, OCC_STRIDE=45,
    ),
    "causal_occlusion_experiment.ipynb": dict(
        IMAGE_DIR=str(SAMPLES),
        CONFIG="tiny",
        UNITS=["mixed3a/3x3:125", "mixed3a/pool:10"],  # one layer: fewer compilations than tiny's
    ),
    "feature_visualization_gallery.ipynb": dict(
        UNIT="mixed3a/3x3:125",
        STEPS=3, SIZE=64, BATCH=2,
        PARAMETERISATIONS=["pixel", "fft+decorrelate"], TRANSFORMS=["none", "jitter"],
    ),
}

# The library functions each notebook calls: a notebook whose API is missing is skipped, naming it.
REQUIRES = {
    "quickstart.ipynb": ["cv_jax.featvis:render", "cv_jax.occlusion:occlusion_maps",
                         "cv_jax.occlusion:extreme_positions", "cv_jax.occlusion:occlude"],
    "causal_occlusion_experiment.ipynb": [
        "cv_jax.experiment.pipeline:Experiment", "cv_jax.experiment.report:kappa_figure",
        "cv_jax.experiment.trials:shown_images", "cv_jax.sweep:run", "cv_jax.featvis:render",
        "cv_jax.occlusion:occlusion_maps", "cv_jax.occlusion:blur_reference"],
    "feature_visualization_gallery.ipynb": ["cv_jax.featvis:render"],
}


def _missing_api(names: list[str]) -> list[str]:
  missing = []
  for name in names:
    mod, _, attr = name.partition(":")
    try:
      m = importlib.import_module(mod)
    except ImportError as e:
      missing.append(f"{name} (import {mod} failed: {e})")
      continue
    if attr and not hasattr(m, attr):
      missing.append(name)
  return missing


def _parameters_cell(nb) -> int:
  idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(idx) == 1, f"expected exactly one cell tagged 'parameters', found {len(idx)}"
  return idx[0]


def _assigned_names(source: str) -> set[str]:
  import ast
  names = set()
  for node in ast.parse(source).body:
    if isinstance(node, ast.Assign):
      names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
  return names


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
  """A kernelspec that runs this very interpreter (CI may have no `python3` spec, or another)."""
  root = tmp_path_factory.mktemp("jupyter")
  spec = root / "kernels" / "cv_jax_test"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "cv_jax test", "language": "python"}))
  old = os.environ.get("JUPYTER_PATH")
  os.environ["JUPYTER_PATH"] = str(root) + (os.pathsep + old if old else "")
  yield "cv_jax_test"
  if old is None:
    os.environ.pop("JUPYTER_PATH", None)
  else:
    os.environ["JUPYTER_PATH"] = old


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean(name):
  """No outputs in git, one parameters cell first among code cells, devices printed, no host names."""
  nb = nbformat.read(COLAB / name, as_version=4)
  nbformat.validate(nb)
  assert nb.cells[0].cell_type == "markdown", "first cell must explain the notebook"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be `parameters`"
  _parameters_cell(nb)
  for c in code:
    assert not c.outputs and c.execution_count is None, f"committed with outputs: {c.source[:60]!r}"
  text = "\n".join(c.source for c in nb.cells)
  assert "jax.devices()" in text
  assert "pypi" not in text.lower()
  known = _assigned_names(code[0].source)
  unknown = set(SHRINK[name]) | set(COMMON)
  assert unknown <= known, f"CI overrides knobs the notebook lacks: {sorted(unknown - known)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, kernel_name, tmp_path, monkeypatch):
  """Execute the notebook in a fresh kernel with shrunken parameters; any cell error fails."""
  missing = _missing_api(REQUIRES[name])
  if missing:
    pytest.skip(f"{name}: API not available yet: {', '.join(missing)}")
  if name == "causal_occlusion_experiment.ipynb" and not SAMPLES.is_dir():
    pytest.skip(f"the experiment needs an image folder; ImageNet sample images not found at {SAMPLES}")
  nb = nbformat.read(COLAB / name, as_version=4)
  i = _parameters_cell(nb)
  values = {**COMMON, **SHRINK[name]}
  if "OUTPUT_DIR" in _assigned_names(nb.cells[i].source):
    values["OUTPUT_DIR"] = str(tmp_path / "outputs")
  injected = nbformat.v4.new_code_cell(
      "# Injected by tests/test_notebooks.py\n"
      + "".join(f"{k} = {v!r}\n" for k, v in values.items()))
  injected.metadata["tags"] = ["injected-parameters"]
  nb.cells.insert(i + 1, injected)
  # The kernel imports this checkout's cv_jax, and runs on CPU like CI.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=600,
                                   resources={"metadata": {"path": str(COLAB)}})
  t0 = time.perf_counter()
  try:
    client.execute()
  finally:
    nbformat.write(nb, tmp_path / name)  # executed copy, for a look after a failure
  seconds = time.perf_counter() - t0
  print(f"{name}: executed in {seconds:.1f} s (copy: {tmp_path / name})")
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any(o.output_type == "display_data" and "image/png" in o.get("data", {})
             for o in outputs), "the notebook showed no figure"
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "CpuDevice" in text or "cpu" in text.lower(), "jax.devices() was not printed"
