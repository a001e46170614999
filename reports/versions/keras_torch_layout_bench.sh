#!/bin/bash
# Keras 3.14.1 against 3.15.1 under torch 2.14.1, and 3.15.1 with 3.14.1's view-only _transpose_spatial_inputs
# patched back in (keras_torch_layout_bench.py patch), alternating, 3 rounds: the environments are those of
# versions.toml (kerasmnist env create --config reports/versions/versions.toml; `kerasmnist env list` names their
# folders). Output of 2026-12-05: logs/keras-torch-layout-2026-12-05.txt.
A=${A:?the torch-keras-3.14.1 environment's python}
B=${B:?the torch-2.14.1 environment's python}
export KERAS_BACKEND=torch
cd "$(dirname "$0")"
for i in 1 2 3; do
  $A keras_torch_layout_bench.py; $B keras_torch_layout_bench.py; $B keras_torch_layout_bench.py patch
done
