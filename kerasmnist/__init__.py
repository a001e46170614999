"""kerasmnist: which Keras backend, on which device, trains an MNIST model fastest."""

__version__ = "0.1.0"
