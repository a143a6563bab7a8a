"""`cv-jax human simulate --url=...` against a real study server (subprocess, 127.0.0.1):
planted misbehaviours come back as exclusions from the server's own export."""

from __future__ import annotations

import json

from cv_jax.human import export_format, report, simulate_online
from human_util import Server, cli, make_study


def test_online_simulation_round_trip(tmp_path):
  db = f"sqlite:///{tmp_path / 'h.db'}"
  exp = make_study(tmp_path, db)
  doc = json.loads((exp / "experiment.json").read_text())
  server = Server(exp, db).start()
  try:
    summary = simulate_online.run(
        doc, server.url, policy="oracle", n=2, conditions=["natural", "none"], seed=3,
        misbehave=["skim@1", "catch_fail@1", "abandon_at:4@1"], root=exp, concurrency=4)
  finally:
    server.stop()
  assert summary["counts"] == {"complete": 3, "abandoned": 1}
  cli("human", "export", f"--db={db}", f"--out={tmp_path / 'export'}")
  results, _ = report.run(tmp_path / "export", exp, tmp_path / "report")
  by_ext = {p["external_id"]: p["id"] for p in export_format.read_export(
      tmp_path / "export")["participants"]}
  sessions = {s["participant_id"]: s for s in results["sessions"]}
  for p in summary["participants"]:
    s = sessions[by_ext[p["external_id"]]]
    m = (p["misbehaviour"] or "").split("@")[0]
    if m == "abandon_at:4":
      assert not s["completed"]
      continue
    assert s["completed"]
    want = {"skim": ["instruction_time"], "catch_fail": ["catch_trials"]}.get(m, [])
    assert s["failed"] == want, (m, s)
    if not want:  # the oracle is right on every main trial
      assert s["accuracy"] == 1.0
  assert results["counts"]["all"]["included"] == 1
