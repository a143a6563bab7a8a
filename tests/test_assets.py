"""The demo's assets: shared folder, cache, and the whole download path against a local mirror.

A `http.server` on 127.0.0.1 serves files the tests prepare (a `.caffemodel` written from the
shared BVLC arrays with the project's Caffe writer, and a few sample JPEGs), with HTTP Range
support, a request log, and switches to corrupt a file or cut a transfer short. The catalogue's
records are pointed at those files' sizes and digests; everything else is the real code path.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pathlib
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from cv_jax import assets, models
from cv_jax.assets import catalog
from cv_jax.assets.download import RemoteFile
from cv_jax.weights.formats import caffe

REPO = pathlib.Path(__file__).resolve().parents[1]
N_IMAGES = 5


class _Handler(http.server.BaseHTTPRequestHandler):
  """GET with optional Range; logs (path, Range header); can corrupt or cut named files."""

  def do_GET(self):  # noqa: N802 (http.server's name)
    srv = self.server
    rel = self.path.lstrip("/")
    rng = self.headers.get("Range")
    with srv.lock:
      srv.requests.append((rel, rng))
    f = srv.root / rel
    if not f.is_file():
      self.send_error(404)
      return
    data = f.read_bytes()
    if rel in srv.corrupt:
      data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    start = 0
    if rng and srv.ranges:
      start = int(rng.split("=", 1)[1].split("-", 1)[0])
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    with srv.lock:
      cut = srv.cut.pop(rel, None)
    if cut is None:
      self.wfile.write(body)
    else:  # a connection that breaks off after `cut` bytes
      self.wfile.write(body[:cut])
      self.wfile.flush()
      self.close_connection = True

  def log_message(self, *args):
    pass


@pytest.fixture(scope="module")
def served(tmp_path_factory, bvlc_npz, sample_images):
  """A mirror folder laid out like $CV_JAX_HOME: googlenet_bvlc/ and imagenet_samples/."""
  root = tmp_path_factory.mktemp("mirror")
  with np.load(bvlc_npz) as z:
    blobs = {k: z[k] for k in z.files}
  (root / "googlenet_bvlc").mkdir()
  caffe.write_caffemodel(root / "googlenet_bvlc" / "bvlc_googlenet.caffemodel", blobs)
  (root / "imagenet_samples").mkdir()
  for p in sample_images[:N_IMAGES]:
    shutil.copy(p, root / "imagenet_samples" / p.name)
  return root


def _record(root: pathlib.Path, rel: str, algo: str) -> RemoteFile:
  data = (root / rel).read_bytes()
  return RemoteFile(url=f"http://public.invalid/{rel}", size=len(data),
                    digest=f"{algo}:{hashlib.new(algo, data).hexdigest()}", mirror_path=rel)


@pytest.fixture
def env(tmp_path, monkeypatch, served):
  """Fresh $CV_JAX_HOME, an empty shared folder, the catalogue pointed at the served files."""
  records = {
      "googlenet_bvlc": (_record(served, "googlenet_bvlc/bvlc_googlenet.caffemodel", "sha1"),),
      "imagenet_samples": tuple(_record(served, f"imagenet_samples/{p.name}", "sha256")
                                for p in sorted((served / "imagenet_samples").iterdir())),
  }
  monkeypatch.setattr(catalog, "_files", lambda name: records[name])
  home = tmp_path / "home"
  (tmp_path / "no_shared").mkdir()
  monkeypatch.setenv("CV_JAX_HOME", str(home))
  monkeypatch.setenv("CV_JAX_SHARED", str(tmp_path / "no_shared"))
  monkeypatch.delenv("CV_JAX_MIRROR", raising=False)
  return home


@pytest.fixture
def mirror(served, monkeypatch):
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  srv.root, srv.requests, srv.corrupt, srv.cut, srv.ranges = served, [], set(), {}, True
  srv.lock = threading.Lock()
  t = threading.Thread(target=srv.serve_forever, daemon=True)
  t.start()
  monkeypatch.setenv("CV_JAX_MIRROR", f"http://127.0.0.1:{srv.server_address[1]}/")
  yield srv
  srv.shutdown()
  srv.server_close()


def test_shared_folder_first(tmp_path, monkeypatch, bvlc_npz):
  """With the shared folder present nothing is downloaded; an explicit path wins over it."""
  monkeypatch.setenv("CV_JAX_HOME", str(tmp_path))
  monkeypatch.setenv("CV_JAX_MIRROR", "http://127.0.0.1:9/")  # would fail if used
  shared = bvlc_npz.parents[2]
  monkeypatch.setenv("CV_JAX_SHARED", str(shared))
  assert assets.locate("googlenet_bvlc") == bvlc_npz
  assert assets.locate("imagenet_samples") == shared / "data" / "imagenet_samples"
  assert assets.locate("googlenet_bvlc", explicit=tmp_path) == tmp_path
  with pytest.raises(assets.AssetError, match="does not exist"):
    assets.locate("googlenet_bvlc", explicit=tmp_path / "nope.caffemodel")


def test_mirror_fetches_verifies_caches(env, mirror, served, bvlc_model):
  got = assets.ensure(["googlenet_bvlc", "imagenet_samples"], progress=False)
  assert got["googlenet_bvlc"] == env / "googlenet_bvlc" / "bvlc_googlenet.caffemodel"
  assert got["imagenet_samples"] == env / "imagenet_samples"
  assert len(mirror.requests) == 1 + N_IMAGES
  assert all(rng is None for _, rng in mirror.requests)
  for p in (served / "imagenet_samples").iterdir():
    assert (env / "imagenet_samples" / p.name).read_bytes() == p.read_bytes()
  assert not list(env.rglob("*.part"))
  # A second call (and models.load, and the image source) make no request.
  assets.ensure(["googlenet_bvlc", "imagenet_samples"], progress=False)
  net = models.load("googlenet_bvlc")
  from cv_jax.data import open_source
  src = open_source("asset:imagenet_samples")
  assert len(mirror.requests) == 1 + N_IMAGES
  assert len(src) == N_IMAGES and src.root == str((env / "imagenet_samples").resolve())
  # The downloaded .caffemodel holds the shared arrays.
  ours, ref = net.params(), bvlc_model.params()
  assert set(ours) == set(ref)
  for layer in ref:
    for k in ref[layer]:
      np.testing.assert_array_equal(np.asarray(ours[layer][k]), np.asarray(ref[layer][k]))


def test_corrupt_download_refused_not_cached(env, mirror):
  name = catalog._files("imagenet_samples")[1].mirror_path
  mirror.corrupt.add(name)
  with pytest.raises(assets.AssetError) as e:
    assets.locate("imagenet_samples", progress=False)
  msg = str(e.value)
  assert "\n" not in msg and "sha256" in msg and "discarded" in msg
  base = name.rsplit("/", 1)[1]
  assert base in msg and str(env / "imagenet_samples") in msg
  assert not (env / "imagenet_samples" / base).exists()
  assert not list(env.rglob("*.part"))
  assert len(list((env / "imagenet_samples").iterdir())) == N_IMAGES - 1  # the good ones stay
  # Fixed upstream: only the missing file is fetched.
  mirror.corrupt.clear()
  before = len(mirror.requests)
  assets.locate("imagenet_samples", progress=False)
  assert [p for p, _ in mirror.requests[before:]] == [name]


def test_partial_download_resumes(env, mirror, served):
  rel = "googlenet_bvlc/bvlc_googlenet.caffemodel"
  size = (served / rel).stat().st_size
  mirror.cut[rel] = 10_000_000  # the connection breaks off after 10 MB
  with pytest.raises(assets.AssetError, match="broke off after 10,000,000 of .* run again to resume"):
    assets.locate("googlenet_bvlc", progress=False)
  part = env / "googlenet_bvlc" / "bvlc_googlenet.caffemodel.part"
  assert part.stat().st_size == 10_000_000
  assert not (env / "googlenet_bvlc" / "bvlc_googlenet.caffemodel").exists()
  path = assets.locate("googlenet_bvlc", progress=False)
  assert mirror.requests[-1] == (rel, "bytes=10000000-")
  assert path.read_bytes() == (served / rel).read_bytes() and path.stat().st_size == size
  assert not part.exists()


def test_server_without_range_starts_over(env, mirror, served):
  rel = "googlenet_bvlc/bvlc_googlenet.caffemodel"
  part = env / "googlenet_bvlc" / "bvlc_googlenet.caffemodel.part"
  part.parent.mkdir(parents=True)
  part.write_bytes(b"\0" * 1000)  # not even the right bytes: a 200 reply must replace them
  mirror.ranges = False
  path = assets.locate("googlenet_bvlc", progress=False)
  assert mirror.requests == [(rel, "bytes=1000-")]
  assert path.read_bytes() == (served / rel).read_bytes()


def test_file_of_another_size_refused_at_once(env, mirror, monkeypatch):
  """A mirror serving a different file (its Content-Length says so) is refused, nothing kept."""
  (real,) = catalog._files("googlenet_bvlc")
  wrong = RemoteFile(url=real.url, size=real.size + 10, digest=real.digest,
                     mirror_path=real.mirror_path)
  files = {"googlenet_bvlc": (wrong,)}
  monkeypatch.setattr(catalog, "_files", lambda name: files[name])
  with pytest.raises(assets.AssetError, match=r"is [\d,]+ bytes, expected [\d,]+: not the recorded"):
    assets.locate("googlenet_bvlc", progress=False)
  assert len(mirror.requests) == 1 and not list(env.rglob("*.part"))


def test_offline_one_line(env, monkeypatch):
  monkeypatch.setenv("CV_JAX_MIRROR", "http://127.0.0.1:9")  # discard port: refused
  with pytest.raises(assets.AssetError) as e:
    assets.ensure(["googlenet_bvlc", "imagenet_samples"], progress=False)
  msg = str(e.value)
  assert "\n" not in msg
  w = catalog._files("googlenet_bvlc")[0]
  assert f"bvlc_googlenet.caffemodel ({w.size:,} bytes, sha1 {w.hexdigest})" in msg
  assert str(env / "googlenet_bvlc" / "bvlc_googlenet.caffemodel") in msg
  assert f"{N_IMAGES} of {N_IMAGES} files" in msg and str(env / "imagenet_samples") in msg
  assert "CV_JAX_MIRROR" in msg and "Connection refused" in msg
  assert not env.exists() or not list(env.rglob("*.part"))


def test_experiment_cli_offline_one_line(env, tmp_path):
  """The README's demo command with nothing at hand and no network: one line, exit code 1."""
  run_env = dict(os.environ, PYTHONPATH=str(REPO), CV_JAX_MIRROR="http://127.0.0.1:9",
                 JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-m", "cv_jax.cli", "experiment",
                      f"--config={REPO / 'configs' / 'experiment.py'}:demo",
                      f"--workdir={tmp_path / 'run'}", "--noprogress"],
                     capture_output=True, text=True, env=run_env, timeout=300)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 1, r.stderr
  assert len(lines) == 1 and lines[0].startswith("cv-jax experiment: error: "), r.stderr
  assert "bvlc_googlenet.caffemodel" in lines[0] and "imagenet_samples" in lines[0]
  assert not (tmp_path / "run").exists()


def test_offline_stops_after_the_first_unreachable_file(env, monkeypatch):
  """An unreachable host is tried once, not once per file (1000 photos took ~50 s to fail)."""
  from cv_jax.assets import resolve
  calls = []
  real_fetch = resolve.fetch
  monkeypatch.setattr(resolve, "fetch", lambda *a, **k: calls.append(a[0]) or real_fetch(*a, **k))
  monkeypatch.setattr(resolve, "WORKERS", 1)
  monkeypatch.setenv("CV_JAX_MIRROR", "http://127.0.0.1:9")  # discard port: refused
  with pytest.raises(assets.AssetError, match="Connection refused"):
    assets.locate("imagenet_samples", progress=False)
  assert len(calls) == 1


def test_missing_file_on_mirror_does_not_stop_the_others(env, mirror, monkeypatch):
  """A 404 is about one file: the rest still arrive and stay cached."""
  files = catalog._files("imagenet_samples")
  gone = RemoteFile(url=files[0].url, size=files[0].size, digest=files[0].digest,
                    mirror_path="imagenet_samples/not_on_the_mirror.JPEG")
  records = {"imagenet_samples": (gone,) + files[1:]}
  monkeypatch.setattr(catalog, "_files", lambda name: records[name])
  with pytest.raises(assets.AssetError, match="HTTPError: Not Found"):
    assets.locate("imagenet_samples", progress=False)
  assert len(mirror.requests) == N_IMAGES
  assert sorted(p.name for p in (env / "imagenet_samples").iterdir()) == \
      sorted(r.mirror_path.rsplit("/", 1)[1] for r in files[1:])


def test_hand_filled_cache(env, served, bvlc_npz, monkeypatch):
  """A user without internet fills $CV_JAX_HOME by hand: the blob .npz is taken as it is; photos
  of the recorded names but other sizes (a resized copy) are not, and the line says how to use
  them; nothing the user put there is touched."""
  monkeypatch.setenv("CV_JAX_MIRROR", "http://127.0.0.1:9")  # offline
  (env / "googlenet_bvlc").mkdir(parents=True)
  shutil.copy(bvlc_npz, env / "googlenet_bvlc" / "bvlc_googlenet_blobs.npz")
  assert assets.locate("googlenet_bvlc") == env / "googlenet_bvlc" / "bvlc_googlenet_blobs.npz"
  photos = env / "imagenet_samples"
  photos.mkdir()
  for p in (served / "imagenet_samples").iterdir():
    (photos / p.name).write_bytes(p.read_bytes() + b"\0")  # same name, another size
  before = {p.name: p.read_bytes() for p in photos.iterdir()}
  with pytest.raises(assets.AssetError) as e:
    assets.ensure(["googlenet_bvlc", "imagenet_samples"], progress=False)
  msg = str(e.value)
  assert "\n" not in msg and "BVLC" not in msg
  assert f"{N_IMAGES} file(s) of these names in {photos} have other sizes" in msg
  assert f"pass folder:{photos} explicitly" in msg
  assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
  # A wrong-size .caffemodel in the cache (and no .npz) is named the same way.
  (env / "googlenet_bvlc" / "bvlc_googlenet_blobs.npz").unlink()
  (env / "googlenet_bvlc" / "bvlc_googlenet.caffemodel").write_bytes(b"not the model")
  with pytest.raises(assets.AssetError, match="bvlc_googlenet.caffemodel has another size, so it "
                     "is not the recorded file"):
    assets.locate("googlenet_bvlc", progress=False)
