#!/bin/bash
# Keras 3.14.1 against 3.15.1 under torch 2.14.1, and 3.15.1 with 3.14.1's view-only _transpose_spatial_inputs
# patched back in (keras_torch_layout_bench.py --view-only), alternating, 3 rounds. A and B are the pythons of
# versions.toml's torch-keras-3.14.1 and torch-2.14.1 environments (kerasmnist env create --config
# reports/versions/versions.toml; kerasmnist env list names their folders). Output of 2026-12-05:
# logs/keras-torch-layout-2026-12-05.txt.
#   A=.../torch-keras-3.14.1-HASH/bin/python B=.../torch-2.14.1-HASH/bin/python reports/versions/keras_torch_layout_bench.sh
if [ "${1:-}" = "--help" ] || [ -z "${A:-}" ] || [ -z "${B:-}" ]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  [ "${1:-}" = "--help" ]; exit
fi
export KERAS_BACKEND=torch
cd "$(dirname "$0")"
for i in 1 2 3; do
  "$A" keras_torch_layout_bench.py; "$B" keras_torch_layout_bench.py; "$B" keras_torch_layout_bench.py --view-only
done
