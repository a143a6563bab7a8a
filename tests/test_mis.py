"""The machine interpretability score (cv_jax.mis).

References are independent of the code under test: closed forms on constructed embeddings
(identical clusters, exchangeable random embeddings), a plain NumPy loop over units and tasks
with explicit pairwise cosine similarities in float64, full sorts of an activation matrix for the
pools, and scipy for Spearman's rank correlation.
"""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from cv_jax import mis
from cv_jax.sweep import SweepResult

REPO = pathlib.Path(__file__).resolve().parents[1]


def _sweep_from_matrix(acts: dict[str, np.ndarray], k: int) -> SweepResult:
  """A SweepResult whose tables come from a full stable sort of each (N, C) matrix."""
  n = next(iter(acts.values())).shape[0]
  tables = {x: {} for x in ("top_idx", "top_val", "bot_idx", "bot_val")}
  for layer, a in acts.items():
    ids = np.arange(n)
    top = np.stack([np.lexsort((ids, -a[:, c])) for c in range(a.shape[1])])[:, :k]
    bot = np.stack([np.lexsort((ids, a[:, c])) for c in range(a.shape[1])])[:, :k]
    tables["top_idx"][layer] = top.astype(np.int32)
    tables["bot_idx"][layer] = bot.astype(np.int32)
    tables["top_val"][layer] = np.take_along_axis(a.T, top, 1).astype(np.float32)
    tables["bot_val"][layer] = np.take_along_axis(a.T, bot, 1).astype(np.float32)
  return SweepResult(paths=[f"img{i:04d}.png" for i in range(n)], layers=list(acts), failed=[],
                     info=dict(complete=True, model="toy"), **tables)


def _toy(n=200, c=(12, 7), k=40, seed=0):
  rng = np.random.default_rng(seed)
  acts = {f"layer{j}": rng.normal(size=(n, cc)).astype(np.float32) for j, cc in enumerate(c)}
  return acts, _sweep_from_matrix(acts, k)


def _numpy_deltas(emb, pools, seed, k, n_tasks):
  """Plain loop: per unit and task, mean pairwise cosine similarities, then Delta (float64)."""
  e = np.asarray(emb, np.float64)

  def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

  keys = mis.unit_keys(jax.random.PRNGKey(seed), pools.layers, pools.channels)
  draw = jax.jit(mis.draw_positions, static_argnums=(1, 2, 3))
  out = np.zeros((len(pools), n_tasks))
  for u in range(len(pools)):
    pos = np.asarray(draw(keys[u], pools.size, k, n_tasks))
    for t in range(n_tasks):
      top = pools.top[u][pos[0, t]]
      bot = pools.bottom[u][pos[1, t]]
      ep, qp = top[:k], top[k]
      em, qm = bot[:k], bot[k]

      def s(q, ex):
        return np.mean([cos(e[q], e[x]) for x in ex])
      out[u, t] = (s(qp, ep) - s(qp, em)) - (s(qm, ep) - s(qm, em))
  return out


def test_pools_are_the_top_and_bottom_quantiles_of_a_full_sort():
  acts, res = _toy()
  pools = mis.pools_from_sweep(res, quantile=0.1)
  assert pools.size == 20 and len(pools) == 19
  a = np.concatenate([acts["layer0"], acts["layer1"]], axis=1)
  for u in range(len(pools)):
    order = np.argsort(-a[:, u], kind="stable")
    assert set(pools.top[u]) == set(order[:20])
    assert set(pools.bottom[u]) == set(order[::-1][:20])
  assert pools.names()[12] == "layer1:0"
  with pytest.raises(ValueError, match="k >= 50"):
    mis.pools_from_sweep(res, quantile=0.25)
  with pytest.raises(ValueError, match="K \\+ 1 = 21"):
    mis.pools_from_sweep(res, quantile=0.1, min_size=21)


def test_task_drawing_queries_less_extreme_than_explanations():
  acts, res = _toy(n=300, c=(5,), k=60)
  pools = mis.pools_from_sweep(res, quantile=0.2)
  k, n_tasks = 9, 400
  key = mis.unit_keys(jax.random.PRNGKey(3), pools.layers, pools.channels)[2]
  pos = np.asarray(mis.draw_positions(key, pools.size, k, n_tasks))
  assert pos.shape == (2, n_tasks, k + 1)
  a = acts["layer0"][:, 2]
  for side in range(2):
    assert (np.diff(pos[side], axis=1) > 0).all()            # distinct and sorted
    assert pos[side].min() >= 0 and pos[side].max() < pools.size
    ids = (pools.top if side == 0 else pools.bottom)[2][pos[side]]
    ex, q = a[ids[:, :k]], a[ids[:, k]]
    if side == 0:
      assert (q < ex.min(axis=1)).all()
    else:
      assert (q > ex.max(axis=1)).all()
    # Every pool position is drawn equally often (uniform subsets without replacement).
    from scipy.stats import chisquare
    counts = np.bincount(pos[side].ravel(), minlength=pools.size)
    assert chisquare(counts).pvalue > 1e-3
  # Top and bottom draws differ (independent keys).
  assert not np.array_equal(pos[0], pos[1])


def test_identical_clusters_score_one():
  acts, res = _toy(n=200, c=(6,), k=30)
  pools = mis.pools_from_sweep(res, quantile=0.1)
  rng = np.random.default_rng(1)
  for u in range(len(pools)):
    emb = rng.normal(size=(200, 16))
    emb[pools.top[u]] = [1.0] + [0.0] * 15
    emb[pools.bottom[u]] = [0.0, 1.0] + [0.0] * 14
    one = mis.Pools(**{**pools.__dict__, "layers": [pools.layers[u]],
                       "channels": pools.channels[u:u + 1], "top": pools.top[u:u + 1],
                       "bottom": pools.bottom[u:u + 1], "top_val": pools.top_val[u:u + 1],
                       "bottom_val": pools.bottom_val[u:u + 1],
                       "constant": pools.constant[u:u + 1]})
    out = mis.score_pools(one, emb, seed=0, alpha=None)
    # Delta = (1 - 0) - (0 - 1) = 2 exactly for every task.
    np.testing.assert_allclose(out["deltas"], 2.0, atol=1e-6)
    assert out["accuracy"][0] == 1.0 and out["mis"][0] == 1.0
    out = mis.score_pools(one, emb, seed=0, alpha=0.7)
    np.testing.assert_allclose(out["mis"][0], 1 / (1 + np.exp(-1.4)), rtol=1e-6)


def test_random_embeddings_score_one_half_within_sem():
  acts, res = _toy(n=400, c=(64, 64), k=40)
  pools = mis.pools_from_sweep(res, quantile=0.1)
  emb = np.random.default_rng(7).normal(size=(400, 32))
  out = mis.score_pools(pools, emb, seed=11, n_tasks=20, alpha=None)
  solved = (out["deltas"] > 0).ravel()
  sem = solved.std(ddof=1) / np.sqrt(solved.size)
  assert abs(solved.mean() - 0.5) < 3 * sem, (solved.mean(), sem)
  assert abs(np.mean(out["accuracy"]) - solved.mean()) < 1e-12


def test_invariant_to_embedding_scale():
  acts, res = _toy()
  pools = mis.pools_from_sweep(res, quantile=0.1)
  rng = np.random.default_rng(2)
  emb = rng.normal(size=(200, 24))
  a = mis.score_pools(pools, emb, seed=5)["deltas"]
  scale = rng.uniform(0.01, 100.0, size=(200, 1))
  b = mis.score_pools(pools, emb * scale, seed=5)["deltas"]
  c = mis.score_pools(pools, emb * 1e4, seed=5)["deltas"]
  np.testing.assert_allclose(a, b, atol=2e-6)
  np.testing.assert_allclose(a, c, atol=2e-6)


@pytest.mark.parametrize("method", ["gram", "gather"])
def test_vmapped_program_equals_numpy_loop_and_units_are_independent(method):
  acts, res = _toy(n=150, c=(9, 5), k=25)
  pools = mis.pools_from_sweep(res, quantile=0.15)
  emb = np.random.default_rng(4).normal(size=(150, 20)) + 0.3
  k, n_tasks = 4, 6
  out = mis.score_pools(pools, emb, seed=9, k=k, n_tasks=n_tasks, alpha=0.5, chunk=4,
                        method=method)
  ref = _numpy_deltas(emb, pools, 9, k, n_tasks)
  np.testing.assert_allclose(out["deltas"], ref, atol=1e-5)
  np.testing.assert_allclose(out["mis"], (1 / (1 + np.exp(-0.5 * ref))).mean(axis=1), atol=1e-6)
  np.testing.assert_array_equal(out["accuracy"], (ref > 0).mean(axis=1))
  # A unit's tasks do not depend on which other units are scored with it, nor on the chunking.
  sub = mis.Pools(**{**pools.__dict__, "layers": pools.layers[10:],
                     "channels": pools.channels[10:], "top": pools.top[10:],
                     "bottom": pools.bottom[10:], "top_val": pools.top_val[10:],
                     "bottom_val": pools.bottom_val[10:], "constant": pools.constant[10:]})
  out2 = mis.score_pools(sub, emb, seed=9, k=k, n_tasks=n_tasks, chunk=3, method=method)
  np.testing.assert_allclose(out2["deltas"], out["deltas"][10:], atol=1e-6)


def test_constant_units_flagged_and_bad_embeddings_rejected():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(100, 3)).astype(np.float32)
  a[:, 1] = 0.25
  res = _sweep_from_matrix({"l": a}, 20)
  pools = mis.pools_from_sweep(res, quantile=0.1)
  assert pools.constant.tolist() == [False, True, False]
  out = mis.score_pools(pools, rng.normal(size=(100, 4)), alpha=None)
  assert np.isnan(out["mis"][1]) and np.isfinite(out["mis"][[0, 2]]).all()
  emb = rng.normal(size=(100, 4))
  emb[pools.top[0][3]] = 0.0
  with pytest.raises(ValueError, match="all zero"):
    mis.score_pools(pools, emb)
  emb[pools.top[0][3]] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    mis.score_pools(pools, emb)


def test_spearman_matches_scipy_and_alpha_fit_recovers_planted_alpha():
  from scipy.stats import spearmanr
  rng = np.random.default_rng(0)
  x = rng.integers(0, 6, size=40).astype(float)   # many ties
  y = x + rng.normal(size=40)
  assert mis.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
  z = rng.normal(size=40)
  assert mis.spearman(z, y) == pytest.approx(spearmanr(z, y).statistic, abs=1e-12)
  deltas = rng.normal(scale=0.4, size=(60, 20)) + rng.normal(scale=0.3, size=(60, 1))
  human = (1 / (1 + np.exp(-6.0 * deltas))).mean(axis=1)
  fit = mis.fit_alpha(deltas, human)
  assert fit["alpha"] == pytest.approx(6.0, rel=1e-4)
  assert fit["rmse"] < 1e-6
  scores = {f"l:{i}": float(v) for i, v in enumerate(human + rng.normal(scale=0.01, size=60))}
  rows = [dict(unit=f"l:{i}", accuracy=float(h), model="a" if i < 30 else "b")
          for i, h in enumerate(human)] + [dict(unit="l:999", accuracy=0.5, model="a")]
  ag = mis.agreement(scores, rows)
  assert ag["n_units"] == 60 and ag["n_unmatched"] == 1
  assert ag["spearman_units"] == pytest.approx(
      spearmanr([scores[r["unit"]] for r in rows[:60]], human).statistic, abs=1e-12)
  assert set(ag["models"]) == {"a", "b"}
  assert ag["models"]["a"]["human_mean"] == pytest.approx(human[:30].mean())


def test_embeddings_file_formats(tmp_path):
  paths = [f"/data/x/img{i}.png" for i in range(10)]
  emb = np.arange(30, dtype=np.float32).reshape(10, 3)
  perm = np.random.default_rng(0).permutation(10)
  extra = np.concatenate([emb[perm], np.ones((2, 3), np.float32)])
  names = [f"img{i}.png" for i in perm] + ["other1.png", "other2.png"]
  np.savez(tmp_path / "e.npz", embeddings=extra, paths=np.asarray(names))
  got = mis.load_embeddings_file(tmp_path / "e.npz", paths, root="/data/x")
  np.testing.assert_array_equal(got.array, emb)
  assert not got.paper_similarity and "not the paper's similarity" in got.note
  np.save(tmp_path / "e.npy", emb)
  np.testing.assert_array_equal(mis.load_embeddings_file(tmp_path / "e.npy", paths).array, emb)
  np.savez(tmp_path / "short.npz", embeddings=emb[:5], paths=np.asarray(names[:5]))
  with pytest.raises(ValueError, match="no \\(finite\\) embedding for 5"):
    mis.load_embeddings_file(tmp_path / "short.npz", paths, root="/data/x")
  ok = mis.load_embeddings_file(tmp_path / "short.npz", paths, needed=perm[:5], root="/data/x")
  assert np.isfinite(ok.array[perm[:5]]).all()


def test_dreamsim_without_package_is_a_clear_error():
  pytest.importorskip("numpy")
  try:
    import dreamsim  # noqa: F401
    pytest.skip("dreamsim is installed here")  # pragma: no cover
  except ImportError:
    pass
  with pytest.raises(ImportError, match="dreamsim"):
    mis.dreamsim_embeddings(source=None)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "cv_jax.cli", "mis", *map(str, args)],
                        capture_output=True, text=True, cwd=REPO, timeout=600)


def test_cli_end_to_end_and_one_line_errors(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(40):
    Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)).save(
        folder / f"im{i:02d}.png")
  names = [f"im{i:02d}.png" for i in range(40)]
  np.savez(tmp_path / "emb.npz", embeddings=rng.normal(size=(40, 8)), paths=np.asarray(names))
  out = tmp_path / "out"
  human = tmp_path / "human.csv"
  human.write_text("unit,accuracy\nmixed3a_pre_relu:0,0.9\nmixed3a/3x3:1,0.6\n"
                   "mixed3a_pre_relu:2,0.7\n")
  r = _cli("--random_init=0", f"--source=folder:{folder}", "--layers=mixed3a_pre_relu",
           f"--out={out}", f"--embedding={tmp_path / 'emb.npz'}", "--k=3", "--n_tasks=5",
           "--quantile=0.25", "--batch_size=8", "--progress=false", f"--human={human}")
  assert r.returncode == 0, r.stderr
  summary = json.loads(r.stdout.strip().splitlines()[-1])
  assert summary["units"] == 256 and summary["images"] == 40
  doc = json.loads((out / "mis_scores.json").read_text())
  assert doc["schema"] == "cv_jax.mis" and doc["config"]["pool_size"] == 10
  assert "not the paper's similarity" in doc["similarity"]["note"]
  assert doc["human"]["n_units"] == 3 and "fit" in doc["human"]
  with open(out / "mis_scores.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 256 and rows[0]["unit"] == "mixed3a_pre_relu:0"
  assert rows[64]["branch"] == "mixed3a/3x3:0"
  assert (out / "report" / "report.html").exists() and (out / "report" / "mis_layers.png").exists()
  assert not (out / "embeddings.npz").exists()  # only computed embeddings are saved
  deltas = np.load(out / "mis_deltas.npz")["deltas"]
  assert deltas.shape == (256, 5)
  np.testing.assert_allclose([float(x["accuracy"]) for x in rows], (deltas > 0).mean(axis=1))
  # Re-use the saved sweep: same scores.
  r2 = _cli("--random_init=0", f"--source=folder:{folder}", "--layers=mixed3a_pre_relu",
            f"--sweep={out / 'sweep'}", f"--out={tmp_path / 'out2'}",
            f"--embedding={tmp_path / 'emb.npz'}", "--k=3", "--n_tasks=5", "--quantile=0.25",
            "--progress=false")
  assert r2.returncode == 0, r2.stderr
  assert (tmp_path / "out2" / "mis_scores.csv").read_text() == (out / "mis_scores.csv").read_text()
  for args, msg in [(["--alpha=big"], "--alpha must be a number"),
                    (["--embedding=dreamsim"], "dreamsim"),
                    (["--k=12"], "K + 1 = 13")]:
    r = _cli("--random_init=0", f"--source=folder:{folder}", "--layers=mixed3a_pre_relu",
             f"--sweep={out / 'sweep'}", f"--out={tmp_path / 'bad'}", "--quantile=0.25",
             "--progress=false", *args)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cv-jax mis: error:") and msg in lines[0], \
        r.stderr
