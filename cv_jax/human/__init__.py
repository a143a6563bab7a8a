"""The human side of the study: the study server (store, assign, app, export, client; see
docs/human.md), exclusion, the response export, analysis, simulated participants.

Imports no JAX (`tests/test_human_exclusion.py` checks it). See docs/human_analysis.md. The
server modules (`cv_jax.human.app` etc.) need the `[human]` extra and are not imported here.
"""

from cv_jax.human import exclusion, export_format
from cv_jax.human.exclusion import Rules, evaluate
from cv_jax.human.export_format import Export, ExportError, read_export, write_export

__all__ = ["Export", "ExportError", "Rules", "evaluate", "exclusion", "export_format",
           "read_export", "write_export"]
