"""Simulated participants against a running study server (`cv-jax human simulate --url=...`).

The same policies and misbehaviours as `simulate` (offline), played over HTTP through the study
server's participant client (`cv_jax.human.client.Participant`, which sends fabricated client
times, so a ten-minute session takes seconds). The participant never learns the answer from the
server: like the server-side tests, it recognises the max image by the sha256 of its bytes
(the image URLs end in it), computed from the experiment folder's own files.

Misbehaviours map onto the client: `skim` -> a short instruction time, `slow` -> one 950 s
response, `always_left` -> left buttons only, `catch_fail` -> wrong on catch trials,
`practice_fail:k` -> one wrong answer in each of the first k practice blocks, `abandon_at:i` ->
the participant stops before main entry i, `reload_at:i` -> a browser reload while entry i is
shown, `duplicate_posts` -> every answer batch sent twice.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cv_jax.human import simulate as sim_lib


class _Abandon(Exception):
  """Raised inside a decision to leave the session."""


def _max_images(doc: Mapping[str, Any], root: pathlib.Path) -> dict[str, str]:
  """sha256 of each trial's max image -> trial id."""
  out = {}
  for t in doc["trials"]:
    p = root / t["images"]["max"]
    if not p.is_file():
      raise sim_lib.SimulationError(f"online mode needs the experiment's images; {p} is missing")
    out[hashlib.sha256(p.read_bytes()).hexdigest()] = t["id"]
  return out


def _digest(url: str) -> str:
  return url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]


def check_server(url: str, wait_s: float = 3.0) -> None:
  """SimulationError unless a study server answers `GET <url>/healthz` within `wait_s` seconds.

  Without this check every simulated participant would retry its requests for a minute and
  the run would end, minutes later, in a table of participants that gave up.
  """
  import time

  import httpx

  give_up, problem = time.time() + wait_s, ""
  while True:
    try:
      r = httpx.get(url.rstrip("/") + "/healthz", timeout=5.0)
      if r.status_code == 200:
        return
      problem = f"GET /healthz answered {r.status_code}"
    except httpx.UnsupportedProtocol:
      raise sim_lib.SimulationError(
          f"--url={url} is not an http:// or https:// address; pass the study server's "
          "address, e.g. --url=http://127.0.0.1:8000") from None
    except httpx.HTTPError as e:
      problem = f"{type(e).__name__}: {e}"
    if time.time() > give_up:
      raise sim_lib.SimulationError(
          f"no study server answers at {url} ({problem}); start one with `cv-jax human serve` "
          "or fix --url")
    time.sleep(0.2)


def run(doc: Mapping[str, Any], url: str, *, policy: str = "fixed", n: int | None = None,
        conditions: Sequence[str] | None = None, misbehave: Sequence[str] = (), seed: int = 0,
        practice_in_none: bool = False, root: str | pathlib.Path | None = None,
        concurrency: int = 8, deadline_s: float = 600.0) -> dict[str, Any]:
  """Play n participants per condition against the server at `url`; returns a summary.

  The summary holds per participant its external id, condition, misbehaviour, planted
  exclusions and the client's status, plus counts per status. `practice_in_none` is the
  server's choice online (accepted for the offline signature).
  """
  import time

  from cv_jax.human import client as client_lib  # needs the [human] extra (httpx)

  if root is None:
    raise sim_lib.SimulationError("online mode needs --experiment (the folder with the images)")
  check_server(url)
  root = pathlib.Path(root)
  pol = sim_lib.parse_policy(policy) if isinstance(policy, str) else policy
  mis = sim_lib.parse_misbehaviours(misbehave)
  by_id = {t["id"]: t for t in doc["trials"]}
  max_of = _max_images(doc, root)
  conds = list(conditions) if conditions else list(dict.fromkeys(t["condition"]
                                                                 for t in doc["tasks"]))
  plan = []
  for c in conds:
    k = sum(t["condition"] == c for t in doc["tasks"]) if n is None else int(n)
    plan += [c] * k
  who = sim_lib.assign_misbehaviours(len(plan), mis, seed)
  units = sorted({t["unit"] for t in doc["trials"]})
  drng = np.random.default_rng([seed, 11])
  raw = drng.normal(0, pol.sd_difficulty, len(units))
  main_units = {t["unit"] for t in doc["trials"] if t["role"] == "main"}
  centre = float(np.mean([v for u, v in zip(units, raw) if u in main_units] or [0.0]))
  difficulty = {u: float(v) - centre for u, v in zip(units, raw)}
  deadline = time.time() + deadline_s

  def play(p: int) -> dict[str, Any]:
    cond, m = plan[p], who[p]
    name = m.name if m else None
    rng = np.random.default_rng([seed, p])
    ability = float(rng.normal(0, pol.sd_ability)) if pol.kind == "irt" else 0.0
    holder: dict[str, Any] = {}

    def decide(entry: dict, info: dict) -> tuple[int, float]:
      hl, hr = _digest(entry["left"]), _digest(entry["right"])
      side_max = "left" if hl in max_of else "right"
      trial = by_id[max_of.get(hl) or max_of[hr]]
      rt = sim_lib.exgauss_ms(rng)
      if entry["phase"] == "practice":
        ok = not (name == "practice_fail" and info["practice_attempt"] <= m.arg
                  and entry is holder.setdefault(("first", info["practice_attempt"]), entry))
      else:
        i = entry["entry_index"]
        if name == "abandon_at" and i >= m.arg:
          raise _Abandon()
        if name == "reload_at" and i == m.arg and not holder.get("reloaded"):
          holder["reloaded"] = True
          holder["participant"].reload()
        if name == "slow" and i == len(doc["tasks"][0]["trials"]) // 2:
          rt = 950_000.0
        if trial["role"] == "catch":
          ok = name != "catch_fail"
        else:
          ok = sim_lib._choose(pol, rng, trial, info["condition"], ability, difficulty)
      side = side_max if ok else ("left" if side_max == "right" else "right")
      if name == "always_left" and entry["phase"] == "main":
        side = "left"
      conf = sim_lib.confidence(rng, side == side_max)
      return sim_lib.button_index(side, conf), rt

    faults = client_lib.Faults(duplicate_p=1.0 if name == "duplicate_posts" else 0.0)
    instr = float(rng.uniform(3.0, 10.0)) if name == "skim" else 25.0 + float(
        min(rng.exponential(40.0), 150.0))
    part = client_lib.Participant(url, f"sim-{seed}-{p:05d}", condition=cond, decide=decide,
                                  faults=faults, seed=seed * 100_003 + p,
                                  clock_start=sim_lib.T0_MS + p * 120_000.0,
                                  instruction_s=instr, deadline=deadline)
    holder["participant"] = part
    try:
      res = part.run()
      status = res.status
    except _Abandon:
      status = "abandoned"
    return {"external_id": part.external_id, "condition": cond,
            "misbehaviour": str(m) if m else None, "status": status}

  with concurrent.futures.ThreadPoolExecutor(max(1, concurrency)) as ex:
    rows = list(ex.map(play, range(len(plan))))
  counts: dict[str, int] = {}
  for r in rows:
    counts[r["status"]] = counts.get(r["status"], 0) + 1
  return {"policy": str(pol), "seed": seed, "participants": rows, "counts": counts}
