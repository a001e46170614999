"""Training FLOPs per sample, counted from what a model's forward pass computes, or unknown.

The count is right or not at all. After building the model, its forward pass runs once more on a
symbolic batch of one sample (Keras tensors with concrete shapes), so that whatever it computes on the
samples passes through Keras, and is counted:

- a layer the counter knows (the table at the end: Dense, Conv, EinsumDense, normalisation,
  MultiHeadAttention, LSTM, and the layers with no arithmetic) is counted whole, by its figures below;
- any other layer or model (a subclassed model, a custom layer, a Lambda, a Sequential or functional
  model) is walked into: its own call() runs, so that the layers it calls are counted as here and
  every keras.ops call it makes (in call(), in a Lambda's function, between the layers of a functional
  graph, "x + y" included) is counted as an op, by the rule below;
- a layer whose call() cannot run on symbolic tensors (it calls .numpy(), NumPy or the backend's own
  functions on them) makes the count unknown, naming the layer.

An op outside every counted layer is counted exactly where its arithmetic is known, else unknown:
products (matmul, two-operand einsum) at 2 FLOPs per multiply-add forward; softmax, log-softmax and
GELU, the elementwise arithmetic, reductions and data movement in _OPS at XLA's figures per element.
Any other op (cumsum, sort, FFT, a loop, ...) makes the count unknown, naming the op and where it ran
("keras.ops.cumsum in Block.call()"): none is taken to be free.

Backward, the train step computes the gradient of every trainable weight and of every tensor that
depends on one: a layer computes its weight gradients and, where its input depends on a weight, its
input gradient; an op the gradient of each operand that depends on a weight. Nothing needs the
gradient w.r.t. the images, so a first weighted layer costs 2x forward, later ones 3x. The figures,
checked against XLA's own count of a JAX train step within 5% (tests/test_models.py):

- products with weights (Conv, Dense, EinsumDense, the LSTM's input and recurrent kernels, the
  attention projections), 2 FLOPs per multiply-add, as much again for each gradient computed;
- products of two activations (attention's scores and their weighting of the values, matmuls between
  layers): 3x forward;
- the elementwise work of the layers where it is comparable to their products: batch and layer
  normalisation, attention's softmax, the LSTM's gates, the GELU activation, per element figures as
  XLA counts them (transcendental functions such as exp and tanh count 0, as in XLA's "flops").

Inside counted layers the remaining elementwise work (ReLU and the other cheap activations, biases,
pooling, Add layers, the position embedding's add, reshapes, dropout) counts 0, as does the loss: a
few FLOPs per element after a product's 2K, about 1% of the zoo's and the seed models' steps.
Activations are known by name or as the keras.activations / keras.ops function itself (keras.ops.gelu
is the tanh approximation, counted as such). Work that does not depend on the samples (a constant, a
layer called on one) is a per-batch cost, not counted, as the optimizer's update is not.

Import this module only after `backend.pin` (it imports Keras).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
from keras.src.activations import activations as keras_activations
from keras.src.models.functional import Functional
from keras.src.ops import core as keras_ops_core
from keras.src.ops import math as keras_ops_math
from keras.src.ops import nn as keras_ops_nn
from keras.src.ops import numpy as keras_ops_numpy

from kerasmnist.child.models.zoo import PositionEmbedding


@dataclass(frozen=True)
class FlopCount:
    """Training FLOPs per sample, None where some work is unknown; what is: layers by class (and
    activation), ops by name with where they ran."""

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

    Builds the model on a batch of one zero sample, then runs its forward pass once more on a symbolic
    batch of one (module docstring), counting each layer and op as it is called.
    """
    sample = keras.ops.zeros((1, *input_shape))
    # Building an unbuilt subclassed model runs its layers once more: build first, on real values.
    model(sample, training=False)
    trace = _Trace()
    inputs = keras.KerasTensor((1, *input_shape), dtype=keras.backend.floatx())
    try:
        with trace.recording(inputs):
            model(inputs, training=False)
    except Exception:  # noqa: BLE001 - not even its output's shape can be had symbolically
        return FlopCount(None, (_describe(model),))
    unknown = tuple(dict.fromkeys(trace.unknown))
    return FlopCount(None if unknown else trace.total, unknown)


@dataclass(frozen=True)
class Operand:
    """A tensor an op is called on (batch of one), and whether the train step needs its gradient; a
    number or an option in the op's arguments is a constant of shape ()."""

    shape: tuple[int, ...]
    needs_gradient: bool


class _Trace:
    """One symbolic forward pass: the FLOPs counted so far, the work not known, and which tensors
    depend on a trainable weight (and so have their gradient computed by the train step)."""

    def __init__(self):
        self.total = 0
        self.unknown: list[str] = []
        self._needs_gradient: dict[int, bool] = {}
        self._tensors: list = []  # every tensor seen, kept alive so that no other takes its id
        self._walked: list[keras.Operation] = []  # the layers walked into, innermost last
        self._inside = 0  # > 0 while a counted layer or op computes its outputs' shapes
        self._node_counts: dict[int, tuple[keras.Operation, int, int]] = {}

    @contextlib.contextmanager
    def recording(self, inputs) -> Iterator[None]:
        # Keras has no call hooks: every layer call, and every op of a functional graph, goes through
        # Operation.__call__, and every keras.ops call on symbolic tensors through Operation.symbolic_call
        # (layers have their own): wrapping the two for one forward pass sees them all, nested ones included.
        operation_call, symbolic_call = keras.Operation.__call__, keras.Operation.symbolic_call
        trace = self

        def recording_call(operation, *args, **kwargs):
            def call():
                return operation_call(operation, *args, **kwargs)

            if trace._inside or not isinstance(operation, keras.layers.Layer) or not _symbolic(args, kwargs):
                return call()  # an op of a functional graph reaches recording_symbolic_call from here
            trace._keep_node_counts(operation)
            count = _COUNTERS.get(type(operation))
            if count is None:
                return trace._walk_into(operation, args, kwargs, call)
            return trace._layer(operation, args, kwargs, count, call)

        def recording_symbolic_call(operation, *args, **kwargs):
            if trace._inside:
                return symbolic_call(operation, *args, **kwargs)
            return trace._op(operation, args, kwargs)

        self._mark(inputs, False)
        keras.Operation.__call__, keras.Operation.symbolic_call = recording_call, recording_symbolic_call
        try:
            yield
        finally:
            keras.Operation.__call__, keras.Operation.symbolic_call = operation_call, symbolic_call
            # Symbolic layer calls add nodes to the layers' graphs: the model leaves as it came.
            for operation, inbound, outbound in self._node_counts.values():
                del operation._inbound_nodes[inbound:], operation._outbound_nodes[outbound:]

    def _keep_node_counts(self, operation: keras.Operation) -> None:
        self._node_counts.setdefault(id(operation), (operation, len(operation._inbound_nodes),
                                                     len(operation._outbound_nodes)))

    def _layer(self, layer, args: tuple, kwargs: dict, count, call):
        """A layer the counter knows: counted whole, by its figures."""
        needs_input_gradient = any(map(self._needs, _tensors_in((args, kwargs))))
        outputs = self._shape_only(call)
        cost = count(_layer_call(layer, args, kwargs, outputs))
        has_weights = bool(layer.trainable_weights)
        if cost is None:
            self.unknown.append(_describe(layer))
        else:
            self.total += cost.training(has_weights, needs_input_gradient)
        self._mark(outputs, has_weights or needs_input_gradient)
        return outputs

    def _walk_into(self, layer, args: tuple, kwargs: dict, call):
        """Any other layer or model: its own call() on the symbolic tensors, or unknown where it cannot run."""
        total, unknown = self.total, len(self.unknown)
        self._walked.append(layer)
        try:
            outputs = layer.call(*args, **kwargs)
            ran = all(x is None or isinstance(x, keras.KerasTensor) for x in keras.tree.flatten(outputs))
        except Exception:  # noqa: BLE001 - e.g. .numpy(), NumPy or the backend's own functions on its inputs
            ran = False
        finally:
            self._walked.pop()
        if ran:
            return outputs
        self.total = total
        del self.unknown[unknown:]
        self.unknown.append(_describe(layer))
        outputs = self._shape_only(call)
        self._mark(outputs, True)
        return outputs

    def _op(self, operation: keras.Operation, args: tuple, kwargs: dict):
        """A keras.ops call outside every counted layer: counted by _OPS, or unknown, named with where it ran."""
        # Its output's shape without the node a symbolic call adds to the op's graph (there is none).
        outputs = self._shape_only(lambda: operation.compute_output_spec(*args, **kwargs))
        operands = tuple(operand for value in (*args, *kwargs.values()) for operand in self._operands(value))
        count = _OPS.get(type(operation))
        flops = None if count is None else count(operation, operands, _shapes(outputs))
        if flops is None:
            self.unknown.append(f"keras.ops.{_snake_case(type(operation).__name__)} in {self._where()}")
        else:
            self.total += flops
        differentiable = type(operation) not in _NOT_DIFFERENTIABLE
        self._mark(outputs, differentiable and any(operand.needs_gradient for operand in operands))
        return outputs

    def _operands(self, value) -> list[Operand]:
        """An op's argument as operands: its tensors, or one constant in its place (a number, an option)."""
        tensors = _tensors_in(value)
        if not tensors:
            return [Operand((), False)]
        return [Operand(tuple(int(d) for d in x.shape), self._needs(x)) for x in tensors]

    def _shape_only(self, call):
        self._inside += 1
        try:
            return call()
        finally:
            self._inside -= 1

    def _where(self) -> str:
        if not self._walked:
            return "the model's input"
        layer = self._walked[-1]
        if isinstance(layer, Functional):
            return f"the graph of model {layer.name!r}"
        return f"{_describe(layer)}.call()"

    def _needs(self, x) -> bool:
        if isinstance(x, keras.Variable):
            return bool(x.trainable)
        if isinstance(x, keras.KerasTensor):
            return self._needs_gradient.get(id(x), True)
        return False  # a constant

    def _mark(self, structure, needs_gradient: bool) -> None:
        for x in keras.tree.flatten(structure):
            if isinstance(x, keras.KerasTensor):
                self._needs_gradient[id(x)] = needs_gradient
                self._tensors.append(x)


def _symbolic(args: tuple, kwargs: dict) -> bool:
    return any(isinstance(x, keras.KerasTensor) for x in keras.tree.flatten((args, kwargs)))


def _tensors_in(structure) -> list:
    return [x for x in keras.tree.flatten(structure) if hasattr(x, "shape") and hasattr(x, "dtype")]


def _snake_case(name: str) -> str:
    """As Keras names its ops: "LogSoftmax" -> "log_softmax", "ReLU" -> "re_lu"."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


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


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _products(flops: int) -> LayerCost:
    """A product with weights: forward, then as much again for each of its two gradients."""
    return LayerCost(forward=flops, backward_weights=flops, backward_input=flops)


def _plus(*costs: LayerCost) -> LayerCost:
    return LayerCost(*(sum(field) for field in zip(*((c.forward, c.backward_shared, c.backward_weights,
                                                       c.backward_input) for c in costs))))


# Per output element, forward and backward, as XLA counts them (erf is a polynomial of ~60 ops; the
# tanh approximation, keras.ops.gelu's default, a few).
_GELU = (64, 13)
_GELU_TANH = (8, 14)

# Activations a layer is given, by name or as the function itself (keras.activations or keras.ops).
# The cheap ones count 0 in a layer (module docstring): a few FLOPs per element after its product's 2K.
_CHEAP_ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid", "tanh", "relu6", "silu", "swish", "elu")
_ACTIVATIONS: dict[Callable, tuple[int, int]] = {
    **{function: (0, 0) for name in _CHEAP_ACTIVATIONS
       for function in (getattr(keras.activations, name, None), getattr(keras.ops, name, None)) if function},
    keras.activations.gelu: _GELU,
    keras.ops.gelu: _GELU_TANH,
}


def _activation_cost(activation: Callable) -> tuple[int, int] | None:
    try:
        return _ACTIVATIONS.get(activation)
    except TypeError:  # not hashable
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
_LOG_SOFTMAX = (4, 4)

# keras.ops outside layers, per output element as XLA counts them: forward, then backward for each
# operand whose gradient is needed (the first figure for the first operand, the second for the others).
_ELEMENTWISE: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("Add",), (1, 0)),
    (("Subtract",), (1, 0, 1)),
    (("Multiply",), (1, 1)),
    (("Divide", "TrueDivide"), (1, 1, 5)),
    (("Negative",), (1, 1)),
    (("Absolute",), (1, 5)),
    (("Square",), (1, 2)),
    (("Sqrt",), (0, 2)),
    (("Rsqrt",), (0, 3)),
    (("Reciprocal",), (1, 4)),
    (("Power",), (1, 3, 4)),
    (("Exp", "Log"), (0, 1)),
    (("Erf",), (0, 4)),
    (("Tanh",), (0, 4)),
    (("Sigmoid",), (3, 3)),
    (("Relu", "ReLU"), (1, 2)),
    (("Relu6",), (2, 4)),
    (("LeakyRelu",), (3, 4)),
    (("Silu",), (4, 6)),
    (("Elu",), (5, 7)),
    (("Selu",), (6, 8)),
    (("Softplus",), (6, 6)),
    (("Softsign",), (3, 12)),
    (("HardSigmoid",), (4, 5)),
    (("HardSilu",), (5, 8)),
    (("Mish",), (7, 13)),
    (("Maximum", "Minimum"), (1, 6)),
    (("Clip",), (2, 12)),
    (("Where",), (1, 0, 1)),
    (("Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr", "LogicalNot"),
     (1, 0)),
)
# Reductions, per element of their input: forward, backward.
_REDUCTIONS: tuple[tuple[tuple[str, ...], tuple[int, int]], ...] = (
    (("Sum", "Mean"), (1, 0)),
    (("Max", "Min", "Amax", "Amin"), (1, 4)),
    (("Argmax", "Argmin"), (1, 0)),
    (("Var", "Std"), (4, 5)),
    (("Logsumexp",), (3, 1)),
)


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

_COUNTERS: dict[type, Callable[[LayerCall], LayerCost | None]] = {
    **{cls: _free for cls in _FREE},
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


# keras.ops calls outside every counted layer (module docstring). Each counter is given the op, its
# tensor operands (constants need no gradient) and its outputs' shapes, and returns the op's training
# FLOPs: forward, and backward the gradient of each operand that needs one; None where it cannot count.
OpCounter = Callable[[keras.Operation, tuple[Operand, ...], tuple[tuple[int, ...], ...]], "int | None"]


def _product(forward: int, operands: tuple[Operand, ...]) -> int:
    """A product of two tensors: each operand's gradient is a product of the same size."""
    return forward * (1 + sum(operand.needs_gradient for operand in operands))


def _matmul(operation, operands: tuple[Operand, ...], outputs) -> int | None:
    if len(operands) != 2:
        return None
    return _product(2 * _size(outputs[0]) * operands[0].shape[-1], operands)


def _einsum(operation, operands: tuple[Operand, ...], outputs) -> int | None:
    """Two operands with every index in both or in the output: a product over all the indices. One
    operand whose indices the output only reorders: a transpose. Anything else is unknown."""
    inputs, arrow, output = operation.subscripts.replace(" ", "").partition("->")
    inputs = inputs.split(",")
    if not arrow or len(inputs) != len(operands):
        return None
    specs = [_einsum_indices(spec, len(operand.shape)) for spec, operand in zip(inputs, operands)]
    kept = set(_einsum_indices(output, len(outputs[0])))
    if len(specs) == 1:
        return 0 if sorted(specs[0]) == sorted(kept) == sorted(set(specs[0])) else None
    if len(specs) != 2 or (set(specs[0]) ^ set(specs[1])) - kept:
        return None  # more operands, or an index summed over in one operand alone
    sizes: dict[str, int] = {}
    for spec, operand in zip(specs, operands):
        for index, size in zip(spec, operand.shape):
            sizes[index] = max(sizes.get(index, 1), size)
    return _product(2 * _size(tuple(sizes.values())), operands)


def _einsum_indices(spec: str, rank: int) -> list[str]:
    """An operand's indices, its ellipsis as indices of their own, aligned from the right."""
    if "..." not in spec:
        return list(spec)
    before, after = spec.split("...")
    broadcast = rank - len(before) - len(after)
    return [*before, *(f"…{axis}" for axis in range(broadcast, 0, -1)), *after]


def _per_element(forward: int, backward: int, of: str = "output") -> OpCounter:
    """`forward` FLOPs per element, `backward` more where some operand needs its gradient; per element
    of the output, or of the (largest) input for a reduction."""

    def count(operation, operands: tuple[Operand, ...], outputs) -> int:
        elements = _size(outputs[0]) if of == "output" else max(_size(o.shape) for o in operands)
        return elements * (forward + backward * any(operand.needs_gradient for operand in operands))

    return count


def _elementwise(forward: int, *backward: int) -> OpCounter:
    """`forward` FLOPs per output element; backward, per output element, `backward[i]` for operand i if
    it needs its gradient, and 1 more to sum the gradient of an operand broadcast to the output's shape."""

    def count(operation, operands: tuple[Operand, ...], outputs) -> int:
        elements = _size(outputs[0])
        total = forward * elements
        for i, operand in enumerate(operands):
            if operand.needs_gradient:
                total += elements * (backward[min(i, len(backward) - 1)] + (_size(operand.shape) < elements))
        return total

    return count


def _gelu(operation, operands: tuple[Operand, ...], outputs) -> int:
    return _per_element(*(_GELU_TANH if operation.approximate else _GELU))(operation, operands, outputs)


def _free_op(operation, operands, outputs) -> int:
    return 0


def _ops(*names: str) -> tuple[type, ...]:
    return tuple(getattr(module, name) for name in names
                 for module in (keras_ops_numpy, keras_ops_nn, keras_ops_math, keras_ops_core, keras_activations)
                 if hasattr(module, name) and isinstance(getattr(module, name), type))


# Per output element as XLA counts them (exp, log, tanh and the other transcendental functions 0).
_OPS: dict[type, OpCounter] = {
    **{cls: _matmul for cls in _ops("Matmul")},
    **{cls: _einsum for cls in _ops("Einsum")},
    **{cls: _per_element(*_SOFTMAX) for cls in _ops("Softmax")},
    **{cls: _per_element(*_LOG_SOFTMAX) for cls in _ops("LogSoftmax")},
    **{cls: _gelu for cls in _ops("Gelu")},
    # Moving, copying and selecting elements: no arithmetic either way.
    **{cls: _free_op for cls in _ops(
        "Reshape", "Transpose", "ExpandDims", "Squeeze", "Moveaxis", "Swapaxes", "Ravel", "Flip", "Roll",
        "Concatenate", "Stack", "Split", "Unstack", "GetItem", "Slice", "Pad", "Cast", "ConvertToTensor",
        "StopGradient", "Copy", "ZerosLike", "OnesLike", "FullLike")},
    # Repeating elements: the gradient sums the copies.
    **{cls: _elementwise(0, 0) for cls in _ops("Tile", "Repeat", "BroadcastTo")},
    **{cls: _elementwise(*figures) for names, figures in _ELEMENTWISE for cls in _ops(*names)},
    **{cls: _per_element(*figures, of="input") for names, figures in _REDUCTIONS for cls in _ops(*names)},
}

# Ops whose output has no gradient (comparisons, indices, a gradient stopped).
_NOT_DIFFERENTIABLE = frozenset(_ops("StopGradient", "Equal", "NotEqual", "Greater", "GreaterEqual", "Less",
                                     "LessEqual", "LogicalAnd", "LogicalOr", "LogicalNot", "Argmax", "Argmin",
                                     "ZerosLike", "OnesLike", "FullLike", "Shape"))
