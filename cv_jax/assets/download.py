"""Download one public file: resumable, checksummed, renamed into place only when complete.

`fetch(remote, target)` writes `<target>.part`, resumes it with an HTTP Range request when a
previous attempt left one, checks the byte count and the recorded digest, and only then renames
it to `target`. A file whose size or digest is wrong is deleted (never cached); a network
failure keeps the partial file so the next call resumes it.

`CV_JAX_MIRROR=<base URL>` replaces the public hosts: file `remote.mirror_path` is fetched from
`<base>/<mirror_path>` (a mirror is a copy of a `$CV_JAX_HOME` folder served over HTTP).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

CHUNK = 1 << 16
TIMEOUT_S = 60


class DownloadError(OSError):
  """A file could not be downloaded, or what arrived is not the recorded file."""


class UnreachableError(DownloadError):
  """The host could not be reached at all (no route, name not resolved, refused, timed out).

  Other files from the same host would fail the same way, so a caller fetching many files stops.
  """


@dataclass(frozen=True)
class RemoteFile:
  """A public file: where it is, its size and digest, and its path inside a mirror or cache."""

  url: str
  size: int
  digest: str  # "sha256:<hex>" or "sha1:<hex>"
  mirror_path: str

  @property
  def algorithm(self) -> str:
    return self.digest.split(":", 1)[0]

  @property
  def hexdigest(self) -> str:
    return self.digest.split(":", 1)[1]


def mirror() -> str | None:
  """The base URL in `$CV_JAX_MIRROR` (without a trailing slash), or None."""
  base = os.environ.get("CV_JAX_MIRROR", "").strip()
  return base.rstrip("/") or None


def source_url(remote: RemoteFile) -> str:
  """Where `remote` is fetched from: the mirror when `$CV_JAX_MIRROR` is set, else its URL."""
  base = mirror()
  return f"{base}/{remote.mirror_path}" if base else remote.url


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
  """Hex digest of a file's bytes."""
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      h.update(chunk)
  return h.hexdigest()


def _open(url: str, start: int) -> Any:
  req = urllib.request.Request(url, headers={"User-Agent": "cv_jax"})
  if start:
    req.add_header("Range", f"bytes={start}-")
  return urllib.request.urlopen(req, timeout=TIMEOUT_S)


def _announced_size(r: Any) -> int | None:
  """The whole file's size as the server states it (Content-Range or Content-Length), if it does."""
  rng = r.headers.get("Content-Range", "")
  if r.status == 206 and "/" in rng and not rng.endswith("/*"):
    return int(rng.rsplit("/", 1)[1])
  length = r.headers.get("Content-Length")
  if r.status == 200 and length is not None and length.isdigit():
    return int(length)
  return None


def fetch(remote: RemoteFile, target: str | os.PathLike, bar: Any = None) -> pathlib.Path:
  """Download `remote` to `target` (resuming `<target>.part`), verify it, rename into place.

  `bar`: a tqdm-like object whose `update(n)` is called with every chunk's byte count (the
  caller owns it, so one bar can count a whole file set); None for no progress.
  Raises DownloadError (the partial file is kept when the transfer broke off, deleted when
  what arrived is wrong).
  """
  target = pathlib.Path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  part = target.with_name(target.name + ".part")
  url = source_url(remote)
  have = part.stat().st_size if part.exists() else 0
  if have > remote.size:
    part.unlink()
    have = 0
  if bar is not None and have:
    bar.update(have)  # resumed bytes count as done
  if have < remote.size:
    try:
      with _open(url, have) as r:
        if have and r.status != 206:  # the server ignored the Range header: start over
          if bar is not None:
            bar.update(-have)
          have = 0
        total = _announced_size(r)
        if total is not None and total != remote.size:
          part.unlink(missing_ok=True)
          raise DownloadError(f"{url} is {total:,} bytes, expected {remote.size:,}: not the "
                              "recorded file; nothing was kept")
        with open(part, "ab" if have else "wb") as f:
          while chunk := r.read(CHUNK):
            f.write(chunk)
            if bar is not None:
              bar.update(len(chunk))
    except DownloadError:
      raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
      reason = getattr(e, "reason", None) or e
      # An HTTP status (404, 500) is about this file; anything else is about the host.
      error = DownloadError if isinstance(e, urllib.error.HTTPError) else UnreachableError
      raise error(f"cannot download {url}: {type(e).__name__}: {reason}") from e
  got = part.stat().st_size
  if got < remote.size:  # the connection closed early: keep the bytes for the next attempt
    raise DownloadError(f"the transfer of {url} broke off after {got:,} of {remote.size:,} "
                        "bytes; run again to resume it")
  if got > remote.size:
    part.unlink()
    raise DownloadError(f"{url} sent {got:,} bytes, expected {remote.size:,}; "
                        "the download was discarded")
  digest = file_digest(part, remote.algorithm)
  if digest != remote.hexdigest:
    part.unlink()
    raise DownloadError(f"{url} has {remote.algorithm} {digest}, expected {remote.hexdigest}; "
                        "the corrupt download was discarded")
  os.replace(part, target)
  return target
