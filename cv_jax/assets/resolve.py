"""Find the demo's weights and images: explicit path, shared folder, cache, download.

`locate(name, explicit)` returns a path for asset `name` ("googlenet_bvlc",
"imagenet_samples"), trying in order:
1. `explicit` (a flag's value): used as given, an error if it does not exist;
2. the project's shared folder: `$CV_JAX_SHARED` when set, else `../shared` beside a checkout;
3. the cache `$CV_JAX_HOME/<asset>/` (default `~/.cache/cv_jax`), when complete;
4. a download of the public files (or of `$CV_JAX_MIRROR/<asset>/...`), each checked against
   its recorded size and digest before it enters the cache.
When all of them fail, AssetError says in one line which files are missing, their sizes and
digests, and where to put them. `ensure(names)` does the same for several assets and reports
every missing one in that single line.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pathlib
import sys
import threading
from typing import Iterable

from cv_jax.assets import catalog
from cv_jax.assets.download import DownloadError, RemoteFile, UnreachableError, fetch, source_url

WORKERS = 8  # parallel transfers for a folder of small files


class AssetError(ValueError):
  """An asset is neither at hand nor downloadable; the message is one line saying what to do."""


def home() -> pathlib.Path:
  """The cache folder: `$CV_JAX_HOME`, default `~/.cache/cv_jax`."""
  return pathlib.Path(os.environ.get("CV_JAX_HOME") or "~/.cache/cv_jax").expanduser()


def shared_root() -> pathlib.Path | None:
  """The shared folder: `$CV_JAX_SHARED` if set, else `../shared` beside a source checkout."""
  env = os.environ.get("CV_JAX_SHARED")
  if env is not None:
    p = pathlib.Path(env).expanduser()
    return p if env and p.is_dir() else None
  checkout = pathlib.Path(__file__).resolve().parents[2]
  p = checkout.parent / "shared"
  return p if (checkout / "setup.cfg").exists() and p.is_dir() else None


def cache_path(asset: catalog.Asset, remote: RemoteFile | None = None) -> pathlib.Path:
  """Where `asset` (or one of its files) lives in the cache."""
  d = home() / asset.home
  if remote is None:
    return d if asset.kind == "folder" else d / _basename(asset.files[0])
  return d / _basename(remote)


def _basename(remote: RemoteFile) -> str:
  return remote.mirror_path.rsplit("/", 1)[-1]


def _missing_in_cache(asset: catalog.Asset) -> list[RemoteFile]:
  """Files of `asset` absent from the cache or of the wrong size (digests are checked on entry)."""
  out = []
  for r in asset.files:
    p = cache_path(asset, r)
    if not p.is_file() or p.stat().st_size != r.size:
      out.append(r)
  return out


def in_shared(name: str) -> pathlib.Path | None:
  """Asset `name` in the shared folder (step 2 of `locate`), or None."""
  root = shared_root()
  if root is not None:
    for rel in catalog.get(name).shared:
      if (root / rel).exists():
        return root / rel
  return None


def find(name: str, explicit: str | os.PathLike | None = None) -> pathlib.Path | None:
  """Steps 1-3 of `locate` (no network): the path, or None when the asset must be downloaded."""
  asset = catalog.get(name)
  if explicit:
    p = pathlib.Path(explicit).expanduser()
    if not p.exists():
      raise AssetError(f"{asset.what}: {p} does not exist; pass an existing path")
    return p
  p = in_shared(name)
  if p is not None:
    return p
  for alt in asset.also:
    if (home() / asset.home / alt).exists():
      return home() / asset.home / alt
  if not _missing_in_cache(asset):
    return cache_path(asset)
  return None


def locate(name: str, explicit: str | os.PathLike | None = None, *, download: bool = True,
           progress: bool = True) -> pathlib.Path:
  """The path of asset `name` (a file, or a folder of files); see the module doc for the order."""
  return ensure([name], {name: explicit} if explicit else None, download=download,
                progress=progress)[name]


def ensure(names: Iterable[str], explicit: dict[str, str | os.PathLike | None] | None = None, *,
           download: bool = True, progress: bool = True) -> dict[str, pathlib.Path]:
  """`locate` every asset in `names`; one AssetError naming all that are still missing."""
  explicit = explicit or {}
  found, problems = {}, []
  for name in names:
    p = find(name, explicit.get(name))
    if p is None:
      try:
        p = _download(catalog.get(name), download, progress)
      except AssetError as e:
        problems.append(str(e))
        continue
    found[name] = p
  if problems:
    raise AssetError("; ".join(problems))
  return found


def _download(asset: catalog.Asset, allowed: bool, progress: bool) -> pathlib.Path:
  todo = _missing_in_cache(asset)
  failures: list[str] = []
  if allowed:
    nbytes = sum(r.size for r in todo)
    bar = None
    if progress:
      from tqdm.auto import tqdm
      where = source_url(todo[0]).rsplit("/", 1)[0]
      print(f"downloading {asset.what}: {len(todo)} file(s), {nbytes / 1e6:.1f} MB from "
            f"{where} into {home() / asset.home}", file=sys.stderr, flush=True)
      bar = tqdm(total=nbytes, unit="B", unit_scale=True, desc=asset.name, file=sys.stderr)
    unreachable = threading.Event()  # the host is down or we are offline: don't try the rest

    def one(r: RemoteFile) -> None:
      if unreachable.is_set():
        return
      try:
        fetch(r, cache_path(asset, r), bar)
      except UnreachableError:
        unreachable.set()
        raise

    try:
      with cf.ThreadPoolExecutor(min(WORKERS, len(todo))) as pool:
        for job in cf.as_completed([pool.submit(one, r) for r in todo]):
          try:
            job.result()
          except DownloadError as e:
            failures.append(str(e))
    finally:
      if bar is not None:
        bar.close()
    todo = _missing_in_cache(asset)
    if not todo:
      return cache_path(asset)
  raise AssetError(missing_message(asset, todo, failures[0] if failures else
                                   "downloads are off"))


def missing_message(asset: catalog.Asset, missing: list[RemoteFile], reason: str) -> str:
  """One line: what is missing (names, sizes, digests), why, and where to put it."""
  shared = os.environ.get("CV_JAX_SHARED")
  tried = (f"not in the shared folder ({shared or 'none beside the checkout'}) or the cache, "
           f"and not downloaded ({reason})")
  if asset.kind == "file":
    r = missing[0]
    what = (f"{_basename(r)} ({r.size:,} bytes, {r.algorithm} {r.hexdigest}) from {r.url}; "
            f"put it at {cache_path(asset, r)}")
  else:
    total = len(asset.files)
    if len(missing) <= 3:
      names = ", ".join(f"{_basename(r)} ({r.size:,} bytes, {r.algorithm} {r.hexdigest})"
                        for r in missing)
    else:
      names = (f"{len(missing)} of {total} files ({sum(r.size for r in missing):,} bytes; "
               f"each name, size and sha256 in {catalog.SAMPLES_MANIFEST})")
    base = missing[0].url.rsplit("/", 1)[0]
    what = f"{names} from {base}/; put them in {cache_path(asset)}/"
  return (f"{asset.what} missing: {tried}: {what}{_other_files(asset, missing)} (or set "
          f"CV_JAX_MIRROR=<base URL> of a copy of {home()}, or pass the path explicitly)")


def _other_files(asset: catalog.Asset, missing: list[RemoteFile]) -> str:
  """A note on files put in the cache by hand that are not the recorded ones ('' if none).

  The cache takes only the recorded public files; another copy (a resized photo set, another
  export of the weights) is used only when passed explicitly, so a run says which files it used.
  """
  other = [p for p in (cache_path(asset, r) for r in missing) if p.is_file()]
  if not other:
    return ""
  if asset.kind == "folder":
    where = cache_path(asset)
    return (f"; {len(other)} file(s) of these names in {where} have other sizes, so they are not "
            f"the recorded files (e.g. a resized or re-encoded copy): to use them as they are, "
            f"pass folder:{where} explicitly")
  return (f"; {other[0]} has another size, so it is not the recorded file: to use it as it is, "
          f"pass {other[0]} explicitly")
