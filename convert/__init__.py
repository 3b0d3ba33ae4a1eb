"""Training side of resolverguard: data, architectures, training, evaluation, quantization.

Needs the `train` extra (TensorFlow). Serving never imports this package.
"""
