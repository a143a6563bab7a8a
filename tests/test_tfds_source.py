"""TFDS sources for real: a small TFDS dataset built offline from sample photos, then swept.

The photos are re-encoded as PNG (lossless), so TFDS decodes exactly the pixels PIL reads from
the same files: sweeping `tfds:...` must then rank the same images with the same values as
sweeping the folder of PNGs. Needs the `tfds` extra (installed by .ci/run).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from cv_jax import models  # noqa: E402
from cv_jax.data import TFDSSource, open_source  # noqa: E402
from cv_jax.sweep import run  # noqa: E402

N_IMAGES, RESIZE, CROP = 12, 72, 64
LAYER = "mixed3a_pre_relu"


class CvJaxSamplePhotos(tfds.core.GeneratorBasedBuilder):
  """PNG photos from a local folder (`FOLDER`), with their file names."""

  VERSION = tfds.core.Version("1.0.0")
  FOLDER: pathlib.Path | None = None

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="png"),
        "file_name": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for p in sorted(self.FOLDER.glob("*.png")):
      yield p.name, {"image": str(p), "file_name": p.name}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, sample_images):
  root = tmp_path_factory.mktemp("tfds")
  folder = root / "png"
  folder.mkdir()
  for p in sample_images[:: len(sample_images) // N_IMAGES][:N_IMAGES]:
    with Image.open(p) as im:
      im = im.convert("RGB")
      im.thumbnail((120, 120))
      im.save(folder / f"{p.stem}.png")
  CvJaxSamplePhotos.FOLDER = folder
  data_dir = root / "data"
  builder = CvJaxSamplePhotos(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()  # offline: nothing to download
  tfds.core.add_data_dir(str(data_dir))
  return folder, data_dir


def test_tfds_dataset_sweeps_like_its_folder(prepared):
  folder, data_dir = prepared
  name = CvJaxSamplePhotos.name
  src = open_source(f"tfds:{name}:train", resize=RESIZE, crop=CROP)
  assert isinstance(src, TFDSSource) and len(src) == N_IMAGES
  names = [src._data[i]["file_name"] for i in range(len(src))]
  names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
  assert sorted(names) == sorted(p.name for p in folder.glob("*.png"))
  folder_src = open_source(f"folder:{folder}", resize=RESIZE, crop=CROP)
  by_name = {pathlib.Path(p).name: i for i, p in enumerate(folder_src.paths)}
  for i in (0, N_IMAGES - 1):  # decoded pixels are the same
    np.testing.assert_array_equal(src.load(i), folder_src.load(by_name[names[i]]))

  model = models.load("inceptionv1", random_init=0)
  kw = dict(k=3, batch_size=4, micro_batch=2, progress=False)
  res_t = run(model, src, [LAYER], **kw)
  res_f = run(model, folder_src, [LAYER], **kw)
  assert not res_t.failed and not res_f.failed
  top_t = np.vectorize(lambda i: names[i])(res_t.top_idx[LAYER])
  top_f = np.vectorize(lambda i: pathlib.Path(folder_src.paths[i]).name)(res_f.top_idx[LAYER])
  np.testing.assert_array_equal(top_t, top_f)
  np.testing.assert_allclose(res_t.top_val[LAYER], res_f.top_val[LAYER], rtol=1e-5, atol=1e-6)
  assert res_t.top_idx[LAYER].shape == (256, 3)
