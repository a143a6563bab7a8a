"""pytest plugin: under `CI=true` a skipped test is reported as a failure.

CI must run every test, including those that need the real weights, the sample images or an
optional package; a skip there means CI forgot to install or start something, so it fails
with the skip's reason. Locally (no `CI` variable) skips stay skips. Expected failures
(`xfail`) are unaffected. Loaded by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
  """True when the `CI` environment variable is set to a true value (1, true, yes)."""
  return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  """Turn a skip (in setup, call or teardown) into a failure when running in CI."""
  outcome = yield
  report = outcome.get_result()
  if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, which must run every test (install or start "
                       f"what it needs in .ci/run): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
  """A whole module skipped at collection (e.g. `pytest.importorskip` at its top) fails too."""
  outcome = yield
  report = outcome.get_result()
  if in_ci() and report.skipped:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (f"{collector.nodeid} skipped under CI=true, which must run every test "
                       f"(install or start what it needs in .ci/run): {reason}")

