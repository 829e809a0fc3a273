#!/usr/bin/env bash
# Download, into .whl/, the pure-Python wheels that a CUDA machine without a package index needs to run
# tools/gpu_check.sh: what gan_conditioning and its tests import beyond torch, torchvision, numpy, scipy, pandas,
# matplotlib, scikit-learn and pytest (which such images hold). Versions are those installed here; wheels with
# compiled code are fetched for the target's Python (default 3.12, that of the lent H200 machines).
#
#     tools/fetch_wheels.sh          # then carry .whl/ to the machine with the working tree (a few MB)
#     TARGET_PY=3.11 tools/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PKGS="fastai fastcore fastprogress fastdownload fasttransform plum-dispatch beartype defusedxml python-fasthtml starlette itsdangerous python-multipart pytorch-fid mlxtend"
rm -rf .whl; mkdir -p .whl
for p in $PKGS; do
  v=$($PY -c "import importlib.metadata as m; print(m.version('$p'))")
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "${TARGET_PY:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "$p==$v"
done
ls -la .whl && du -sh .whl
