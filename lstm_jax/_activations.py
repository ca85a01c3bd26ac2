r"""Activation functions as explicit strategies (value, derivative, maximal slope).

An :class:`Activation` bundles what the Jacobian formulas need: the function
:math:`\phi`, its derivative :math:`\phi'` written in closed form of the
pre-activation, and :math:`\gamma = \sup_z |\phi'(z)|`, the constant of the
vanishing-gradient bound of Pascanu, Mikolov & Bengio (2013).

* :data:`SIGMOID`: :math:`\sigma(z) = 1/(1+e^{-z})`,
  :math:`\sigma'(z) = \sigma(z)(1-\sigma(z))`, :math:`\gamma = 1/4`
  (the article's RNN model).
* :data:`TANH`: :math:`\tanh'(z) = 1-\tanh^2(z)`, :math:`\gamma = 1`
  (the activation the article's text blames).

Activations are module-level constants so that they are hashable and can be
passed as static arguments under :func:`jax.jit`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Activation(NamedTuple):
    """An elementwise activation :math:`\\phi` with its closed-form derivative.

    Attributes:
      name: short name used in reports ("sigmoid", "tanh").
      fn: :math:`z \\mapsto \\phi(z)`.
      deriv: :math:`z \\mapsto \\phi'(z)` (as a function of the pre-activation).
      max_slope: :math:`\\gamma = \\sup_z |\\phi'(z)|`.
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    deriv: Callable[[jax.Array], jax.Array]
    max_slope: float


def _sigmoid_deriv(z: jax.Array) -> jax.Array:
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


def _tanh_deriv(z: jax.Array) -> jax.Array:
    t = jnp.tanh(z)
    return 1 - t * t


SIGMOID = Activation("sigmoid", jax.nn.sigmoid, _sigmoid_deriv, 0.25)
TANH = Activation("tanh", jnp.tanh, _tanh_deriv, 1.0)
