r"""Parallel-in-time evaluation of every cell: Newton (DEER) and quasi-Newton iterations, and one associative scan for the diagonal linear cells.

A recurrence :math:`s_t = F(s_{t-1}, x_t)`, ``t = 1..T``, is the root of the
residual :math:`r_t(s) = s_t - F(s_{t-1}, x_t)`.  Linearising around the current
guess :math:`s^{(k)}` gives the Newton step

.. math::

    s^{(k+1)}_t = F(s^{(k)}_{t-1}, x_t) + \tilde J_t\,(s^{(k+1)}_{t-1} - s^{(k)}_{t-1}),
    \qquad s^{(k+1)}_0 = s_0,

a *linear* recurrence :math:`s_t = A_t s_{t-1} + b_t` solved for all ``t`` at
once by :func:`jax.lax.associative_scan` over affine maps, composed as
:math:`(A_2, b_2)\circ(A_1, b_1) = (A_2A_1,\ A_2b_1 + b_2)` — ``O(log T)`` depth.

* ``DENSE``: :math:`\tilde J_t = J_t`, the exact analytic step Jacobian
  (:func:`~lstm_jax.rnn_step_jacobian`; for the LSTM the joint ``(h, c)``
  Jacobian of :func:`~lstm_jax.lstm_step_jacobian`, ``d = 2n``).  Newton's method
  (DEER, Lim et al. 2023): quadratic convergence near the solution, ``O(d^3)``
  per combine.
* ``DIAGONAL``: :math:`\tilde J_t = \operatorname{diag}(J_t)` (quasi-DEER,
  Gonzalez et al. 2024), computed analytically without forming :math:`J_t`;
  ``O(d)`` per combine, linear convergence.  For the LSTM the ``c``-block
  diagonal is exactly :math:`f_t` (:math:`B_t`).

**Why it terminates.**  For *any* choice of :math:`\tilde J_t`, if
:math:`s^{(k)}_1..s^{(k)}_{j}` are exact then so are :math:`s^{(k+1)}_1..s^{(k+1)}_{j+1}`
(the correction term vanishes where the previous state is exact).  So every
iteration fixes at least one more step, and ``T`` iterations always reproduce the
sequential scan (in exact arithmetic).

**Damping** (a simple safeguard in the spirit of ELK's trust region, Gonzalez et
al. 2024).  Undamped Newton overshoots to huge or non-finite values when the
products of step Jacobians grow (large or chaotic weights).  Each iteration tries
the step with :math:`\alpha\tilde J_t`; it is accepted if all values are finite
and the residual :math:`\max_t\|s_t - F(s_{t-1}, x_t)\|_\infty` does not exceed
:math:`\max(\text{current residual},\ 1 + \max|s|)`.  Otherwise the iteration
takes the Picard step :math:`s_t \leftarrow F(s_{t-1}, x_t)` (also exact on one
more step) and halves :math:`\alpha`; accepted steps double it back up to 1.
(A strict "residual must decrease" rule was measured to slow the quasi-Newton
mode by 1.5-2x without preventing any failure.)  By the argument above any such
sequence terminates within ``T`` iterations in exact arithmetic.  In floating
point, for chaotic dynamics the associative scan multiplies long products of
expanding Jacobians and the iteration can stall at a residual of rounding times
their growth; the cap and the fall-back below handle that case.

**Convergence test**: residual :math:`\le` ``tol`` :math:`\cdot(1 + \max|s|)` with
``tol = 16 eps(dtype)`` by default; ``tol`` must be a finite number in
``(0, 0.01]`` (a relative tolerance of 1 or ``inf`` would accept the initial guess).
The test is made on the iterate the loop stops at, so a run that stops on the
cap ``max_iter`` (an int ``>= 1``; floats are not truncated) is ``converged``
only if that last iterate meets the tolerance.  If ``max_iter`` iterations do not get
there, the result is recomputed with the sequential :func:`jax.lax.scan`, a
``RuntimeWarning`` is issued and ``info.fell_back`` is set: never a silent
wrong answer.  The damping factor :math:`\alpha` is internal (no argument).

**Gradients** (``custom_vjp``): the backward pass does not differentiate the
iterations.  At the converged trajectory it solves the adjoint recurrence
:math:`\lambda_t = \bar g_t + J_{t+1}^\top\lambda_{t+1}` with the same
associative scan, using the **exact dense** Jacobians in every mode (so
gradients are exact also after a diagonal forward pass, at ``O(T d^3)`` cost),
then pulls :math:`\lambda` back through one vectorised VJP of the step.

References:
  Y. H. Lim, Q. Zhu, J. Selfridge, M. F. Kasim, "Parallelizing non-linear
  sequential models over the sequence length" (DEER), ICLR 2024.
  X. Gonzalez, A. Warrington, J. T. H. Smith, S. W. Linderman, "Towards scalable
  and stable parallelization of nonlinear RNNs" (quasi-DEER, ELK), NeurIPS 2024.
  F. Danieli et al., "ParaRNN", 2025.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._activations import SIGMOID, Activation, as_activation
from ._cell import Cell, check_call, dense_jacobian, flat, jacobian_diagonal, linear_coefficients, run, step, unflat
from ._registry import CELLS, cell_of
from ._gru import CELL as GRU_CELL
from ._gru import GRUParams
from ._lstm import CELL as LSTM_CELL
from ._lstm import LSTMParams, LSTMState
from ._rnn import RNNParams, rnn_cell
from ._scan import previous_states
from ._validation import check_array, check_int, check_real

# ----------------------------------------------------------------------------- strategies


class NewtonMode(NamedTuple):
    """How the step Jacobian enters the Newton iteration (a strategy object).

    Attributes:
      name: "dense" or "diagonal".
      pick: selects the linearisation from a recurrence (its dense or diagonal Jacobian).
      matvec: ``(A, v) -> A v`` for a batch of ``A`` (``(..., d, d)`` or ``(..., d)``).
      compose: ``(A_later, A_earlier) -> A_later A_earlier``.
    """

    name: str
    pick: Callable
    matvec: Callable
    compose: Callable


DENSE = NewtonMode(
    "dense",
    lambda rec: rec.jac,
    lambda A, v: jnp.einsum("...ij,...j->...i", A, v),
    lambda A2, A1: A2 @ A1,
)
DIAGONAL = NewtonMode(
    "diagonal",
    lambda rec: rec.jac_diag,
    lambda A, v: A * v,
    lambda A2, A1: A2 * A1,
)


class _Recurrence(NamedTuple):
    """A recurrence on a flat state: step, dense Jacobian and Jacobian diagonal, each ``(params, s_prev, x)``,
    and the library's sequential runner ``(params, s0, xs) -> states`` used for the fall-back (so that a
    fall-back returns exactly what ``run_rnn`` / ``run_lstm`` return, also for chaotic dynamics)."""

    step: Callable
    jac: Callable
    jac_diag: Callable
    sequential: Callable


@functools.lru_cache(maxsize=None)
def _recurrence(cell: Cell) -> _Recurrence:
    """The flat-state recurrence of a cell: its step, dense Jacobian and Jacobian diagonal from the cell protocol."""

    def factors(p, s, x):
        w = cell.weights(p)
        blocks, F = step(cell, w, tuple(jnp.split(s, cell.width)), x)
        return w, jnp.concatenate(blocks), F

    def jac(p, s, x):
        w, _, F = factors(p, s, x)
        return dense_jacobian(cell, w, F, s.shape[-1] // cell.width)

    def diag(p, s, x):
        w, _, F = factors(p, s, x)
        return jacobian_diagonal(cell, w, F, s.shape[-1] // cell.width)

    def sequential(p, s0, xs):
        return flat(cell, run(cell, cell.weights(p), unflat(cell, s0), xs)[1])

    return _Recurrence(lambda p, s, x: factors(p, s, x)[1], jac, diag, sequential)


# ----------------------------------------------------------------------------- linear recurrences


def _solve(mode: NewtonMode, A, b, s0):
    b = b.at[0].add(mode.matvec(A[0], s0))  # fold s_0 into the first affine map

    def combine(earlier, later):
        A1, b1 = earlier
        A2, b2 = later
        return mode.compose(A2, A1), mode.matvec(A2, b1) + b2

    return jax.lax.associative_scan(combine, (A, b))[1]


def solve_linear_recurrence(A: jax.Array, b: jax.Array, s0: jax.Array, mode: NewtonMode = DENSE) -> jax.Array:
    r"""Solve :math:`s_t = A_t s_{t-1} + b_t`, ``t = 1..T``, by one associative scan.

    Args:
      A: ``(T, d, d)`` for :data:`DENSE`, ``(T, d)`` (diagonals) for :data:`DIAGONAL`.
      b: ``(T, d)``.
      s0: ``(d,)``.
      mode: :data:`DENSE` or :data:`DIAGONAL`.

    Returns:
      ``(T, d)``: :math:`s_1..s_T`.
    """
    mode = as_mode(mode)
    b = check_array(b, "b", ("T", "d"))
    T, d = b.shape
    A = check_array(A, "A", (T, d, d) if mode is DENSE else (T, d))
    s0 = check_array(s0, "s0", (d,))
    dtype = jnp.result_type(A, b, s0)
    return _solve(mode, A.astype(dtype), b.astype(dtype), s0.astype(dtype))


# ----------------------------------------------------------------------------- Newton iteration


class NewtonInfo(NamedTuple):
    """Diagnostics of a parallel evaluation.

    Attributes:
      iterations: Newton/Picard iterations taken.
      converged: whether the residual met the tolerance within ``max_iter``.
      residual: final :math:`\\max_t \\|s_t - F(s_{t-1}, x_t)\\|_\\infty` of the iteration.
      fell_back: ``True`` when the returned trajectory comes from the sequential scan.
      damped_steps: iterations whose Newton step was rejected (Picard step taken instead).
    """

    iterations: jax.Array
    converged: jax.Array
    residual: jax.Array
    fell_back: jax.Array
    damped_steps: jax.Array


def _warn_fallback(fell_back, iterations, residual):
    if np.any(fell_back):
        warnings.warn(
            f"parallel evaluation did not converge in {int(np.max(iterations))} iterations "
            f"(residual {float(np.max(residual)):.3g}); fell back to the sequential scan",
            RuntimeWarning,
            stacklevel=2,
        )


def _newton(rec: _Recurrence, mode: NewtonMode, max_iter: int, tol: float, params, s0, xs):
    F = jax.vmap(rec.step, in_axes=(None, 0, 0))
    lin = jax.vmap(mode.pick(rec), in_axes=(None, 0, 0))
    T = xs.shape[0]
    prev = lambda s: previous_states(s0, s)  # noqa: E731
    resid = lambda s, fs: jnp.max(jnp.abs(s - fs))  # noqa: E731
    thresh = lambda s: tol * (1 + jnp.max(jnp.abs(s)))  # noqa: E731
    one = jnp.ones((), s0.dtype)

    s_init = jnp.broadcast_to(s0, (T, s0.shape[0]))
    fs_init = F(params, prev(s_init), xs)
    carry0 = (s_init, fs_init, resid(s_init, fs_init), one, jnp.int32(0), jnp.int32(0))

    def cond(carry):
        s, _, res, _, it, _ = carry
        return (it < max_iter) & ~(res <= thresh(s))

    def body(carry):
        s, fs, res, alpha, it, damped = carry
        sp = prev(s)
        J = alpha * lin(params, sp, xs)
        cand = _solve(mode, J, fs - mode.matvec(J, sp), s0)
        f_cand = F(params, prev(cand), xs)
        r_cand = resid(cand, f_cand)
        ok = jnp.isfinite(r_cand) & (r_cand <= jnp.maximum(res, 1 + jnp.max(jnp.abs(s))))

        def accept(_):
            return cand, f_cand, r_cand, jnp.minimum(one, 2 * alpha), damped

        def picard(_):
            f_next = F(params, prev(fs), xs)
            return fs, f_next, resid(fs, f_next), alpha / 2, damped + 1

        s, fs, res, alpha, damped = jax.lax.cond(ok, accept, picard, None)
        return s, fs, res, alpha, it + 1, damped

    s, _, res, _, it, damped = jax.lax.while_loop(cond, body, carry0)
    converged = res <= thresh(s)

    out = jax.lax.cond(converged, lambda _: s, lambda _: rec.sequential(params, s0, xs), None)
    fell_back = ~converged
    jax.debug.callback(_warn_fallback, fell_back, it, res)
    return out, NewtonInfo(it, converged, res, fell_back, damped)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _parallel(rec, mode, max_iter, tol, params, s0, xs):
    return _newton(rec, mode, max_iter, tol, params, s0, xs)


def _parallel_fwd(rec, mode, max_iter, tol, params, s0, xs):
    out, info = _newton(rec, mode, max_iter, tol, params, s0, xs)
    return (out, info), (params, s0, xs, out)


def _parallel_bwd(rec, mode, max_iter, tol, res, cot):
    params, s0, xs, s = res
    g = cot[0]
    sp = previous_states(s0, s)
    J = jax.vmap(rec.jac, in_axes=(None, 0, 0))(params, sp, xs)  # exact, every mode
    JT_next = jnp.concatenate([jnp.swapaxes(J[1:], -1, -2), jnp.zeros_like(J[:1])], axis=0)
    lam = _solve(DENSE, JT_next[::-1], g[::-1], jnp.zeros_like(s0))[::-1]  # lambda_t = g_t + J_(t+1)^T lambda_(t+1)
    _, pullback = jax.vjp(jax.vmap(rec.step, in_axes=(None, 0, 0)), params, sp, xs)
    d_params, d_sp, d_xs = pullback(lam)
    return d_params, d_sp[0], d_xs


_parallel.defvjp(_parallel_fwd, _parallel_bwd)


_MODES = {"dense": DENSE, "diagonal": DIAGONAL}
TOL_MAX = 1e-2


def as_mode(mode) -> NewtonMode:
    """``DENSE``/``DIAGONAL`` (or another :class:`NewtonMode`), or the names ``"dense"``/``"diagonal"``."""
    if isinstance(mode, NewtonMode):
        return mode
    if isinstance(mode, str):
        try:
            return _MODES[mode.lower()]
        except KeyError:
            raise ValueError(f"mode={mode!r} is not a known mode; expected one of {sorted(_MODES)} "
                             "or lstm_jax.DENSE / lstm_jax.DIAGONAL") from None
    raise TypeError(f"mode is a {type(mode).__name__} ({mode!r}); expected lstm_jax.DENSE, lstm_jax.DIAGONAL "
                    f"or one of the names {sorted(_MODES)}")


def _defaults(dtype, T, max_iter, tol):
    """Validate ``max_iter`` (int >= 1, default min(T, 100)) and ``tol`` (finite, in (0, TOL_MAX])."""
    max_iter = min(T, 100) if max_iter is None else check_int(max_iter, "max_iter", lo=1, hi=2**31 - 1)
    if tol is None:
        tol = 16 * float(jnp.finfo(dtype).eps)
    else:
        tol = check_real(tol, "tol", lo=0, lo_open=True, hi=TOL_MAX,
                         accepts=f"a finite relative tolerance in (0, {TOL_MAX:g}] (default 16 eps(dtype))")
    return max_iter, tol


def _parallel_run(cell: Cell, params, state0, state_name, xs, mode, max_iter, tol):
    mode = as_mode(mode)
    p, s0, xs, _, _ = check_call(cell, params, state0, state_name, xs, "xs")
    max_iter, tol = _defaults(xs.dtype, xs.shape[0], max_iter, tol)
    states, info = _parallel(_recurrence(cell), mode, max_iter, tol, p, flat(cell, s0), xs)
    return unflat(cell, states), info


def parallel_run_rnn(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    *,
    mode: NewtonMode = DENSE,
    max_iter: Optional[int] = None,
    tol: Optional[float] = None,
) -> tuple[jax.Array, NewtonInfo]:
    r"""All RNN states :math:`c_1..c_T` by parallel Newton iterations (module docstring).

    Same result as ``run_rnn(params, c0, xs, activation)[1]`` up to ``tol``.

    Args:
      params, c0, xs, activation: as in :func:`~lstm_jax.run_rnn` (``xs`` time-major ``(T, m)``).
      mode: :data:`DENSE` (Newton, exact Jacobians) or :data:`DIAGONAL` (quasi-Newton), or
        the names ``"dense"``/``"diagonal"``.
      max_iter: iteration cap, an int ``>= 1`` (default ``min(T, 100)``); past it: sequential
        fall-back and a warning.
      tol: relative residual tolerance, finite, in ``(0, 0.01]`` (default ``16 * eps(dtype)``).

    Returns:
      ``(cs, info)``: ``cs`` of shape ``(T, n)`` and a :class:`NewtonInfo`.
      Differentiable (custom VJP; see module docstring).
    """
    return _parallel_run(rnn_cell(as_activation(activation)), params, c0, "c0", xs, mode, max_iter, tol)


def parallel_run_lstm(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    *,
    mode: NewtonMode = DENSE,
    max_iter: Optional[int] = None,
    tol: Optional[float] = None,
) -> tuple[LSTMState, NewtonInfo]:
    r"""All LSTM states :math:`(h_t, c_t)`, ``t = 1..T``, by parallel Newton iterations on the joint state.

    Same result as ``run_lstm(params, state0, xs)[1]`` up to ``tol``.  Arguments
    as in :func:`parallel_run_rnn`; the state is ``[h; c]`` of size ``2n``, so
    :data:`DENSE` costs ``O((2n)^3)`` per combine.

    Returns:
      ``(trajectory, info)``: an :class:`~lstm_jax.LSTMState` of ``(T, n)`` arrays and a :class:`NewtonInfo`.
    """
    return _parallel_run(LSTM_CELL, params, state0, "state0", xs, mode, max_iter, tol)


def parallel_run_gru(
    params: GRUParams,
    h0: jax.Array,
    xs: jax.Array,
    *,
    mode: NewtonMode = DENSE,
    max_iter: Optional[int] = None,
    tol: Optional[float] = None,
) -> tuple[jax.Array, NewtonInfo]:
    r"""All GRU states :math:`h_1..h_T` by parallel Newton iterations (DEER / quasi-DEER, module docstring).

    Same result as ``run_gru(params, h0, xs)[1]`` up to ``tol``; arguments as in :func:`parallel_run_rnn`.
    The :data:`DIAGONAL` linearisation is :math:`z_t + k_z\operatorname{diag}(U_z) + k_n(k_r\operatorname{diag}(U_r)
    + r_t\operatorname{diag}(U_n))` (:class:`~lstm_jax._gru.GRUFactors`), computed without forming :math:`J_t`.

    Returns:
      ``(hs, info)``: ``hs`` of shape ``(T, n)`` and a :class:`NewtonInfo`.
    """
    return _parallel_run(GRU_CELL, params, h0, "h0", xs, mode, max_iter, tol)


def parallel_run_linear(kind: str, params, state0, xs: jax.Array) -> jax.Array:
    r"""All states of a diagonal linear cell (minGRU, minLSTM, RG-LRU) by one associative scan over time.

    The cell's recurrence is :math:`s_t = a_t\odot s_{t-1} + b_t` with :math:`a_t, b_t` from the inputs alone
    (:func:`lstm_jax._cell.linear_coefficients`); :func:`solve_linear_recurrence` composes the affine maps
    :math:`(a_2 a_1,\ a_2 b_1 + b_2)` in ``O(log T)`` depth.  Exact (no iteration, no tolerance): the same
    recurrence as the sequential runner, summed in another order.

    Args:
      kind: a registered kind whose cell is ``diagonal_linear`` (``"mingru"``, ``"minlstm"``, ``"rglru"``).
      params: its parameters; state0: its initial state ``(n,)``; xs: ``(T, m)`` inputs.

    Returns:
      ``(T, n)`` states :math:`s_1..s_T` (differentiable by ordinary autodiff of the scan).
    """
    cell = cell_of(kind)
    if not cell.diagonal_linear:
        linear = sorted(k for k, c in CELLS.items() if c.diagonal_linear)
        raise ValueError(f"kind {kind!r} is not a diagonal linear recurrence; parallel_run_linear takes one of {linear} "
                         "(the others: parallel_run_lstm / parallel_run_gru / parallel_run_rnn, Newton iterations)")
    p, s0, xs, n, _ = check_call(cell, params, state0, "state0", xs, "xs")
    a, b = linear_coefficients(cell, cell.weights(p), xs, n)
    return unflat(cell, solve_linear_recurrence(a, b, flat(cell, s0), DIAGONAL))
