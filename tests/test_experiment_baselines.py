"""Baselines on constructed images with known answers; kappa/accuracy vs sklearn and by hand."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest

from cv_jax.experiment import baselines as B
from cv_jax.experiment import stats as S


# ------------------------------------------------------------------------------ Center

def test_center_2d_known_answers():
  # Max occluder in the corner, min occluder in the centre: Center predicts the central one
  # hurts more, i.e. answers the corner one = max -> correct.
  v = B.baseline_values(np.zeros((224, 224, 3)), pos_min=(67, 67), pos_max=(0, 0), size=90)
  assert v["center"]["min"] == pytest.approx(math.hypot(111.5 - 112, 111.5 - 112))
  assert v["center"]["max"] == pytest.approx(math.hypot(111.5 - 45, 111.5 - 45))
  assert B.score(v)["center"] is True
  v = B.baseline_values(np.zeros((224, 224, 3)), pos_min=(0, 0), pos_max=(67, 67), size=90)
  assert B.score(v)["center"] is False
  # The paper's patch centre is start + s/2 (not start + (s-1)/2) against 111.5, so columns 0
  # and 133 are mirror images: a tie, which the paper scores as incorrect.
  v = B.baseline_values(np.zeros((224, 224, 3)), pos_min=(0, 0), pos_max=(0, 133), size=90)
  assert v["center"]["min"] == v["center"]["max"]
  assert B.score(v)["center"] is False
  assert B.choice(v)["center"] is None


def test_center_published_is_row_only_closed_form():
  for r in (0, 10, 22, 67, 134):
    for c in (0, 50, 134):
      want = math.sqrt((r + 23.5) ** 2 + (66.5 - r) ** 2)  # the paper's Center, s = 90
      assert B.center_distance_published(r, c, 90) == pytest.approx(want)
  # Columns do not matter: far apart in 2-D, a tie for the published variant.
  v = B.baseline_values(np.zeros((224, 224, 3)), pos_min=(40, 0), pos_max=(40, 134), size=90)
  assert v["center_published"]["min"] == v["center_published"]["max"]
  assert B.score(v)["center_published"] is False
  # Minimal near row 22 (not at the centre row 67): the two variants disagree here.
  rows = np.arange(0, 135)
  d = [B.center_distance_published(int(r), 0, 90) for r in rows]
  assert rows[int(np.argmin(d))] in (21, 22)
  v = B.baseline_values(np.zeros((224, 224, 3)), pos_min=(67, 67), pos_max=(22, 67), size=90)
  s = B.score(v)
  assert s["center"] is True and s["center_published"] is False


def test_center_rejects_patch_outside():
  with pytest.raises(ValueError, match="does not fit"):
    B.center_distance(200, 0, 90)


# ------------------------------------------------------------------------------ Variance

def test_variance_known_answer_and_value():
  img = np.full((224, 224, 3), 0.5)
  yy, xx = np.mgrid[:90, :90]
  img[:90, :90, :] = ((yy + xx) % 2)[..., None]  # 0/1 checkerboard, std exactly 0.5
  assert B.patch_std(img, 0, 0, 90) == pytest.approx(0.5)
  assert B.patch_std(img, 134, 134, 90) == pytest.approx(0.0)
  # min occluder over the busy region, max over the flat one -> Variance is correct.
  v = B.baseline_values(img, pos_min=(0, 0), pos_max=(134, 134), size=90)
  assert B.score(v)["variance"] is True
  v = B.baseline_values(img, pos_min=(134, 134), pos_max=(0, 0), size=90)
  assert B.score(v)["variance"] is False
  # np.std over all pixels *and channels* of the patch (not per channel).
  rng = np.random.default_rng(0)
  img = rng.random((224, 224, 3))
  assert B.patch_std(img, 10, 20, 90) == pytest.approx(np.std(img[10:100, 20:110].ravel()))


# ------------------------------------------------------------------------------ Saliency

def test_spectral_residual_is_a_density():
  rng = np.random.default_rng(1)
  img = rng.random((224, 224, 3))
  sal = B.SpectralResidualSaliency()(img)
  assert sal.shape == (224, 224)
  assert np.all(sal >= 0) and sal.sum() == pytest.approx(1.0)
  assert isinstance(B.SpectralResidualSaliency(), B.SaliencyModel)
  # Constant image: nothing salient -> uniform density.
  flat = B.SpectralResidualSaliency()(np.full((224, 224, 3), 0.3))
  np.testing.assert_allclose(flat, 1 / 224 ** 2)


def test_spectral_residual_finds_an_intensity_blob():
  img = np.full((224, 224, 3), 0.4)
  img[150:170, 30:50] = 1.0  # a small bright square
  sal = B.SpectralResidualSaliency()(img)
  r, c = np.unravel_index(np.argmax(sal), sal.shape)
  assert 140 <= r <= 180 and 20 <= c <= 60
  # Saliency baseline: min occluder over the blob, max elsewhere -> correct.
  v = B.baseline_values(img, pos_min=(110, 0), pos_max=(0, 134), size=90, saliency_map=sal)
  assert B.score(v)["saliency"] is True
  v = B.baseline_values(img, pos_min=(0, 134), pos_max=(110, 0), size=90, saliency_map=sal)
  assert B.score(v)["saliency"] is False


def test_spectral_residual_colour_popout():
  # A regular grid of green squares with one red square of equal intensity: only the colour
  # opponency channel can see the odd one out.
  img = np.full((224, 224, 3), 0.5)
  odd = (5, 1)
  for i in range(7):
    for j in range(7):
      y, x = 8 + 32 * i, 8 + 32 * j
      img[y:y + 16, x:x + 16] = (0.2, 0.8, 0.5) if (i, j) != odd else (0.8, 0.2, 0.5)
  sal = B.SpectralResidualSaliency()(img)
  r, c = np.unravel_index(np.argmax(sal), sal.shape)
  y, x = 8 + 32 * odd[0], 8 + 32 * odd[1]
  assert y - 12 <= r <= y + 28 and x - 12 <= c <= x + 28


def test_get_saliency_model_errors():
  with pytest.raises(ValueError, match="unknown saliency model"):
    B.get_saliency_model("itti")
  model = lambda im: np.ones(im.shape[:2]) / im[..., 0].size  # noqa: E731
  assert B.get_saliency_model(model) is model


def test_deepgaze_adapter_missing_package(monkeypatch):
  monkeypatch.setitem(sys.modules, "deepgaze_pytorch", None)
  with pytest.raises(ImportError, match="deepgaze_pytorch"):
    B.DeepGazeIIE()


def test_deepgaze_adapter_plumbing(monkeypatch):
  torch = pytest.importorskip("torch")
  seen = {}

  class FakeDeepGaze(torch.nn.Module):
    def __init__(self, pretrained=True):
      super().__init__()
      seen["pretrained"] = pretrained

    def forward(self, x, centerbias):
      seen["x"], seen["bias"] = x.clone(), centerbias.clone()
      # A log density that prefers the left half, 3:1.
      h, w = x.shape[-2:]
      d = torch.ones(1, 1, h, w)
      d[..., : w // 2] = 3.0
      return torch.log(d / d.sum())

  fake = types.ModuleType("deepgaze_pytorch")
  fake.DeepGazeIIE = FakeDeepGaze
  monkeypatch.setitem(sys.modules, "deepgaze_pytorch", fake)
  img = np.random.default_rng(2).random((32, 40, 3))
  sal = B.DeepGazeIIE()(img)
  assert seen["pretrained"] is True
  assert tuple(seen["x"].shape) == (1, 3, 32, 40)
  np.testing.assert_allclose(seen["x"][0].numpy(), img.transpose(2, 0, 1) * 255, rtol=1e-6)
  np.testing.assert_allclose(seen["bias"].numpy(), np.log(1 / (32 * 40)), rtol=1e-6)
  assert sal.shape == (32, 40) and sal.sum() == pytest.approx(1.0)
  assert sal[0, 0] / sal[0, -1] == pytest.approx(3.0)


# ------------------------------------------------------------------------------ Stats

def test_kappa_hand_cases():
  # p_o = 3/4, p1 = 3/4, p2 = 1/2, p_e = 3/8 + 1/8 = 1/2 -> kappa = 1/2.
  assert S.cohen_kappa([1, 1, 1, 0], [1, 1, 0, 0]) == pytest.approx(0.5)
  assert S.cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)
  assert S.cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
  assert math.isnan(S.cohen_kappa([1, 1, 1], [1, 1, 1]))  # p_e = 1: 0/0
  assert S.cohen_kappa([1, 1, 1], [0, 0, 0]) == 0.0  # p_e = 0
  with pytest.raises(ValueError, match="different numbers"):
    S.cohen_kappa([1, 0], [1, 0, 1])


def test_kappa_matches_sklearn():
  skm = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(3)
  for _ in range(200):
    a = rng.random(18) < rng.random()
    b = np.where(rng.random(18) < 0.6, a, rng.random(18) < 0.5)
    if a.all() and b.all() or (~a).all() and (~b).all():
      continue
    assert S.cohen_kappa(a, b) == pytest.approx(skm.cohen_kappa_score(a, b), abs=1e-12)


def test_truncation_like_the_paper():
  assert S.truncate100(0.079) == 7
  assert S.truncate100(-0.0799) == -7
  assert S.truncate100(0.31999999) == 32  # round to 2 decimals first, then truncate
  assert S.truncate100(1.0) == 100
  assert S.truncate100(float("nan")) is None


def test_kappa_table_per_set_mean_2sem():
  skm = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(4)
  c = {n: rng.random((10, 18)) < 0.6 for n in ("center", "variance", "saliency")}
  t = S.kappa_table(c)
  ks = [skm.cohen_kappa_score(x, y) for x, y in zip(c["variance"], c["saliency"])]
  np.testing.assert_allclose(t["per_set"]["variance|saliency"], ks)
  m, e = np.mean(ks), 2 * np.std(ks) / math.sqrt(10)
  assert t["mean"][1][2] == pytest.approx(m) and t["mean"][2][1] == pytest.approx(m)
  assert t["sem2"][1][2] == pytest.approx(e)
  assert t["mean100"][1][2] == int(np.round(m * 100, 2))
  assert t["mean100"][0][0] == 100 and t["sem2_100"][0][0] == 0


def test_accuracy_2sem():
  m, e = S.accuracy([1, 0, 1, 1])
  assert m == 0.75 and e == pytest.approx(2 * math.sqrt(0.75 * 0.25) / 2)
