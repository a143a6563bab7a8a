"""`cv-jax classify` / `cv-jax activations` end to end on the real BVLC weights."""

import subprocess
import sys

import numpy as np
import pytest


def cv_jax(*args):
  return subprocess.run([sys.executable, "-m", "cv_jax.cli", *map(str, args)],
                        capture_output=True, text=True, timeout=300)


def test_classify_real_images(bvlc_npz, sample_images):
  tench, goldfish = sample_images[0], sample_images[1]
  r = cv_jax("classify", f"--weights={bvlc_npz}", "--batch_size=1", tench, goldfish)
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines[0].endswith("tench.JPEG") and "tench" in lines[1]
  assert lines[6].endswith("goldfish.JPEG") and "goldfish" in lines[7]
  assert len(lines) == 12


def test_activations_npz(bvlc_npz, sample_images, tmp_path):
  out = tmp_path / "acts.npz"
  # Batch 2 over 3 images: the last batch is padded to the compiled shape and cut back.
  r = cv_jax("activations", f"--weights={bvlc_npz}", "--layers=inception_3a/output,softmax2",
             "--batch_size=2", f"--output={out}", *sample_images[:3])
  assert r.returncode == 0, r.stderr
  z = np.load(out)
  assert z["mixed3a"].shape == (3, 28, 28, 256)
  assert z["softmax2"].shape == (3, 1000)
  assert list(z["softmax2"].argmax(1)) == [0, 1, 2]
  assert len(z["paths"]) == 3


@pytest.mark.parametrize("args,message", [
    (["classify", "--weights=/nonexistent.npz", "IMG"], "weights file not found"),
    (["classify", "--model=resnet", "IMG"], "unknown model"),
    (["classify", "/no/such/image.jpg"], "image not found"),
    (["activations", "--layers=mixed9z", "IMG"], "unknown layer"),
    (["classify"], "no images given"),
])
def test_bad_input_one_line_error(args, message, bvlc_npz, sample_images):
  args = [a.replace("IMG", str(sample_images[0])) for a in args]
  if "--weights" not in " ".join(args):
    args.insert(1, f"--weights={bvlc_npz}")
  r = cv_jax(*args)
  assert r.returncode == 1
  err = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(err) == 1 and message in err[0], r.stderr


def test_unknown_command():
  r = cv_jax("frobnicate")
  err = [ln for ln in r.stderr.splitlines() if ln.strip()]
  assert r.returncode == 1 and len(err) == 1, r.stderr
  assert err[0].startswith("cv-jax: error: unknown command 'frobnicate'; commands: classify,")
