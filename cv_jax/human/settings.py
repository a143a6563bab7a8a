"""Settings of a human study (stored with the study at `init`, read by the server)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a study's server needs beyond `experiment.json`.

  Attributes:
    lease_s: how long a claimed slot stays reserved for its session (seconds). After it the
      session is `abandoned` (its data kept) and the slot reopens.
    resume_max_age_s: a session older than this cannot be resumed (None: the lease decides).
    max_attempts: failed-exclusion sessions per slot before the slot is `retired` (paper: 3).
    practice_max_attempts: practice blocks at most; after the last one the main trials follow.
    practice_block: practice trials per block (paper: 1 "obvious" + 3 others = 4).
    practice_obvious: how many leading practice trials count as "obvious" (paper: 3).
    practice_conditions: conditions that have practice (paper: all but `none`).
    min_width, min_height: the window check (paper: 940 x 600).
    feedback_delay_ms: delay before the Continue button appears (paper: 350).
    prolific_completion_code: the Prolific study's completion code (redirect `cc=`); None:
      Prolific participants get a receipt code page instead.
    prolific_complete_url: the Prolific completion address (the code is appended as `cc=`).
    consent_html: the consent text (HTML) on the start page.
  """
  lease_s: float = 3600.0
  resume_max_age_s: float | None = None
  max_attempts: int = 3
  practice_max_attempts: int = 5
  practice_block: int = 4
  practice_obvious: int = 3
  practice_conditions: tuple[str, ...] = ("synthetic", "natural", "mixed", "blur")
  min_width: int = 940
  min_height: int = 600
  feedback_delay_ms: int = 350
  prolific_completion_code: str | None = None
  prolific_complete_url: str = "https://app.prolific.com/submissions/complete"
  consent_html: str = (
      "<p>This study is part of research on how people understand image-recognition models. "
      "You will see images and answer which of two images a model prefers. It takes about "
      "10 minutes. Your answers are stored with your recruiting platform's participant id, "
      "not with your name or IP address, and are used for research only. You may stop at any "
      "time.</p><p>By clicking <b>I agree</b> you consent to take part.</p>")

  def to_json(self) -> str:
    """The settings as a JSON string."""
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
    """Settings from a mapping (unknown keys are an error naming them)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f"unknown study settings {unknown}; known: {sorted(names)}")
    v = dict(values)
    if "practice_conditions" in v:
      v["practice_conditions"] = tuple(v["practice_conditions"])
    s = cls(**v)
    if s.lease_s <= 0 or s.max_attempts < 1 or s.practice_max_attempts < 1:
      raise ValueError("lease_s must be > 0, max_attempts and practice_max_attempts >= 1")
    return s

  @classmethod
  def from_json(cls, text: str) -> Settings:
    """Settings from `to_json` output."""
    return cls.from_mapping(json.loads(text))
