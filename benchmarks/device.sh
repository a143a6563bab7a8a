#!/usr/bin/env bash
# The whole benchmark table on a GPU machine, install included, in one go (budget: 8 minutes).
#
#   bash benchmarks/device.sh            # from the repository root (or anywhere: it cd's there)
#   FULL=1 bash benchmarks/device.sh     # full repetitions instead of --quick (~2x longer)
#
# Install. A GPU machine lent to a session usually has no network, so the CUDA build of JAX
# comes from wheels carried next to the repository in `.whl/` (git-ignored), e.g. made on a
# machine with network access by
#   pip download -d .whl "jax[cuda12]==$(python -c 'import jax; print(jax.__version__)')"
# (jax, jaxlib, jax-cuda12-plugin, jax-cuda12-pjrt and the nvidia-* runtime wheels). If `.whl/`
# is absent the script uses whatever JAX is installed and, when it sees no GPU, tries the
# ordinary package index once. Packages go into a virtual environment `.venv-device/` that sees
# the system site-packages (torch, captum, flax, ... are reused, not reinstalled).
#
# What runs where. cv_jax (JAX) runs on the GPU. The PyTorch peers and Captum run as the
# benchmarks define them, on the CPU threads of the host: the table's ratios on a GPU machine
# are therefore "cv_jax on the GPU vs PyTorch on the host CPU", and the script says so in the
# header of its output. The figures land in bench_results_device/benchmarks.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
say() { echo "[device.sh $(( $(date +%s) - start ))s] $*"; }

if [ ! -d .venv-device ]; then
  python3 -m venv --system-site-packages .venv-device
fi
# shellcheck disable=SC1091
source .venv-device/bin/activate
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

has_gpu() { python - <<'EOF' 2>/dev/null
import jax, sys
sys.exit(0 if any(d.platform == "gpu" for d in jax.devices()) else 1)
EOF
}

if ! has_gpu; then
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    say "installing jax[cuda12] from .whl/ (no index)"
    pip install -q --no-index --find-links .whl "jax[cuda12]"
  else
    say "no .whl/ folder: trying the package index for jax[cuda12]"
    pip install -q "jax[cuda12]" || say "install failed; continuing with the installed jax"
  fi
fi
pip install -q -e . --no-deps >/dev/null 2>&1 || true
python - <<'EOF'
import jax
print("jax", jax.__version__, "devices:", jax.devices())
EOF
has_gpu || say "WARNING: JAX sees no GPU; the table below is a CPU table"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

# GPU memory: let XLA grow its pool (torch shares the machine), and keep results comparable.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
quick="--quick"
if [ "${FULL:-0}" = "1" ]; then quick=""; fi
say "running python -m benchmarks $quick"
python -m benchmarks $quick --out bench_results_device --timeout 110 || true
say "done in $(( $(date +%s) - start )) s (budget 480 s); table: bench_results_device/benchmarks.md"
