r"""Activation functions as explicit strategies (value, derivative, maximal slope).

An :class:`Activation` bundles what the Jacobian formulas need: the function
:math:`\phi`, its derivative :math:`\phi'` written in closed form of the
pre-activation, and :math:`\gamma = \sup_z |\phi'(z)|`, the constant of the
vanishing-gradient bound of Pascanu, Mikolov & Bengio (2013).

* :data:`SIGMOID`: :math:`\sigma(z) = 1/(1+e^{-z})`,
  :math:`\sigma'(z) = \sigma(z)(1-\sigma(z)) = \sigma(z)\,\sigma(-z)`, :math:`\gamma = 1/4`
  (the article's RNN model).
* :data:`TANH`: :math:`\tanh'(z) = 1-\tanh^2(z) = 1/\cosh^2 z = 4\,\sigma(2z)\,\sigma(-2z)`,
  :math:`\gamma = 1` (the activation the article's text blames).

**Derivatives that do not round to zero.**  The textbook forms :math:`s(1-s)` and
:math:`1-t^2` cancel catastrophically once the unit saturates: in float32
:math:`1-\tanh^2 z` is exactly 0 for :math:`|z| \gtrsim 8` and :math:`s(1-s)` for
:math:`|z| \gtrsim 17`, although the true values (:math:`\approx 4e^{-2|z|}`, :math:`e^{-|z|}`)
are far above float32's smallest normal number.  A saturated unit then gives an exactly
zero Jacobian row, and log-space diagnostics (Lyapunov exponents) give :math:`-\infty`.
Both derivatives are therefore computed as products of two sigmoids, each of which is
accurate to a few ulp over its whole range (no subtraction):

* :math:`\sigma'(z) = \sigma(z)\sigma(-z)`: relative error below :math:`10^{-6}` in
  float32 while the result is a normal number, i.e. for :math:`|z| \lesssim 87`;
* :math:`\tanh'(z) = 4\sigma(2z)\sigma(-2z)`: the same for :math:`|z| \lesssim 43.6`
  (:math:`\tanh'(43.6) \approx 1.2\cdot10^{-38}`, float32's smallest normal).

Beyond those points the result is 0 or a subnormal: absolute error below the smallest
normal number (for :math:`\tanh'`, 4 times it), never NaN, never an overflow (``tests/test_bad_inputs.py`` checks both
against float64 at 20 001 points of :math:`[-90, 90]`).  Every Jacobian in the package
uses :attr:`Activation.deriv`.

Activations are module-level constants so that they are hashable and can be
passed as static arguments under :func:`jax.jit`.  Public functions that take an
activation also accept its name, ``"sigmoid"`` or ``"tanh"`` (:func:`as_activation`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

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


def sigmoid_deriv(z: jax.Array) -> jax.Array:
    r""":math:`\sigma'(z) = \sigma(z)\,\sigma(-z)` (no cancellation; module docstring)."""
    return jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)


def tanh_deriv(z: jax.Array) -> jax.Array:
    r""":math:`\tanh'(z) = 1/\cosh^2 z = 4\,\sigma(2z)\,\sigma(-2z)` (no cancellation; module docstring)."""
    return 4 * (jax.nn.sigmoid(2 * z) * jax.nn.sigmoid(-2 * z))


SIGMOID = Activation("sigmoid", jax.nn.sigmoid, sigmoid_deriv, 0.25)
TANH = Activation("tanh", jnp.tanh, tanh_deriv, 1.0)

_BY_NAME = {"sigmoid": SIGMOID, "tanh": TANH}


def as_activation(activation: Any, name: str = "activation") -> Activation:
    """``SIGMOID``/``TANH`` (or another :class:`Activation`), or the names ``"sigmoid"``/``"tanh"``.

    Raises:
      ValueError: an unknown name (the accepted names are listed).
      TypeError: anything else.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return _BY_NAME[activation.lower()]
        except KeyError:
            raise ValueError(
                f"{name}={activation!r} is not a known activation; expected one of "
                f"{sorted(_BY_NAME)} or lstm_jax.SIGMOID / lstm_jax.TANH"
            ) from None
    raise TypeError(
        f"{name} is a {type(activation).__name__} ({activation!r}); expected lstm_jax.SIGMOID, "
        f"lstm_jax.TANH, another lstm_jax.Activation, or one of the names {sorted(_BY_NAME)}"
    )
