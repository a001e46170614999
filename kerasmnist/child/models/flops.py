"""Training FLOPs per sample, counted from a model's layers as they are called, or unknown.

The count is right or not at all: every layer a forward pass calls must be one the counter knows,
else the count is unknown and names the layer classes it does not know. It counts what dominates a
training step, checked against XLA's own count of a JAX train step within 5% (tests/test_models.py):

- products with weights (Conv, Dense, EinsumDense, the LSTM's input and recurrent kernels, the
  attention projections), 2 FLOPs per multiply-add. Backward, each computes its weight gradient (as
  much again) and, when some earlier layer has weights, its input gradient (as much again): nothing
  needs the gradient w.r.t. the images, so a first weighted layer costs 2x forward, later ones 3x;
- products of two activations (attention's scores and their weighting of the values): 3x forward;
- the elementwise work of the layers where it is comparable to their products: batch and layer
  normalisation, attention's softmax, the LSTM's gates, the GELU activation, per element figures as
  XLA counts them (transcendental functions such as exp and tanh count 0, as in XLA's "flops").

The remaining elementwise work (ReLU and the other cheap activations, biases, pooling, residual
adds, the position embedding's add, reshapes, dropout, the loss) counts 0: about 1% of the zoo's
and the seed models' steps. The optimizer's update is a per-batch cost and is not counted either.

Import this module only after `backend.pin` (it imports Keras).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
from keras.src.ops import numpy as keras_numpy_ops

from kerasmnist.child.models.zoo import PositionEmbedding


@dataclass(frozen=True)
class FlopCount:
    """Training FLOPs per sample, None where some layer is unknown; the unknown layers' class names."""

    per_sample: int | None
    unknown_layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerCost:
    """One layer call's FLOPs per sample: its forward pass, then the backward work its weight and
    input gradients share (e.g. back through an activation), the work only its weight gradients need,
    and the work only its input gradient needs."""

    forward: int = 0
    backward_shared: int = 0
    backward_weights: int = 0
    backward_input: int = 0

    def training(self, has_weights: bool, needs_input_gradient: bool) -> int:
        return (self.forward + self.backward_shared * (has_weights or needs_input_gradient)
                + self.backward_weights * has_weights + self.backward_input * needs_input_gradient)


@dataclass(frozen=True)
class LayerCall:
    """A layer called once in the forward pass, with the shapes of its tensors (batch of one): its
    inputs in the order of its call's parameters, and by parameter name where one is a tensor."""

    layer: keras.Operation
    inputs: tuple[tuple[int, ...], ...]
    named_inputs: dict[str, tuple[int, ...]]
    outputs: tuple[tuple[int, ...], ...]


def count_training_flops(model: keras.Model, input_shape: tuple[int, ...]) -> FlopCount:
    """Training FLOPs per sample of `model` on samples of `input_shape` (without the batch axis).

    Runs a forward pass on a batch of one zero sample, recording each layer call: Keras models
    (Sequential, functional or subclassed) are walked into, every other layer is counted whole.
    """
    calls = traced_calls(model, input_shape)
    total, unknown, weighted_before = 0, [], False
    for call in calls:
        cost = layer_cost(call)
        if cost is None:
            unknown.append(_describe(call.layer))
            continue
        has_weights = bool(getattr(call.layer, "trainable_weights", ()))
        total += cost.training(has_weights, weighted_before)
        weighted_before = weighted_before or has_weights
    unknown_layers = tuple(dict.fromkeys(unknown))
    return FlopCount(None if unknown_layers else total, unknown_layers)


def traced_calls(model: keras.Model, input_shape: tuple[int, ...]) -> list[LayerCall]:
    """The layer calls of one forward pass, in the order they finish."""
    sample = keras.ops.zeros((1, *input_shape))
    # Building an unbuilt subclassed model runs its layers once more, on symbolic tensors: build first.
    model(sample, training=False)
    calls: list[LayerCall] = []
    with _recording(calls):
        model(sample, training=False)
    return calls


@contextlib.contextmanager
def _recording(calls: list[LayerCall]) -> Iterator[None]:
    # Keras has no call hooks: every layer and every op of a functional graph goes through
    # Operation.__call__, so wrapping it for one forward pass sees them all, nested ones included.
    original = keras.Operation.__call__
    inside_counted_layer = False

    def recording_call(operation, *args, **kwargs):
        nonlocal inside_counted_layer
        if inside_counted_layer or _is_walked_into(operation):
            return original(operation, *args, **kwargs)
        inside_counted_layer = True
        try:
            outputs = original(operation, *args, **kwargs)
        finally:
            inside_counted_layer = False
        calls.append(_layer_call(operation, args, kwargs, outputs))
        return outputs

    keras.Operation.__call__ = recording_call
    try:
        yield
    finally:
        keras.Operation.__call__ = original


def _is_walked_into(operation: keras.Operation) -> bool:
    """A Keras model with no weights of its own is the sum of its layers' calls."""
    if not isinstance(operation, keras.Model):
        return False
    own = {id(v) for v in operation.weights} - {id(v) for layer in operation.layers for v in layer.weights}
    return not own


def _layer_call(operation: keras.Operation, args: tuple, kwargs: dict, outputs) -> LayerCall:
    try:
        arguments = inspect.signature(operation.call).bind(*args, **kwargs).arguments
    except TypeError:
        arguments = {str(i): value for i, value in enumerate((*args, *kwargs.values()))}
    named = {name: _shapes(value)[0] for name, value in arguments.items() if hasattr(value, "shape")}
    return LayerCall(operation, _shapes(list(arguments.values())), named, _shapes(outputs))


def _shapes(structure) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(d) for d in x.shape) for x in keras.tree.flatten(structure) if hasattr(x, "shape"))


def _describe(layer: keras.Operation) -> str:
    activation = getattr(layer, "activation", None)
    if activation is not None and _activation_cost(activation) is None:
        return f"{type(layer).__name__}(activation={getattr(activation, '__name__', activation)!r})"
    return type(layer).__name__


def layer_cost(call: LayerCall) -> LayerCost | None:
    """The call's FLOPs, or None for a layer the counter does not know (or an activation it does not)."""
    count = _COUNTERS.get(type(call.layer))
    if count is None:
        return None
    return count(call)


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _products(flops: int) -> LayerCost:
    """A product with weights: forward, then as much again for each of its two gradients."""
    return LayerCost(forward=flops, backward_weights=flops, backward_input=flops)


def _plus(*costs: LayerCost) -> LayerCost:
    return LayerCost(*(sum(field) for field in zip(*((c.forward, c.backward_shared, c.backward_weights,
                                                       c.backward_input) for c in costs))))


# Per output element, forward and backward, as XLA counts them (erf is a polynomial of ~60 ops).
_GELU = (64, 13)


def _activation_cost(activation: Callable) -> tuple[int, int] | None:
    cheap = (keras.activations.linear, keras.activations.relu, keras.activations.softmax,
             keras.activations.sigmoid, keras.activations.tanh, keras.activations.relu6,
             keras.activations.silu, keras.activations.elu)
    if activation in cheap:
        return 0, 0
    if activation is keras.activations.gelu:
        return _GELU
    return None


def _with_activation(layer, products: LayerCost, output_elements: int) -> LayerCost | None:
    activation = _activation_cost(getattr(layer, "activation", keras.activations.linear))
    if activation is None:
        return None
    forward, backward = activation
    return _plus(products, LayerCost(forward=forward * output_elements, backward_shared=backward * output_elements))


def _kernel_layer(call: LayerCall) -> LayerCost | None:
    """Dense (on any rank): 2 FLOPs per multiply-add of the kernel at each output position."""
    layer, output = call.layer, call.outputs[0]
    return _with_activation(layer, _products(2 * _size(layer.kernel.shape) * _size(output[1:-1])), _size(output))


def _convolution(call: LayerCall) -> LayerCost | None:
    """Conv of any rank, grouped or depthwise: 2 FLOPs per multiply-add of a kernel tap that lands on
    the input, not on "same" padding's zeros (as XLA counts them: the 3x3 taps on a 4x4 image that
    land on the image are 69% of them)."""
    layer, (inputs, output) = call.layer, (call.inputs[0], call.outputs[0])
    channels_first = layer.data_format == "channels_first"
    spatial_in, spatial_out = (inputs[2:], output[2:]) if channels_first else (inputs[1:-1], output[1:-1])
    kernel = tuple(layer.kernel.shape)
    rank = len(spatial_in)
    taps = math.prod(_taps_on_input(*dims, layer.padding) for dims in zip(
        spatial_in, spatial_out, kernel[:rank], _per_axis(layer.strides, rank), _per_axis(layer.dilation_rate, rank)))
    return _with_activation(layer, _products(2 * _size(kernel[rank:]) * taps), _size(output))


def _per_axis(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def _taps_on_input(size: int, outputs: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Along one axis: the (output position, kernel tap) pairs that read an input element."""
    padded = max((outputs - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    before = {"valid": 0, "same": padded // 2, "causal": padded}[padding]
    return sum(0 <= o * stride - before + k * dilation < size for o in range(outputs) for k in range(kernel))


def _einsum_dense(call: LayerCall) -> LayerCost:
    return _products(_einsum_flops(call.layer.equation, call.inputs[0], tuple(call.layer.kernel.shape)))


def _einsum_flops(equation: str, left: tuple[int, ...], right: tuple[int, ...]) -> int:
    """2 FLOPs per multiply-add of a two-operand einsum: the product of every index's size."""
    operands = equation.split("->")[0].split(",")
    sizes = {**dict(zip(operands[0], left)), **dict(zip(operands[1], right))}
    return 2 * _size(tuple(sizes.values()))


# Per element, as XLA counts them: forward (mean, variance, normalise, scale and shift), the gamma
# and beta gradients, the input gradient.
_BATCH_NORM = (6, 3, 9)
_LAYER_NORM = (9, 6, 13)


def _normalization(figures: tuple[int, int, int]) -> Callable[[LayerCall], LayerCost]:
    forward, weights, inputs = figures

    def count(call: LayerCall) -> LayerCost:
        elements = _size(call.outputs[0])
        return LayerCost(forward=forward * elements, backward_weights=weights * elements,
                         backward_input=inputs * elements)

    return count


# Attention's softmax over the scores, per score: max, subtract, sum, divide; backward.
_SOFTMAX = (4, 6)


def _multi_head_attention(call: LayerCall) -> LayerCost | None:
    """The four projections, the scores (queries times keys) and the values weighted by them, the
    scaling of the queries and the softmax. Standard attention over one sequence axis only."""
    layer, named = call.layer, call.named_inputs
    query, value = named["query"], named["value"]
    key = named.get("key", value)
    if len(query) != 3 or layer.attention_axes not in (None, (1,)):
        return None
    heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim or layer.key_dim
    (_, targets, query_width), (_, sources, value_width), key_width = query, value, key[-1]
    output_width = call.outputs[0][-1]
    projections = _products(2 * heads * (targets * query_width * key_dim + sources * key_width * key_dim
                                         + sources * value_width * value_dim))
    # The output projection's input gradient feeds the attention's backward: needed whatever the input's.
    output_flops = 2 * targets * heads * value_dim * output_width
    output = LayerCost(forward=output_flops, backward_shared=output_flops, backward_weights=output_flops)
    scores = heads * targets * sources
    attention = 2 * scores * (key_dim + value_dim)
    softmax_forward, softmax_backward = _SOFTMAX
    inner = LayerCost(forward=attention + softmax_forward * scores + targets * heads * key_dim,
                      backward_shared=2 * attention + softmax_backward * scores + targets * heads * key_dim)
    return _plus(projections, output, inner)


# Per step and unit, as XLA counts them: forward (the two adds into the four gates, the cell and
# hidden updates), backward.
_LSTM_GATES = (11, 17)


def _lstm(call: LayerCall) -> LayerCost | None:
    """The input and recurrent products of every step, and the gates' elementwise work. The
    recurrent product's gradient w.r.t. the previous hidden state is needed whatever the input's."""
    layer = call.layer
    if not (layer.activation is keras.activations.tanh and layer.recurrent_activation is keras.activations.sigmoid):
        return None
    (_, steps, features), units = call.inputs[0], layer.units
    inputs = _products(2 * steps * features * 4 * units)
    recurrent = 2 * steps * units * 4 * units
    gates_forward, gates_backward = _LSTM_GATES
    return _plus(inputs, LayerCost(forward=recurrent + gates_forward * steps * units,
                                   backward_shared=recurrent + gates_backward * steps * units,
                                   backward_weights=recurrent))


def _free(call: LayerCall) -> LayerCost:
    return LayerCost()


def _activation_layer(call: LayerCall) -> LayerCost | None:
    return _with_activation(call.layer, LayerCost(), _size(call.outputs[0]))


_FREE = (
    keras.layers.InputLayer, keras.layers.Flatten, keras.layers.Reshape, keras.layers.Permute,
    keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.Identity, keras.layers.ReLU,
    keras.layers.Softmax, keras.layers.Add, keras.layers.Concatenate, keras.layers.Rescaling,
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
    PositionEmbedding,
)

# Keras ops between KerasTensors in a functional model ("x + y") become its graph's operations too.
_FREE_OPS = tuple(getattr(keras_numpy_ops, name) for name in (
    "Add", "Subtract", "Multiply", "Negative", "Reshape", "Transpose", "ExpandDims", "Squeeze"))

_COUNTERS: dict[type, Callable[[LayerCall], LayerCost | None]] = {
    **{cls: _free for cls in (*_FREE, *_FREE_OPS)},
    keras.layers.Dense: _kernel_layer,
    **{cls: _convolution for cls in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                                      keras.layers.DepthwiseConv2D)},
    keras.layers.Activation: _activation_layer,
    keras.layers.EinsumDense: _einsum_dense,
    keras.layers.BatchNormalization: _normalization(_BATCH_NORM),
    keras.layers.LayerNormalization: _normalization(_LAYER_NORM),
    keras.layers.MultiHeadAttention: _multi_head_attention,
    keras.layers.LSTM: _lstm,
}
