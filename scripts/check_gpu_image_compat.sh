#!/usr/bin/env bash
# polcore must run on the project's GPU image (Python 3.12, torch 2.11, torchvision 0.26), not only on
# the pinned .venv. This builds such an environment (CPU side: the same PyPI wheels) in /tmp and runs
# the unit tests that need no Jupyter tooling there. Usage: scripts/check_gpu_image_compat.sh [PYTHON3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3.12}
venv=${COMPAT_VENV:-/tmp/polcore-compat-py312}
test -x "$venv/bin/python" || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet "torch==2.11.0" "torchvision==0.26.0" numpy scipy scikit-learn safetensors tqdm \
    matplotlib pyyaml pytest hypothesis
PYTHONPATH=$PWD "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_models.py tests/test_training.py \
    tests/test_results.py tests/test_torchvision_sources.py tests/test_proof.py tests/test_verify.py \
    tests/test_proof_properties.py tests/test_forging.py
