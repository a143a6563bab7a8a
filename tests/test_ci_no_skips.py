"""Under CI=true a skipped test fails (cv_jax.testing.ci_no_skips); locally it stays a skip."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

CASES = '''
import pytest

def test_ok():
  pass

def test_needs_widget():
  pytest.importorskip("no_such_module_cv_jax")

@pytest.mark.xfail(reason="known")
def test_known_bug():
  assert False
'''


MODULE_SKIP = '''
import pytest

pytest.importorskip("no_such_module_cv_jax")

def test_never_collected():
  pass
'''


def _pytest(tmp_path: pathlib.Path, ci: str | None, cases: str = CASES) -> subprocess.CompletedProcess:
  (tmp_path / "test_cases.py").write_text(cases)
  env = {k: v for k, v in os.environ.items() if k != "CI"}
  env["PYTHONPATH"] = str(REPO)
  if ci is not None:
    env["CI"] = ci
  return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "-p", "cv_jax.testing.ci_no_skips", "--rootdir", str(tmp_path),
                         str(tmp_path / "test_cases.py")],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_skip_fails_in_ci(tmp_path):
  r = _pytest(tmp_path, "true")
  assert r.returncode == 1, r.stdout
  assert "1 failed, 1 passed, 1 xfailed" in r.stdout
  assert "FAILED test_cases.py::test_needs_widget - skipped under CI=true" in r.stdout
  assert "no_such_module_cv_jax" in r.stdout


def test_skip_stays_a_skip_locally(tmp_path):
  r = _pytest(tmp_path, None)
  assert r.returncode == 0, r.stdout
  assert "1 passed, 1 skipped, 1 xfailed" in r.stdout


def test_module_skipped_at_collection_fails_in_ci(tmp_path):
  r = _pytest(tmp_path, "true", MODULE_SKIP)
  assert r.returncode != 0, r.stdout
  assert "ERROR test_cases.py - test_cases.py skipped under CI=true" in r.stdout
  r = _pytest(tmp_path, None, MODULE_SKIP)
  assert r.returncode == 5 and "1 skipped" in r.stdout, r.stdout  # 5: nothing else to run

