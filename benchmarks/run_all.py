"""Run every registered benchmark and print the README's speed table (markdown).

    python -m benchmarks                 # full table (about 15-25 min on an idle 2-core machine)
    python -m benchmarks --quick         # smoke run: smaller batches, fewer repetitions
    python -m benchmarks --only featvis,forward --out bench_results

Each benchmark module in `REGISTRY` exposes `run(quick: bool) -> list[dict]`, one dict per
table row with keys `path`, `unit`, `cv_jax`, `peer` (None if there is none), `peer_what` (what
the peer does), `command`, `notes` and one goal: `goal` (minimum cv_jax / peer ratio),
`goal_abs` (minimum cv_jax value) or `goal_max` (maximum cv_jax value, e.g. seconds). Other
parts of the project add rows by adding a module to `REGISTRY`.

Every module runs in its own Python process (flags, XLA and torch thread pools do not leak from
one to the next). Before each, the runner waits (up to `--settle` seconds, default 120) for the
1-minute load average to fall to 0.5 per core, since the previous module's own work lingers in
it for about a minute. The 1-minute load average is recorded before and after each; a row whose load
exceeded 1.0 per core at either point is marked unreliable (other work was competing for the
cores, so the figure and above all the ratio are not to be published). The table is printed and
written to `<out>/benchmarks.md` and `<out>/benchmarks.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

from benchmarks.common import load_per_core

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name -> module; each module has run(quick) -> rows. Add featvis methods (MACO, accentuation,
# DGN-AM), MIS, human-study load, ... here.
REGISTRY = {
    "forward": "benchmarks.forward",
    "featvis": "benchmarks.featvis_speed",
    "sweep": "benchmarks.sweep",
    "occlusion": "benchmarks.occlusion",
    "featvis_methods": "benchmarks.featvis_methods",
    "mis": "benchmarks.mis",
}
_MARK = "@@ROWS@@"
MAX_LOAD_PER_CORE = 1.0
SETTLED_LOAD_PER_CORE = 0.5  # before each module, wait (up to --settle s) for the load to fall


def wait_for_idle(max_s: float, name: str, level: float = SETTLED_LOAD_PER_CORE) -> float:
  """Wait until the 1-minute load per core is at most `level` or `max_s` seconds have passed
  (the previous module's own work lingers in the load average for about a minute)."""
  if max_s <= 0:
    return float("nan")
  t0 = time.monotonic()
  load = load_per_core()
  if load > level:
    print(f"[{name}] waiting for the load to settle ({load:.2f} per core) ...", flush=True)
  while load > level and time.monotonic() - t0 < max_s:
    time.sleep(5)
    load = load_per_core()
  return load


def _child(module: str, quick: bool) -> None:
  import importlib

  from cv_jax import devices
  if devices.requested():  # before the module's first JAX computation
    devices.use_cpu_devices(devices.requested())
  rows = importlib.import_module(module).run(quick)
  print(_MARK + json.dumps(rows), flush=True)


def run_module(name: str, quick: bool, timeout: float, cpu_devices: int = 0) -> dict:
  """Run one registered module in a subprocess; its rows plus load before/after and status.
  `cpu_devices` > 0 gives the child's JAX that many CPU devices (`cv_jax.devices`)."""
  before = load_per_core()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  if cpu_devices:
    env["CV_JAX_CPU_DEVICES"] = str(cpu_devices)
  cmd = [sys.executable, "-m", "benchmarks.run_all", "--child", REGISTRY[name]]
  if quick:
    cmd.append("--quick")
  try:
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    out, err, rc = p.stdout, p.stderr, p.returncode
  except subprocess.TimeoutExpired:
    out, err, rc = "", f"timed out after {timeout:.0f} s", -1
  after = load_per_core()
  rows = []
  for line in out.splitlines():
    if line.startswith(_MARK):
      rows = json.loads(line[len(_MARK):])
  error = None if rows else (err.strip().splitlines() or [f"exit code {rc}"])[-1]
  return dict(name=name, rows=rows, load_before=before, load_after=after, error=error,
              reliable=max(before, after) <= MAX_LOAD_PER_CORE)


def normalize(row: dict) -> dict:
  """A row in the table's schema; also accepts the older keys some modules return
  (`what` / `benchmark` + `method` + `setting` for the path, `unit_steps_per_s` and
  `peer_unit_steps_per_s` for the values, a text `peer` for what the peer is)."""
  r = dict(row)
  if "path" not in r:
    r["path"] = r.get("what") or " ".join(
        str(r[k]) for k in ("benchmark", "method", "setting") if r.get(k) is not None)
  if r.get("cv_jax") is None and "unit_steps_per_s" in r:
    r["cv_jax"] = r["unit_steps_per_s"]
    r.setdefault("unit", "unit-steps/s")
  if isinstance(r.get("peer"), str):
    r.setdefault("peer_what", r["peer"])
    r["peer"] = r.get("peer_unit_steps_per_s")
  r.setdefault("unit", "")
  r.setdefault("command", f"benchmarks/{r.get('benchmark', '?')}.py")
  if r.get("notes") is None:
    r["notes"] = ", ".join(f"{k} {r[k]}" for k in ("compile_s", "load_before", "load_after")
                           if k in r)
  return r


def _fmt(v) -> str:
  if v is None:
    return "-"
  return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def verdict(row: dict) -> tuple[str, str]:
  """(ratio text, goal text incl. met/missed) for one row."""
  c, p = row.get("cv_jax"), row.get("peer")
  ratio = f"{c / p:.2f}x" if c is not None and p else "-"
  if "goal" in row:
    ok = bool(p) and c / p >= row["goal"]
    return ratio, f">= {row['goal']}x {'met' if ok else 'MISSED'}"
  if "goal_abs" in row:
    ok = c >= row["goal_abs"]
    return ratio, f">= {row['goal_abs']:g} {row['unit']} {'met' if ok else 'MISSED'}"
  if "goal_max" in row:
    ok = c <= row["goal_max"]
    return ratio, f"<= {row['goal_max']:g} {row['unit']} {'met' if ok else 'MISSED'}"
  return ratio, "-"


def table(results: list[dict], header: str) -> str:
  """The markdown table of all rows (unreliable rows flagged)."""
  lines = [header, "",
           "| path | unit | cv_jax | peer | ratio | goal | load/core before → after | command |",
           "|---|---|---|---|---|---|---|---|"]
  notes = []
  for r in results:
    load = f"{r['load_before']:.2f} → {r['load_after']:.2f}"
    if not r["reliable"]:
      load += " **unreliable**"
    if r["error"]:
      lines.append(f"| {r['name']} | - | failed | - | - | - | {load} | {r['error'][:80]} |")
      continue
    for row in map(normalize, r["rows"]):
      ratio, goal = verdict(row)
      lines.append(f"| {row['path']} | {row['unit']} | {_fmt(row['cv_jax'])} | "
                   f"{_fmt(row.get('peer'))} | {ratio} | {goal} | {load} | `{row['command']}` |")
      notes.append(f"- {row['path']}: peer = {row.get('peer_what', '-')}; {row.get('notes', '')}")
  return "\n".join(lines + ["", "Peers and notes:", ""] + notes) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="fast smoke run (not for publishing)")
  ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(REGISTRY)}")
  ap.add_argument("--out", default="bench_results", help="folder for benchmarks.{md,json}")
  ap.add_argument("--timeout", type=float, default=1800, help="seconds per module")
  ap.add_argument("--cpu_devices", type=int, default=os.cpu_count() or 1,
                  help="JAX CPU devices for cv_jax (default: one per core, cv_jax.devices; 1: "
                       "XLA's single device). PyTorch peers use all cores as threads either way")
  ap.add_argument("--settle", type=float, default=None,
                  help="seconds to wait before each module for the 1-minute load to fall to "
                       f"{SETTLED_LOAD_PER_CORE} per core (default 120, 0 with --quick)")
  ap.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.child:
    _child(args.child, args.quick)
    return 0
  names = [n for n in args.only.split(",") if n] or list(REGISTRY)
  unknown = [n for n in names if n not in REGISTRY]
  if unknown:
    print(f"benchmarks: error: unknown benchmark {unknown[0]!r}; choose from "
          f"{', '.join(REGISTRY)}", file=sys.stderr)
    return 1
  results = []
  settle = args.settle if args.settle is not None else (0.0 if args.quick else 120.0)
  for n in names:
    wait_for_idle(settle, n)
    print(f"[{n}] running ...", flush=True)
    r = run_module(n, args.quick, args.timeout, args.cpu_devices)
    print(f"[{n}] {'error: ' + r['error'] if r['error'] else 'done'}", flush=True)
    results.append(r)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  header = (f"Speed table, {now}, {platform.node()}: {os.cpu_count()} CPU cores, "
            f"{platform.processor() or platform.machine()}; cv_jax on {args.cpu_devices} JAX "
            f"CPU device(s); `python -m benchmarks{' --quick' if args.quick else ''}"
            f"{'' if args.cpu_devices == (os.cpu_count() or 1) else f' --cpu_devices={args.cpu_devices}'}`")
  text = table(results, header)
  print("\n" + text)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "benchmarks.md").write_text(text)
  (out / "benchmarks.json").write_text(json.dumps(dict(when=now, quick=args.quick,
                                                       results=results), indent=1))
  return 0 if all(not r["error"] for r in results) else 1


if __name__ == "__main__":
  sys.exit(main())
