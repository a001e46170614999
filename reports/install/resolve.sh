#!/usr/bin/env bash
# Regenerates reports/install/{gpu-resolution,gpu-newest-resolution,torch-cuda,colab-resolution}.json and
# configs/gpu-constraints.txt with pip's resolver (dry runs: nothing is installed; PyPI only).
# Needs Python 3.11, 3.12 and 3.13 interpreters: set PY311, PY312, PY313 where they are not
# python3.11, python3.12, python3.13 on PATH. About 2 minutes: only wheel metadata is read.
#   reports/install/resolve.sh            # everything
#   reports/install/resolve.sh --only gpu # or gpu-newest, torch, colab
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PY311:-python3.11}" reports/install/resolve.py \
  --python 3.11="${PY311:-python3.11}" \
  --python 3.12="${PY312:-python3.12}" \
  --python 3.13="${PY313:-python3.13}" "$@"
