"""Screenshots of the participant's trial page for docs/human.md and the README.

    python docs/figures/human_screenshots.py --experiment=runs/demo [--out=docs/figures]

Creates a throwaway study of the experiment, serves it on 127.0.0.1, and plays one participant
per condition (synthetic, mixed, none) in headless Chromium through the instructions and the
practice to the first main trial; saves `human_trial_<condition>.png` (1280 x 800 window,
scaled to 960 px wide, 256 colours).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import human_util as hu  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from test_human_browser import Player  # noqa: E402


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--experiment", required=True)
  ap.add_argument("--out", default=str(REPO / "docs" / "figures"))
  args = ap.parse_args()
  from PIL import Image
  exp = pathlib.Path(args.experiment).resolve()
  out = pathlib.Path(args.out)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="cvjax_shots_"))
  db = str(tmp / "shots.db")
  hu.cli("human", "init", f"--experiment={exp}", f"--db={db}", "--prolific_code=DEMO")
  server = hu.Server(exp, db).start()
  study = {"exp": exp, "db": db, "server": server, "root": tmp,
           "doc": json.loads((exp / "experiment.json").read_text())}
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=hu.chromium_path(), args=hu.CHROMIUM_ARGS)
      for condition in ("synthetic", "mixed", "none"):
        pl = Player(browser, study, f"shot-{condition}", condition=condition).start()
        pl.instructions()
        if condition != "none":
          pl.practice(fail_first=False)
        pl.page.wait_for_function("() => !!document.querySelector('.trial.shown')",
                                  polling="raf")
        raw = tmp / f"{condition}.png"
        pl.page.screenshot(path=str(raw))
        img = Image.open(raw).convert("RGB")
        img = img.resize((960, round(img.height * 960 / img.width)), Image.LANCZOS)
        target = out / f"human_trial_{condition}.png"
        img.quantize(256).save(target, optimize=True)
        print(target, target.stat().st_size // 1024, "KiB")
        pl.close()
      browser.close()
  finally:
    server.stop()


if __name__ == "__main__":
  main()
