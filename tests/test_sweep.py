"""Dataset sweep, image sources and exemplar selection (cv_jax.data.sources, cv_jax.sweep).

References are independent of the code under test: numpy lexsort of a full activation matrix,
per-image forward passes, a line-by-line transcription of the paper's notebook selection logic.
Images are generated PNGs (small, so the whole file runs in well under 2 minutes).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

from cv_jax import models
from cv_jax.data import BatchLoader, open_source
from cv_jax.sweep import SweepResult, run, select_exemplars
from cv_jax.sweep.ranking import _NO_ID, _count_not_after, _merge

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("mixed3a_pre_relu", "mixed4a_pre_relu")
RESIZE, CROP = 72, 64
N_IMAGES = 40


def _make_folder(root: pathlib.Path, n: int, seed: int = 0, duplicates: bool = True) -> list[str]:
  """n generated images in class sub-folders (mixed sizes, formats); two exact duplicates."""
  rng = np.random.default_rng(seed)
  names = []
  for i in range(n):
    cls = root / f"n{i % 3:08d}"
    cls.mkdir(parents=True, exist_ok=True)
    h, w = int(rng.integers(70, 110)), int(rng.integers(70, 110))
    base = rng.integers(0, 256, 3)
    img = np.clip(base + rng.normal(0, 40 + 3 * i, (h, w, 3)), 0, 255).astype(np.uint8)
    if duplicates and i in (7, 23):
      img = np.full((90, 80, 3), 127, np.uint8)
      img[20:60, 10:50] = (200, 30, 90)
    ext = ".png" if i % 2 else ".jpg"
    path = cls / f"img_{i:03d}{ext}"
    Image.fromarray(img).save(path, quality=95) if ext == ".jpg" else Image.fromarray(img).save(path)
    names.append(str(path))
  return names


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("sweep_images")
  _make_folder(root, N_IMAGES)
  return root


@pytest.fixture(scope="module")
def model():
  return models.load("inceptionv1", random_init=0)


@pytest.fixture(scope="module")
def reference(model, image_dir):
  """Per-image forward passes (batch 1, no sweep machinery): (N, C) float32 per layer."""
  import jax
  src = open_source(f"folder:{image_dir}", resize=RESIZE, crop=CROP)
  fwd = jax.jit(lambda p, x: {l: v.mean(axis=(1, 2)) for l, v in model.apply(p, x, LAYERS).items()})
  params = model.params()
  rows = [fwd(params, src.load(i)[None]) for i in range(len(src))]
  return src, {l: np.concatenate([np.asarray(r[l]) for r in rows]) for l in LAYERS}


@pytest.fixture(scope="module")
def swept(model, image_dir):
  return run(model, f"folder:{image_dir}", LAYERS, k=12, batch_size=8, micro_batch=2,
             resize=RESIZE, crop=CROP, keep_matrix=True, progress=False, workers=3)


def _lexsort_topk(m: np.ndarray, k: int, largest: bool):
  """Reference: full sort of each column, ties by smaller id."""
  ids = np.arange(m.shape[0])
  idx = np.stack([np.lexsort((ids, -m[:, c] if largest else m[:, c]))[:k] for c in range(m.shape[1])])
  return idx, np.take_along_axis(m.T, idx, axis=1)


# ---------------------------------------------------------------- top-k exactness

def test_streaming_merge_is_exact_with_ties():
  """_merge over random batches equals a full lexsort, also with many ties."""
  import jax
  rng = np.random.default_rng(1)
  n, c, k = 97, 5, 11
  m = rng.integers(-3, 4, (n, c)).astype(np.float32)  # heavy ties
  merge = jax.jit(_merge, static_argnums=(4, 5))
  for largest in (True, False):
    val = np.full((c, k), -np.inf if largest else np.inf, np.float32)
    idx = np.full((c, k), _NO_ID, np.int32)
    starts = np.sort(rng.choice(np.arange(1, n), 9, replace=False))
    for lo, hi in zip(np.r_[0, starts], np.r_[starts, n]):
      val, idx = merge(val, idx, m[lo:hi].T, np.arange(lo, hi, dtype=np.int32), k, largest)
    ref_idx, ref_val = _lexsort_topk(m, k, largest)
    np.testing.assert_array_equal(np.asarray(idx), ref_idx)
    np.testing.assert_array_equal(np.asarray(val), ref_val)


def test_merge_any_ids_padding_and_shapes():
  """_merge on one step's worth of inputs equals a lexsort of (table ∪ batch), for ids in any
  order (batch ids below the table's), padded rows (id _NO_ID, value -inf/inf) in the batch
  and the table, and table depths around powers of two, k < b, k = 1, b = 1."""
  import jax
  rng = np.random.default_rng(7)
  merge = jax.jit(_merge, static_argnums=(4, 5))
  for k, b in ((1, 5), (8, 3), (16, 16), (13, 40), (33, 1), (64, 32)):
    c = 4
    for largest in (True, False):
      pad = -np.inf if largest else np.inf
      n_tab = int(rng.integers(0, k + 1))  # filled table slots; the rest is padding
      ids = rng.permutation(10 * (k + b)).astype(np.int32)
      t_ids, b_ids = ids[:k].copy(), ids[k:k + b].copy()
      tv = rng.integers(-2, 3, (c, k)).astype(np.float32)
      tv[:, n_tab:] = pad
      ti = np.broadcast_to(t_ids, (c, k)).copy()
      ti[:, n_tab:] = _NO_ID
      order = np.lexsort((ti, -tv if largest else tv), axis=1)
      tv, ti = np.take_along_axis(tv, order, 1), np.take_along_axis(ti, order, 1)
      bv = rng.integers(-2, 3, (c, b)).astype(np.float32)
      invalid = rng.random(b) < 0.3
      b_ids[invalid] = _NO_ID
      bv[:, invalid] = pad
      out_v, out_i = merge(tv, ti, bv, b_ids, k, largest)
      all_v = np.concatenate([tv, bv], 1)
      all_i = np.concatenate([ti, np.broadcast_to(b_ids, (c, b))], 1)
      ref = np.lexsort((all_i, -all_v if largest else all_v), axis=1)[:, :k]
      np.testing.assert_array_equal(np.asarray(out_i), np.take_along_axis(all_i, ref, 1),
                                    err_msg=f"k={k} b={b} largest={largest}")
      np.testing.assert_array_equal(np.asarray(out_v), np.take_along_axis(all_v, ref, 1),
                                    err_msg=f"k={k} b={b} largest={largest}")
  # NaN activations never enter a table (the other entries merge as without them)
  tv = np.array([[3, 1, -np.inf, -np.inf]], np.float32)
  ti = np.array([[4, 2, _NO_ID, _NO_ID]], np.int32)
  bv = np.array([[np.nan, 2, -np.nan, 3]], np.float32)
  out_v, out_i = merge(tv, ti, bv, np.arange(10, 14, dtype=np.int32), 4, True)
  np.testing.assert_array_equal(np.asarray(out_i), [[4, 13, 11, 2]])
  np.testing.assert_array_equal(np.asarray(out_v), [[3, 3, 2, 1]])
  bot = np.array([[-1, 1, np.inf, np.inf]], np.float32)
  out_v, out_i = merge(bot, ti, bv, np.arange(10, 14, dtype=np.int32), 4, False)
  np.testing.assert_array_equal(np.asarray(out_i), [[4, 2, 11, 13]])
  np.testing.assert_array_equal(np.asarray(out_v), [[-1, 1, 2, 3]])


def test_count_not_after_is_a_lexicographic_search():
  """The binary search counts table entries <= each query in (key, id) order (numpy count of
  the pairwise comparison as the reference), queries below, inside, equal to and above the
  table, for k = 1, a power of two and one more."""
  import jax
  rng = np.random.default_rng(3)
  search = jax.jit(_count_not_after)
  for k in (1, 8, 9, 200):
    c, b = 3, 24
    kt = np.sort(rng.integers(-4, 5, (c, k)).astype(np.float32), axis=1)
    it = rng.integers(0, 50, (c, k)).astype(np.int32)
    it = np.take_along_axis(it, np.lexsort((it, kt), axis=1), 1)  # sorted by (key, id)
    qk = rng.integers(-6, 7, (c, b)).astype(np.float32)
    qi = rng.integers(-1, 52, (c, b)).astype(np.int32)
    qk[:, :2], qi[:, :2] = kt[:, :1], it[:, :1]  # exact (key, id) matches: first, last entry
    qk[:, 2:4], qi[:, 2:4] = kt[:, -1:], it[:, -1:]
    qk[:, 4], qk[:, 5] = -np.inf, np.inf
    le = (kt[:, None, :] < qk[:, :, None]) | ((kt[:, None, :] == qk[:, :, None])
                                              & (it[:, None, :] <= qi[:, :, None]))
    np.testing.assert_array_equal(np.asarray(search(kt, it, qk, qi)), le.sum(2), err_msg=f"k={k}")


def test_sweep_topk_matches_full_sort(swept, reference):
  src, ref = reference
  assert swept.paths == src.paths and swept.failed == [] and swept.k == 12
  for l in LAYERS:
    r = ref[l]
    # The sweep's activations equal independent per-image forwards (to float32 rounding).
    np.testing.assert_allclose(swept.matrix[l].astype(np.float32), r, rtol=2e-3, atol=2e-3)
    for largest, idx, val in ((True, swept.top_idx[l], swept.top_val[l]),
                              (False, swept.bot_idx[l], swept.bot_val[l])):
      ref_idx, ref_val = _lexsort_topk(r, 12, largest)
      np.testing.assert_allclose(val, ref_val, rtol=1e-5, atol=1e-5)
      # Same ids wherever the reference ranking is not a near-tie.
      gap = np.abs(np.diff(ref_val, axis=1))
      clear = np.ones_like(ref_idx, bool)
      clear[:, 1:] &= gap > 1e-4
      clear[:, :-1] &= gap > 1e-4
      assert clear.mean() > 0.9
      np.testing.assert_array_equal(idx[clear], ref_idx[clear])
      # Descending / ascending, ties ordered by id.
      d = np.diff(val, axis=1)
      assert (d <= 0).all() if largest else (d >= 0).all()
      tie = d == 0
      assert (np.diff(idx, axis=1)[tie] > 0).all()
    # The exact duplicates 7 and 23 (ids by sorted path) tie; the smaller id comes first.
    dup = [i for i, p in enumerate(swept.paths) if p.endswith(("img_007.png", "img_023.png"))]
    assert len(dup) == 2
    m = swept.matrix[l]
    np.testing.assert_array_equal(m[dup[0]], m[dup[1]])


def test_topk_equals_lexsort_of_own_matrix_exactly(model, image_dir, swept):
  """Exact check: float32 tables vs a numpy sort of the same (float32) per-image activations."""
  res = run(model, f"folder:{image_dir}", LAYERS, k=N_IMAGES, batch_size=16, micro_batch=2,
            resize=RESIZE, crop=CROP, progress=False, workers=1)
  for l in LAYERS:
    # With k = N the top table holds every image's activation: rebuild the matrix from it.
    full = np.empty((N_IMAGES, res.top_val[l].shape[0]), np.float32)
    np.put_along_axis(full.T, res.top_idx[l].astype(np.int64), res.top_val[l], axis=1)
    for largest, name in ((True, "top"), (False, "bot")):
      ref_idx, ref_val = _lexsort_topk(full, 12, largest)
      np.testing.assert_array_equal(getattr(swept, f"{name}_idx")[l], ref_idx)
      np.testing.assert_array_equal(getattr(swept, f"{name}_val")[l], ref_val)
    np.testing.assert_array_equal(full.astype(np.float16), swept.matrix[l])


def test_result_independent_of_batch_and_workers(model, image_dir, swept):
  res = run(model, f"folder:{image_dir}", LAYERS, k=12, batch_size=24, micro_batch=2,
            resize=RESIZE, crop=CROP, progress=False, workers=1)
  for name in ("top_idx", "top_val", "bot_idx", "bot_val"):
    for l in LAYERS:
      np.testing.assert_array_equal(getattr(res, name)[l], getattr(swept, name)[l])


def test_save_load_roundtrip(swept, tmp_path):
  swept.save(tmp_path)
  back = SweepResult.load(tmp_path)
  assert back.paths == swept.paths and back.layers == swept.layers
  for l in LAYERS:
    np.testing.assert_array_equal(back.top_idx[l], swept.top_idx[l])
    np.testing.assert_array_equal(back.bot_val[l], swept.bot_val[l])
    np.testing.assert_array_equal(back.matrix[l], swept.matrix[l])


# ---------------------------------------------------------------- sources, corrupt files, errors

def test_folder_source_order_and_loader(image_dir):
  src = open_source(f"folder:{image_dir}", resize=RESIZE, crop=CROP)
  rel = [os.path.relpath(p, image_dir) for p in src.paths]
  assert len(src) == N_IMAGES and rel == sorted(rel) and all("/" in r for r in rel)
  loader = BatchLoader(src, 16, workers=4)
  got = list(loader(8))
  assert [s for s, *_ in got] == [8, 24]
  s, images, valid, failures = got[1]
  assert valid.tolist() == [True] * 16 and not failures
  np.testing.assert_array_equal(images[3], src.load(27))
  s, images, valid, _ = list(loader(32))[0]
  assert valid.sum() == 8 and not images[8:].any()  # padded tail rows
  sub = open_source(str(image_dir), resize=RESIZE, crop=CROP, max_images=5, subset_seed=3)
  assert len(sub) == 5 and set(sub.paths) <= set(src.paths)
  assert sub.paths == sorted(sub.paths)


def test_corrupt_images_skipped_and_reported(model, tmp_path):
  good = _make_folder(tmp_path / "imgs", 10, seed=5, duplicates=False)
  bad_dir = tmp_path / "imgs" / "bad"
  bad_dir.mkdir()
  (bad_dir / "text.jpg").write_text("not an image")
  (bad_dir / "empty.png").write_bytes(b"")
  raw = pathlib.Path(good[0]).read_bytes()
  (bad_dir / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
  raw = pathlib.Path(good[1]).read_bytes()
  (bad_dir / "cut.png").write_bytes(raw[: len(raw) // 2])
  wd = tmp_path / "wd"
  res = run(model, f"folder:{tmp_path / 'imgs'}", ["mixed3a_pre_relu"], k=20, batch_size=8,
            micro_batch=2, resize=RESIZE, crop=CROP, progress=False, workdir=wd, keep_matrix=True)
  bad = {os.path.basename(p) for p, _ in res.failed}
  assert bad == {"text.jpg", "empty.png", "truncated.jpg", "cut.png"}
  assert all(reason for _, reason in res.failed)
  failed_ids = {res.paths.index(p) for p, _ in res.failed}
  assert res.k == 10  # only the 10 readable images are ranked
  assert not failed_ids & set(res.top_idx["mixed3a_pre_relu"].ravel().tolist())
  assert not failed_ids & set(res.bot_idx["mixed3a_pre_relu"].ravel().tolist())
  assert np.isnan(res.matrix["mixed3a_pre_relu"][sorted(failed_ids)].astype(np.float32)).all()
  report = json.loads((wd / "report.json").read_text())
  assert report["n_failed"] == 4 and {os.path.basename(f["path"]) for f in report["failed"]} == bad
  # Re-running a finished workdir returns the stored state without recomputing ...
  again = run(model, f"folder:{tmp_path / 'imgs'}", ["mixed3a_pre_relu"], k=20, batch_size=8,
              micro_batch=2, resize=RESIZE, crop=CROP, progress=False, workdir=wd, keep_matrix=True)
  assert again.info["resumed_from"] == len(res.paths) and again.failed == res.failed
  np.testing.assert_array_equal(again.top_idx["mixed3a_pre_relu"], res.top_idx["mixed3a_pre_relu"])
  # ... and other settings on the same workdir are refused, naming the difference.
  with pytest.raises(ValueError, match="different settings.*k: checkpoint 20 vs now 21"):
    run(model, f"folder:{tmp_path / 'imgs'}", ["mixed3a_pre_relu"], k=21, batch_size=8,
        micro_batch=2, resize=RESIZE, crop=CROP, progress=False, workdir=wd)


def test_bad_names_give_clear_errors(model, image_dir, swept, tmp_path):
  with pytest.raises(ValueError, match="mixed4a_pre_rleu|mixed4a_pre_relu"):
    run(model, f"folder:{image_dir}", ["mixed4a_pre_rleu"], progress=False)
  with pytest.raises(ValueError, match="batch_size"):
    run(model, f"folder:{image_dir}", LAYERS, batch_size=6, micro_batch=4, progress=False)
  with pytest.raises(ValueError, match="does not exist"):
    open_source(f"folder:{tmp_path / 'nope'}")
  with pytest.raises(ValueError, match="no image files"):
    open_source(f"folder:{tmp_path}")
  with pytest.raises(ValueError, match="scheme"):
    open_source("s3:bucket/x")
  with pytest.raises(ValueError, match="not swept"):
    swept.ranked("mixed5b_pre_relu", 0)
  with pytest.raises(ValueError, match="out of range"):
    swept.ranked("mixed3a_pre_relu", 256)
  with pytest.raises(ValueError, match="cannot parse unit"):
    swept.unit("mixed3a_pre_relu")
  with pytest.raises(ValueError, match="out of range"):
    swept.unit("mixed3a/pool:40", model)  # mixed3a's pool branch has 32 channels
  ids, vals = swept.unit("mixed3a/pool:3", model)  # pool branch starts at 64+128+32 = 224
  np.testing.assert_array_equal(ids, swept.top_idx["mixed3a_pre_relu"][227])
  ids, vals = swept.unit("mixed3a_pre_relu:5", largest=False)
  np.testing.assert_array_equal(vals, swept.bot_val["mixed3a_pre_relu"][5])


def test_cli_reports_bad_layer(image_dir, tmp_path):
  out = subprocess.run(_cli(image_dir, tmp_path / "wd", "--config.layers=mixed4a_pre_relu,mixed9z_pre_relu"),
                       env=_env(), capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert "unknown layer 'mixed9z_pre_relu'" in out.stderr and "Traceback" not in out.stderr


def test_tfds_source_with_fake_builder(monkeypatch, model):
  """TFDS is not installed here: a fake `tensorflow_datasets` with the as_data_source API."""
  rng = np.random.default_rng(0)
  records = [dict(image=rng.integers(0, 256, (80 + i, 90, 3), dtype=np.uint8), label=i) for i in range(6)]
  records.append(dict(image=rng.integers(0, 256, (85, 85, 1), dtype=np.uint8), label=6))  # grey
  calls = {}

  class Builder:
    def __init__(self, name, data_dir=None):
      if name != "fake_ds":
        raise RuntimeError(f"Dataset {name} not found")
      calls["name"] = name

    def as_data_source(self, split):
      calls["split"] = split
      return records

  fake = types.ModuleType("tensorflow_datasets")
  fake.builder = Builder
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  src = open_source("tfds:fake_ds:validation", resize=RESIZE, crop=CROP)
  assert calls == dict(name="fake_ds", split="validation") and len(src) == 7
  assert src.paths[3] == "tfds:fake_ds:validation#3"
  from cv_jax.data import preprocess_pil
  np.testing.assert_array_equal(src.load(2), preprocess_pil(Image.fromarray(records[2]["image"]), RESIZE, CROP))
  assert src.load(6).shape == (CROP, CROP, 3)
  res = run(model, src, ["mixed3a_pre_relu"], k=3, batch_size=4, micro_batch=2, progress=False)
  assert res.top_idx["mixed3a_pre_relu"].shape == (256, 3) and not res.failed
  with pytest.raises(ValueError, match="unknown TFDS dataset"):
    open_source("tfds:other")
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # not installed
  with pytest.raises(ImportError, match=r"cv_jax\[tfds\]"):
    open_source("tfds:imagenet2012:train")


# ---------------------------------------------------------------- subprocess runs

def _env(**extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def _cli(image_dir, workdir, *extra):
  return [sys.executable, "-m", "cv_jax.sweep", f"--config={REPO / 'configs' / 'sweep.py'}:test",
          f"--config.source=folder:{image_dir}", f"--config.workdir={workdir}",
          "--config.max_images=0", f"--config.resize={RESIZE}", f"--config.crop={CROP}",
          "--config.progress=false", "--config.k=12", *extra]


def _tables(res):
  return {f"{n}/{l}": getattr(res, n)[l] for n in ("top_idx", "top_val", "bot_idx", "bot_val")
          for l in res.layers}


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(image_dir, tmp_path):
  killed, clean = tmp_path / "killed", tmp_path / "clean"
  proc = subprocess.Popen(_cli(image_dir, killed, "--config.keep_matrix=true"), env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  ckpt = killed / "checkpoints"
  deadline = time.time() + 90
  while time.time() < deadline and proc.poll() is None:
    if ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir()):
      break
    time.sleep(0.005)
  assert proc.poll() is None, f"sweep ended before it could be killed: {proc.stderr.read()[-2000:]}"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (killed / "sweep_result.json").exists()
  out = subprocess.run(_cli(image_dir, killed, "--config.keep_matrix=true"), env=_env(),
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((killed / "report.json").read_text())
  assert 0 < report["resumed_from"] < N_IMAGES
  out = subprocess.run(_cli(image_dir, clean, "--config.keep_matrix=true"), env=_env(),
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  a, b = SweepResult.load(killed), SweepResult.load(clean)
  assert a.paths == b.paths and a.failed == b.failed
  for key, v in _tables(b).items():
    np.testing.assert_array_equal(_tables(a)[key], v, err_msg=key)
  for l in b.layers:
    np.testing.assert_array_equal(a.matrix[l], b.matrix[l])


@pytest.mark.slow
def test_three_devices_equal_one(image_dir, tmp_path, model):
  """The tables split by channel over 3 devices (256 and 508 channels: uneven shares, padded)
  give the one-device tables bit for bit."""
  script = f"""
import jax
assert jax.device_count() == 3, jax.devices()
from cv_jax import models
from cv_jax.sweep import run
m = models.load("inceptionv1", random_init=0)
res = run(m, "folder:{image_dir}", {list(LAYERS)!r}, k=12, batch_size=12, micro_batch=2,
          resize={RESIZE}, crop={CROP}, progress=False)
res.save("{tmp_path / 'three'}")
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=150,
                       env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=3",
                                JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-3000:]
  three = SweepResult.load(tmp_path / "three")
  one = run(model, f"folder:{image_dir}", LAYERS, k=12, batch_size=12, micro_batch=2,
            resize=RESIZE, crop=CROP, progress=False)
  for key, v in _tables(one).items():
    np.testing.assert_array_equal(_tables(three)[key], v, err_msg=key)


# ---------------------------------------------------------------- exemplar selection

def _notebook_max(activations: np.ndarray, feature_map: int, n_bins: int, n_batches: int = 20):
  """Transcription of CU 1_save_natural_reference_and_default_images.ipynb (cells 16-19)."""
  # df_expanded_sorted = df.sort_values("selected_activation", ascending=True)
  order = sorted(range(len(activations)), key=lambda i: activations[i])  # stable, as pandas' default? ties avoided
  def get_randomized_indices_except_for_last_bin(n_bins, n_batches, seed):
    randomized_indices = np.empty([n_bins * n_batches])
    array_of_n_batches = np.arange(n_batches)
    np.random.seed(seed)
    for bin_i in range(n_bins):
      if bin_i == n_bins - 1:
        randomized_indices[(n_batches * bin_i):(n_batches + bin_i * n_batches)] = array_of_n_batches + bin_i * n_batches
      else:
        randomized_indices[(n_batches * bin_i):(n_batches + bin_i * n_batches)] = np.random.permutation(array_of_n_batches + bin_i * n_batches)
    return randomized_indices
  max_indices = get_randomized_indices_except_for_last_bin(10, n_batches, seed=feature_map + 1)
  max_indices = max_indices[-n_bins * n_batches:] - ((10 - n_bins) * n_batches)
  last = order[-n_bins * n_batches:]
  max_df = [last[int(j)] for j in max_indices]  # .iloc[max_indices]
  out = {}
  for image_idx_in_batch in range(n_bins):
    for batch in range(n_batches):
      out[(batch, image_idx_in_batch)] = max_df[batch + n_batches * image_idx_in_batch]
  return out


def _iclr(activations: np.ndarray, feature_map: int, batch_size: int = 10, n_batches: int = 20):
  """Transcription of TV generate_stimuli/save_natural_stimuli.py (sampled trials).

  The permutations are transcribed literally. The script indexes `batch + batch_size * k`, which
  for its batch_size=10 bins of n_batches=20 images overlaps bins; the ICLR 2021 code (image set b
  gets one image per bin, max_9 from the 20 most activating) implies `batch + n_batches * k`,
  which we use here and in select_exemplars.
  """
  order = sorted(range(len(activations)), key=lambda i: activations[i])
  def get_randomized_indices(batch_size, n_batches, seed):
    randomized_indices = np.empty([batch_size * n_batches])
    array_of_n_batches = np.arange(n_batches)
    np.random.seed(seed)
    for batch_i in range(batch_size):
      randomized_indices[(n_batches * batch_i):(n_batches + batch_i * n_batches)] = np.random.permutation(array_of_n_batches + batch_i * n_batches)
    return randomized_indices
  min_indices = get_randomized_indices(batch_size, n_batches, seed=feature_map)
  max_indices = get_randomized_indices(batch_size, n_batches, seed=feature_map + 1)
  mins = [order[:batch_size * n_batches][int(j)] for j in min_indices]
  maxs = [order[-batch_size * n_batches:][int(j)] for j in max_indices]
  return ({(b, k): mins[b + n_batches * k] for k in range(batch_size) for b in range(n_batches)},
          {(b, k): maxs[b + n_batches * k] for k in range(batch_size) for b in range(n_batches)})


@pytest.mark.parametrize("feature_map", [0, 7, 476])
def test_select_exemplars_matches_notebook(feature_map):
  rng = np.random.default_rng(feature_map)
  acts = rng.permutation(1000).astype(np.float64) + rng.random(1000) * 0.5  # distinct
  ranked = np.argsort(-acts)  # what a sweep's top_idx row holds (most activating first)
  np.random.seed(99)
  before = np.random.random()
  np.random.seed(99)
  ex = select_exemplars(ranked[:200], seed=feature_map + 1)
  assert np.random.random() == before  # the global numpy RNG is left alone
  ref = _notebook_max(acts, feature_map, 10)
  for b in range(20):
    for k in range(10):
      assert ex["bins"][b, k] == ref[(b, k)]
    assert ex["query"][b] == ref[(b, 9)]
    assert list(ex["references"][b]) == [ref[(b, k)] for k in range(9)]
  # Query of set b is the (20 - b)-th most activating image; reference k from ranks 181-20k..200-20k.
  assert [ex["ranks"][b, 9] for b in range(20)] == list(range(20, 0, -1))
  for k in range(9):
    assert ((ex["ranks"][:, k] > 200 - 20 * (k + 1)) & (ex["ranks"][:, k] <= 200 - 20 * k)).all()
  # Mixed condition: last 6 of the 10-bin permutation; bins 4..8 of the pure condition.
  mixed = select_exemplars(ranked, n_bins=6, total_bins=10, seed=feature_map + 1)
  ref6 = _notebook_max(acts, feature_map, 6)
  assert all(mixed["bins"][b, k] == ref6[(b, k)] for b in range(20) for k in range(6))
  np.testing.assert_array_equal(mixed["bins"][:, :5], ex["bins"][:, 4:9])
  np.testing.assert_array_equal(mixed["query"], ex["query"])


def test_select_exemplars_iclr_min_and_max():
  rng = np.random.default_rng(3)
  acts = rng.permutation(500).astype(np.float64)
  fm = 12
  ref_min, ref_max = _iclr(acts, fm)
  mins = select_exemplars(np.argsort(acts), seed=fm, kind="min", permute_query_bin=True)
  maxs = select_exemplars(np.argsort(-acts), seed=fm + 1, kind="max", permute_query_bin=True)
  for b in range(20):
    for k in range(10):
      assert mins["bins"][b, k] == ref_min[(b, k)] and maxs["bins"][b, k] == ref_max[(b, k)]
  assert (mins["ranks"][:, 0] <= 20).all() and (mins["query"] == mins["bins"][:, 0]).all()
  np.testing.assert_array_equal(mins["references"], mins["bins"][:, 1:])


def test_select_exemplars_small_and_errors(swept):
  ex = select_exemplars(swept.top_idx["mixed3a_pre_relu"][5], n_bins=3, bin_size=4, seed=6)
  assert ex["query"].shape == (4,) and ex["references"].shape == (4, 2)
  np.testing.assert_array_equal(ex["query"], swept.top_idx["mixed3a_pre_relu"][5][[3, 2, 1, 0]])
  chosen = np.concatenate([ex["query"], ex["references"].ravel()])
  assert sorted(chosen.tolist()) == sorted(swept.top_idx["mixed3a_pre_relu"][5].tolist())
  with pytest.raises(ValueError, match="at least"):
    select_exemplars(np.arange(50), seed=1)
  with pytest.raises(ValueError, match="seed"):
    select_exemplars(np.arange(200))
  with pytest.raises(ValueError, match="kind"):
    select_exemplars(np.arange(200), seed=1, kind="top")
