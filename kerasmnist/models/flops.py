"""Training FLOPs per sample, counted from a built model's layers.

Import this module only after `backend.pin` (it imports Keras).
"""

from __future__ import annotations

import keras
import numpy as np


def training_flops_per_sample(model: keras.Model) -> int:
    """Floating-point operations to train on one image: forward plus backward.

    Counts the multiply-adds (2 FLOPs each) of the Conv2D and Dense layers, which dominate. Backward,
    each such layer computes its weight gradient (as much work as its forward pass) and, except for
    the first, the gradient w.r.t. its input (as much again): nothing needs the gradient w.r.t. the
    images, so the first weighted layer costs 2x forward and every later one 3x.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel_size = int(np.prod(layer.kernel.shape))
            spatial = layer.output.shape[2:] if getattr(layer, "data_format", None) == "channels_first" \
                else layer.output.shape[1:-1]
            output_positions = int(np.prod(spatial)) if isinstance(layer, keras.layers.Conv2D) else 1
            total += (3 if total else 2) * 2 * kernel_size * output_positions
    return total
