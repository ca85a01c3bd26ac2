r"""Gradient-flow diagnostics: how fast products of step Jacobians shrink or grow.

For step Jacobians :math:`J_t = \partial s_t/\partial s_{t-1}`, ``t = 1..T``:

* :func:`suffix_products` gives :math:`\partial s_T/\partial s_{t-1} = J_T J_{T-1}\cdots J_t`
  for every ``t`` (what backpropagation from the last step multiplies by), as direct
  products (they under- or overflow for long ``T``).
* :func:`gradient_flow_norms` gives their spectral and Frobenius norms against the lag,
  accumulated in **log space**: the suffix product is carried as :math:`e^{L_t} M_t` with
  :math:`\|M_t\|_F = 1`, :math:`M_{t-1} \propto M_t J_t`, :math:`L_{t-1} = L_t + \log\|M_t J_t\|_F`
  (norm-rescaled products), so ``log_spectral`` / ``log_frobenius`` stay finite for any ``T``
  (float32 at ``T = 10^5`` agrees with float64 to ``10^{-3}`` relative, ``tests/test_flow.py``).
* :func:`lyapunov` accumulates the product in log space with QR
  re-orthonormalisation (Benettin et al. 1980; Engelken, Wolf & Abbott 2020):
  :math:`Q_t R_t = J_t Q_{t-1}`, :math:`Q_0 = I_{d\times k}`.  Then
  :math:`\lambda_i = \frac1T\sum_t\log|(R_t)_{ii}|` are the ``k`` leading
  Lyapunov exponents (exponential rates of growth, ``< 0`` vanishing, ``> 0``
  exploding), and :math:`\sum_{u\le t}\log|(R_u)_{11}| = \log\|J_t\cdots J_1 q_1\|`
  exactly (``q_1`` the first column of :math:`Q_0`).  Nothing is ever
  multiplied out, so ``T = 10^5`` or more works in float32 without under- or
  overflow.

**Precision.**  bfloat16 and float16 Jacobians are promoted to float32 for the linear
algebra (LAPACK has no half-precision QR or SVD); the results are then float32.  Matrix
products use ``Precision.HIGHEST`` (no TF32/bf16 passes on GPUs/TPUs).

References:
  G. Benettin, L. Galgani, A. Giorgilli, J.-M. Strelcyn, "Lyapunov characteristic
  exponents for smooth dynamical systems", Meccanica 15, 1980.
  R. Engelken, F. Wolf, L. F. Abbott, "Lyapunov spectra of chaotic recurrent neural
  networks", arXiv:2006.02427, 2020.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import check_array, check_int

_HI = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------- the toolkit's three primitives
# Every gradient-flow computation of the package (dense and matrix-free, diagnose, the training snapshots,
# lstm-jax flow) is built from these: one log-space accumulator, one QR step, one preparation of k and q0.


def log_renormalise(M: jax.Array, L: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""One step of the log-space accumulator: a product carried as :math:`e^{L} M` becomes
    :math:`(M/\|M\|_F,\ L + \log\|M\|_F)`, so :math:`\|M\|_F = 1` and nothing under- or overflows.

    An exactly zero product gives ``M = 0`` and ``L = -inf`` (and stays so): :math:`\log 0`, not a floor.
    """
    nu = jnp.sqrt(jnp.sum(M * M))
    pos = nu > 0
    return jnp.where(pos, M / jnp.where(pos, nu, 1), 0), L + jnp.log(nu)


def log_spectral(M: jax.Array, L: jax.Array) -> jax.Array:
    r""":math:`\log\|e^L M\|_2 = L + \log\|M\|_2` of an accumulated product (``-inf`` for an exact zero)."""
    return L + jnp.log(jnp.linalg.norm(M, ord=2, axis=(-2, -1)))


def spectral_ritz(M: jax.Array, U: jax.Array, iters: int = 2) -> tuple[jax.Array, jax.Array]:
    r"""The largest singular value of ``M (d, d)`` by block power (subspace) iteration from ``U (d, k)``.

    ``iters`` steps of :math:`U \leftarrow \mathrm{qr}(M M^\top U)`, then the Rayleigh–Ritz value
    :math:`\sigma = \|M^\top U\|_2` (an SVD of a ``(d, k)`` matrix).  Always a lower bound on
    :math:`\|M\|_2`, equal to it (up to rounding) once ``span(U)`` holds the top left singular vector.  Cost
    ``O(iters\,d^2k)`` instead of the ``O(d^3)`` of a full SVD: used warm-started along a growing product,
    whose top singular vector at the fixed end settles as the product grows (``lstm-jax diagnose``, which checks
    it against exact SVDs on every run).  Returns ``(sigma, U)``, ``U`` the updated orthonormal block.
    """
    def it(_, U):
        return jnp.linalg.qr(jnp.matmul(M, jnp.matmul(M.T, U, precision=_HI), precision=_HI))[0]

    U = jax.lax.fori_loop(0, iters, it, U)  # iters may be traced (a schedule along the lags)
    return jnp.linalg.svd(jnp.matmul(M.T, U, precision=_HI), compute_uv=False)[0], U


class ScaledMatrix(NamedTuple):
    r"""The ``(d, d)`` matrix :math:`\operatorname{diag}(r)\,U\,\operatorname{diag}(c)` kept in factors.

    The article's eq. (6) terms and the GRU's terms have this form with ``U`` a block of the recurrent weights,
    shared by every step (:func:`lstm_terms_along`, :func:`gru_terms_along` with ``scaled=True``), so a product with
    it costs one matrix–vector product with ``U`` and two scalings, and products of many steps' terms with a block
    of vectors share one matrix–matrix product (``jax.vmap`` over the steps keeps ``U`` unbatched).
    :func:`spectral_lanczos` and :func:`spectral_lanczos_norm` accept it in place of a dense matrix.

    Attributes:
      row: :math:`r`, ``(..., d)``; leading axes (a time axis, as the ``scaled=True`` terms carry) are a batch of
        matrices sharing ``U``.
      U: ``(d, d)``, or ``None`` for the identity (the diagonal matrix :math:`\operatorname{diag}(r \odot c)`).
      col: :math:`c`, ``(..., d)``, the same leading axes as ``row``.

    ``dense`` handles the leading axes; ``matvec`` and ``rmatvec`` take one matrix (``row``, ``col`` ``(d,)``; under
    ``jax.vmap`` each mapped matrix is one) and raise otherwise.  Being a ``NamedTuple`` it is a pytree: ``jax.vmap``
    and ``jax.tree_util`` see its three fields, not a matrix (``jnp.asarray`` of it is not the matrix: use ``dense``).
    """

    row: jax.Array
    U: Optional[jax.Array]
    col: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.row.shape[:-1], self.row.shape[-1], self.col.shape[-1])

    @property
    def dtype(self):
        return self.row.dtype

    def dense(self) -> jax.Array:
        """The ``(..., d, d)`` matrices themselves."""
        if self.U is None:
            return (self.row * self.col)[..., :, None] * jnp.eye(self.row.shape[-1], dtype=self.row.dtype)
        return self.row[..., :, None] * self.U * self.col[..., None, :]

    def matvec(self, x: jax.Array) -> jax.Array:
        r""":math:`\operatorname{diag}(r) U \operatorname{diag}(c)\,x` for ``x (d,)`` or ``(d, k)``."""
        self._one()
        return _scale(self.row, _times(self.U, _scale(self.col, x)))

    def rmatvec(self, x: jax.Array) -> jax.Array:
        r""":math:`\operatorname{diag}(c) U^\top \operatorname{diag}(r)\,x` (the transpose's product)."""
        self._one()
        return _scale(self.col, _times(None if self.U is None else self.U.T, _scale(self.row, x)))

    def _one(self) -> None:
        if self.row.ndim != 1 or self.col.ndim != 1:
            raise ValueError(f"ScaledMatrix products take one matrix (row and col of shape (d,)), got row "
                             f"{self.row.shape} and col {self.col.shape}: index the leading axes or jax.vmap over them")


def as_dense(field):
    """A terms field as a dense array: ``field.dense()`` for a :class:`ScaledMatrix`, else ``field`` itself."""
    return field.dense() if isinstance(field, ScaledMatrix) else field


def _scale(s: jax.Array, x: jax.Array) -> jax.Array:
    return s * x if x.ndim == 1 else s[:, None] * x


def _times(U: Optional[jax.Array], x: jax.Array) -> jax.Array:
    return x if U is None else jnp.matmul(U, x, precision=_HI)


def _mv(M, x: jax.Array) -> jax.Array:
    return M.matvec(x) if isinstance(M, ScaledMatrix) else jnp.matmul(M, x, precision=_HI)


def _rmv(M, x: jax.Array) -> jax.Array:
    return M.rmatvec(x) if isinstance(M, ScaledMatrix) else jnp.matmul(M.T, x, precision=_HI)


def spectral_lanczos(M, v0: jax.Array, steps: int, block: int) -> tuple[jax.Array, jax.Array]:
    r"""The largest singular value of ``M (d, d)`` (an array or a :class:`ScaledMatrix`) by Lanczos on
    :math:`M M^\top` from ``v0 (d,)``.

    Builds an orthonormal basis ``V (d, steps)`` of the Krylov space
    :math:`\mathcal K = \mathrm{span}\{v_0, (MM^\top)v_0, \dots, (MM^\top)^{s-1}v_0\}` (Lanczos 1950; on
    :math:`MM^\top`, the Golub–Kahan bidiagonalisation's space, Golub & Kahan 1965), each new vector
    orthogonalised against all earlier ones twice (classical Gram–Schmidt, "twice is enough": Giraud et al. 2005),
    then the Rayleigh–Ritz value :math:`\sigma = \|M^\top V\|_2` (an SVD of a ``(d, steps)`` matrix).  Because
    ``V`` is orthonormal, :math:`\sigma \le \|M\|_2` always: a lower bound, reaching the norm (to rounding) in far
    fewer matrix passes than power iteration when the top singular values crowd (Lanczos' Chebyshev-like
    convergence, Golub & Van Loan, *Matrix Computations*, 4th ed., §10.1.5).  Cost ``2 steps`` matrix–vector
    products with ``M`` and ``O(d steps^2)`` for the orthogonalisation.  If the space is exhausted (an invariant
    subspace, a zero ``v0``) the remaining columns are 0 and add nothing.

    Returns ``(sigma, U)``: ``U (d, block)`` the top ``block`` Ritz vectors (orthonormal; left singular directions
    of ``M`` within the space), which warm-start the next call along a growing product (``lstm-jax diagnose``:
    ``v0`` = the sum of the previous ``U``'s columns) or :func:`spectral_ritz`.
    """
    d = M.shape[0]
    nv = jnp.sqrt(jnp.sum(v0 * v0))
    V = jnp.zeros((d, steps), M.dtype).at[:, 0].set(jnp.where(nv > 0, v0 / jnp.where(nv > 0, nv, 1), 0))

    def grow(j, V):
        w = _mv(M, _rmv(M, V[:, j]))
        for _ in range(2):  # columns not yet filled are 0 and subtract nothing
            w = w - jnp.matmul(V, jnp.matmul(V.T, w, precision=_HI), precision=_HI)
        nw = jnp.sqrt(jnp.sum(w * w))
        return V.at[:, j + 1].set(jnp.where(nw > 0, w / jnp.where(nw > 0, nw, 1), 0))

    V = jax.lax.fori_loop(0, steps - 1, grow, V)
    _, sv, Wt = jnp.linalg.svd(_rmv(M, V), full_matrices=False)
    return sv[0], jnp.matmul(V, Wt[:block].T, precision=_HI)


def spectral_lanczos_norm(M, v0: jax.Array, steps: int) -> jax.Array:
    r"""The largest singular value of ``M (d, d)`` (an array or a :class:`ScaledMatrix`) by the plain Lanczos
    three-term recurrence on :math:`M M^\top` from ``v0 (d,)``, without reorthogonalisation.

    :math:`w = M M^\top q_j - \beta_{j-1} q_{j-1}`, :math:`\alpha_j = q_j^\top w`,
    :math:`\beta_j = \|w - \alpha_j q_j\|`, :math:`q_{j+1} = (w - \alpha_j q_j)/\beta_j` (Lanczos 1950), then
    :math:`\sigma = \sqrt{\lambda_{\max}(T)}` of the ``(steps, steps)`` tridiagonal :math:`T` (Sturm-count
    multisection, :func:`_tridiagonal_max_eigenvalue`).  In exact arithmetic this is :func:`spectral_lanczos`'s value
    and a lower bound on :math:`\|M\|_2`.  In floating point the basis loses orthogonality; Paige (1980) shows that
    every Ritz value still lies within :math:`\epsilon_1 = O(\mathrm{poly}(steps, d)\,\varepsilon\|M\|^2)` of
    :math:`[\lambda_{\min}, \lambda_{\max}]` of :math:`MM^\top`, so :math:`\sigma` is a lower bound up to that
    slack (measured to rounding in ``tests/test_flow.py``, not guaranteed), and that the loss of orthogonality delays
    the convergence of further Ritz values and repeats converged ones.  ``M`` is first divided by the largest
    absolute entry of each factor (exact; the norm is multiplied back), so float32 neither under- nor overflows in
    the recurrence for tiny or huge terms.  Cost: ``2 steps`` products with ``M`` and ``O(d)`` more per step, against
    the ``O(d\,steps)`` per step of full reorthogonalisation (which dominates once ``M`` is a :class:`ScaledMatrix`
    whose products are shared by a batch).  When the Krylov space is exhausted, :math:`\beta_j` is zero only in exact
    arithmetic: in floating point the recurrence restarts from rounding noise, which adds Ritz values within the
    spectrum.  No Ritz vectors (use :func:`spectral_lanczos` where a warm start needs them) and no derivative: the
    value is wrapped in ``lax.stop_gradient`` (its gradient is zero, not the singular vectors' ``u_1 v_1^T``).

    C. C. Paige, "Accuracy and effectiveness of the Lanczos algorithm for the symmetric eigenproblem", *Linear
    Algebra Appl.* 34, 1980.
    """
    steps = check_int(steps, "steps", lo=1, accepts="an int >= 1 (the Krylov vectors)")
    M, scale = _normalised(M)
    nv = jnp.sqrt(jnp.sum(v0 * v0))
    q = jnp.where(nv > 0, v0 / jnp.where(nv > 0, nv, 1), 0)

    def body(carry, _):
        q, q_prev, b_prev = carry
        w = _mv(M, _rmv(M, q)) - b_prev * q_prev
        a = jnp.sum(q * w)
        w = w - a * q
        b = jnp.sqrt(jnp.sum(w * w))
        return (jnp.where(b > 0, w / jnp.where(b > 0, b, 1), 0), q, b), (a, b)

    _, (a, b) = jax.lax.scan(body, (q, jnp.zeros_like(q), jnp.zeros((), q.dtype)), None, length=steps)
    return jax.lax.stop_gradient(scale * jnp.sqrt(jnp.maximum(_tridiagonal_max_eigenvalue(a, b[:-1]), 0)))


def _normalised(M):
    """``(M / s, s)`` with ``s`` the product of the factors' largest absolute entries (1 where that is 0)."""
    def unit(a):
        top = jnp.max(jnp.abs(a))
        top = jnp.where(top > 0, top, 1)
        return a / top, top

    if isinstance(M, ScaledMatrix):
        (row, sr), (col, sc) = unit(M.row), unit(M.col)
        if M.U is None:
            return ScaledMatrix(row, None, col), sr * sc
        U, su = unit(M.U)
        return ScaledMatrix(row, U, col), sr * sc * su
    return unit(M)


def _tridiagonal_max_eigenvalue(a: jax.Array, e: jax.Array, points: int = 31, rounds: int = 11) -> jax.Array:
    r"""The largest eigenvalue of the symmetric tridiagonal matrix with diagonal ``a (s,)`` and off-diagonal
    ``e (s-1,)``, by multisection on Sturm counts (no LAPACK call: batched LAPACK calls running at once can deadlock
    jaxlib 0.10's CPU thread pool).

    The count of eigenvalues below :math:`x` is the number of negative pivots of :math:`T - xI =
    LDL^\top`, :math:`q_1 = a_1 - x`, :math:`q_i = a_i - x - e_{i-1}^2/q_{i-1}` (Sylvester's law of inertia; a pivot
    smaller than ``pivmin`` taken as ``-pivmin``, in the manner of LAPACK's ``dstebz`` with a larger ``pivmin``);
    backward stable, so the eigenvalue is
    found to :math:`O(\varepsilon\|T\|)` (Barth, Martin & Wilkinson 1967; Demmel, *Applied Numerical Linear
    Algebra* §5.3.4).  Each round evaluates ``points`` equally spaced counts inside the current bracket, starting from
    the Gershgorin interval, and keeps the sub-interval holding :math:`\lambda_{\max}`: ``rounds`` rounds shrink it
    by :math:`(points + 1)^{rounds} = 2^{55}`."""
    s = a.shape[0]
    ae = jnp.abs(e)
    radius = jnp.concatenate([ae, jnp.zeros(1, a.dtype)]) + jnp.concatenate([jnp.zeros(1, a.dtype), ae])
    lo, hi = jnp.min(a - radius), jnp.max(a + radius)
    finfo = jnp.finfo(a.dtype)
    pivmin = finfo.tiny / finfo.eps * jnp.maximum(1, jnp.max(jnp.concatenate([e * e, jnp.zeros(1, a.dtype)])))
    e2 = jnp.concatenate([jnp.zeros(1, a.dtype), e * e])

    def below(x):  # number of eigenvalues < x, for every x (points,)
        def pivot(q, ai_e2):
            ai, e2i = ai_e2
            q = ai - x - e2i / q
            q = jnp.where(jnp.abs(q) < pivmin, -pivmin, q)
            return q, q < 0
        _, neg = jax.lax.scan(pivot, jnp.ones_like(x), (a, e2))  # the first pivot ignores e2[0] = 0
        return jnp.sum(neg, axis=0)

    def round_(bracket, _):
        lo, hi = bracket
        x = lo + (hi - lo) * jnp.arange(1, points + 1, dtype=a.dtype) / (points + 1)
        all_below = below(x) == s
        return (jnp.max(jnp.where(all_below, lo, x)), jnp.min(jnp.where(all_below, x, hi))), None

    (lo, hi), _ = jax.lax.scan(round_, (lo, hi), None, length=rounds)
    return (lo + hi) / 2


def qr_step(X: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""One re-orthonormalisation of Benettin's algorithm: :math:`X = QR` with :math:`R_{ii} \ge 0`.

    Returns ``(Q, log|R_ii|, floored)``: the logs raised to the dtype's smallest normal number where
    :math:`|R_{ii}|` is below it (an exactly singular step), and the number of such entries.
    """
    Q, R = jnp.linalg.qr(X)
    r = jnp.diagonal(R)
    sign = jnp.where(r < 0, -1.0, 1.0).astype(Q.dtype)
    a = jnp.abs(r)
    tiny = jnp.finfo(X.dtype).tiny
    return Q * sign[None, :], jnp.log(jnp.maximum(a, tiny)), jnp.sum(a < tiny)


def start_directions(q0: Optional[jax.Array], d: int, k: Optional[int], dtype) -> jax.Array:
    """``(d, k)`` orthonormal start directions for the Lyapunov and flow-norm algorithms, dense and matrix-free:
    ``k`` checked (an int in ``1..d``, default ``d``), ``q0`` checked and orthonormalised (default the first ``k``
    columns of the identity; see :func:`lyapunov`)."""
    k = d if k is None else check_int(k, "k", lo=1, hi=d, accepts=f"an int in 1..{d} (the state size d)")
    return jnp.eye(d, k, dtype=dtype) if q0 is None else _orthonormal_q0(q0, d, k, dtype)


def check_transient(transient, T: int) -> int:
    """``transient``: the steps left out of the exponents' average, an int in ``0..T-1``."""
    return check_int(transient, "transient", lo=0, hi=T - 1, accepts=f"an int in 0..{T - 1} (fewer than the {T} steps)")


def half_life(rate):
    r"""Steps over which a norm decaying at ``rate`` (natural log per step, ``< 0``) halves: :math:`\ln 2/(-r)`;
    ``inf`` for ``rate >= 0`` (no decay), ``nan`` for ``nan`` (not measured).  NumPy on the host, elementwise
    (not for use under ``jit``); a doubling time is ``half_life(-rate)``."""
    r = np.asarray(rate, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(r), np.nan, np.where(r < 0, np.log(2.0) / np.where(r < 0, -r, 1.0), np.inf))[()]


def time_constant(f):
    r"""Memory time constant of a retention factor :math:`f \in [0, 1]` applied every step:
    :math:`\tau = -1/\log f` (steps for a stored value to fall by :math:`e`); ``inf`` for ``f >= 1``, ``0`` for
    ``f = 0``, ``nan`` for a negative or ``nan`` factor (no time constant).  NumPy on the host, elementwise."""
    f = np.asarray(f, np.float64)
    ok = (f >= 0) & (f < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = -1.0 / np.log(np.where(ok, f, 0.5))
    return np.where(ok, tau, np.where(f >= 1, np.inf, np.nan))[()]


def _check_jacs(jacs) -> jax.Array:
    jacs = check_array(jacs, "jacs", ("T", "d", "d"))
    if jacs.shape[1] != jacs.shape[2]:
        raise ValueError(f"jacs has shape {jacs.shape} but (T, d, d) square Jacobians are expected")
    return jacs


def _linalg_dtype(x: jax.Array) -> jax.Array:
    """bfloat16/float16 -> float32 (no half-precision QR/SVD in LAPACK); float32/float64 unchanged."""
    return x.astype(jnp.float32) if jnp.finfo(x.dtype).bits < 32 else x


def suffix_products(jacs: jax.Array) -> jax.Array:
    r"""``out[t-1]`` :math:`= J_T J_{T-1}\cdots J_t = \partial s_T/\partial s_{t-1}`, ``t = 1..T``; shape ``(T, d, d)``.

    One reverse :func:`jax.lax.associative_scan`.  Direct products: use float64,
    :func:`gradient_flow_norms` (log-norms) or :func:`lyapunov` for long horizons.
    """
    jacs = _check_jacs(jacs)
    return jax.lax.associative_scan(lambda later, earlier: later @ earlier, jacs, reverse=True)


class FlowNorms(NamedTuple):
    """Norms of :math:`\\partial s_T/\\partial s_{t}` for ``t = 0..T-1`` (``lag = T - t``), each ``(T,)``.

    Attributes:
      lag: ``T, T-1, ..., 1``.
      spectral: :math:`\\|\\cdot\\|_2 = ` ``exp(log_spectral)``: 0 where the norm is below the dtype's
        smallest number, ``inf`` above its largest (use the log fields for long ``T``).
      frobenius: ``exp(log_frobenius)``, with the same under/overflow behaviour.
      log_spectral: natural log of the spectral norm, finite for any ``T`` (``-inf`` only if the
        product is exactly the zero matrix).
      log_frobenius: natural log of the Frobenius norm (same).
    """

    lag: jax.Array
    spectral: jax.Array
    frobenius: jax.Array
    log_spectral: Any = None
    log_frobenius: Any = None


def gradient_flow_norms(jacs: jax.Array) -> FlowNorms:
    r"""Spectral and Frobenius norms of :math:`\partial s_T/\partial s_t`, ``t = 0..T-1``, with their lags ``T - t``.

    Log space (module docstring): one reverse :func:`jax.lax.scan` carries
    :math:`(M_t, L_t)` with :math:`J_T\cdots J_{t+1} = e^{L_t}M_t`, :math:`\|M_t\|_F = 1`;
    then :math:`\log\|\cdot\|_F = L_t` and :math:`\log\|\cdot\|_2 = L_t + \log\|M_t\|_2`
    (an SVD of the normalised :math:`M_t`, which cannot under- or overflow).  Cost
    ``O(T d^3)``, memory ``O(T d^2)``.

    Args:
      jacs: ``(T, d, d)`` step Jacobians :math:`J_1..J_T` in time order; bfloat16/float16 are
        promoted to float32 (module docstring).

    Returns:
      :class:`FlowNorms`; ``spectral``/``frobenius`` are the exponentials of the log fields.
    """
    jacs = _linalg_dtype(_check_jacs(jacs))
    T, d, _ = jacs.shape

    def step(carry, J):
        M, L = log_renormalise(jnp.matmul(carry[0], J, precision=_HI), carry[1])
        return (M, L), (M, L)

    init = (jnp.eye(d, dtype=jacs.dtype), jnp.zeros((), jacs.dtype))
    _, (Ms, log_fro) = jax.lax.scan(step, init, jacs, reverse=True)
    log_spec = log_spectral(Ms, log_fro)
    return FlowNorms(jnp.arange(T, 0, -1), jnp.exp(log_spec), jnp.exp(log_fro), log_spec, log_fro)


class Lyapunov(NamedTuple):
    """Result of :func:`lyapunov`.

    Attributes:
      exponents: ``(k,)`` leading Lyapunov exponents (per step, natural log), descending.
      log_growth: ``(T,)`` :math:`\\log\\|J_t\\cdots J_1 q_1\\|` for ``t = 1..T``.
      log_volume: ``(T,)`` :math:`\\sum_{u\\le t}\\sum_i\\log|(R_u)_{ii}|`, the log of the
        ``k``-dimensional volume growth.
      floored: number of :math:`|(R_t)_{ii}|` below the dtype's smallest normal number (a step that
        contracts a direction by more than ~:math:`e^{-87}` in float32, or an exactly singular
        :math:`J_t`); their logs were raised to ``log(tiny)``, so every value stays finite and the
        affected exponents are *upper bounds*.  0 in normal use.
    """

    exponents: jax.Array
    log_growth: jax.Array
    log_volume: jax.Array
    floored: Any = None


def _orthonormal_q0(q0, d: int, k: int, dtype) -> jax.Array:
    raw = q0  # before check_array, which may stage a constant under jit
    q0 = check_array(q0, "q0", (d, k))
    if not isinstance(raw, jax.core.Tracer):  # a concrete q0 (also one closed over under jit): checked in NumPy
        a = np.asarray(raw).astype(np.dtype(dtype))
        finite = bool(np.all(np.isfinite(a)))
        scale = float(np.max(np.abs(a))) if finite else 0.0
        r_min = float(np.min(np.abs(np.diagonal(np.linalg.qr(a)[1])))) if finite else float("nan")
        tol = d * float(jnp.finfo(dtype).eps) * max(scale, float(jnp.finfo(dtype).tiny))
        if not finite or scale == 0 or r_min <= tol * np.sqrt(d):
            raise ValueError(
                f"q0 (shape {q0.shape}) must have {k} linearly independent finite columns (ideally orthonormal); "
                f"got a rank-deficient or non-finite matrix (smallest |R_ii| of its QR: {r_min:.3g})"
            )
    Q, R = jnp.linalg.qr(q0.astype(dtype))
    sign = jnp.where(jnp.diagonal(R) < 0, -1.0, 1.0).astype(dtype)
    return Q * sign[None, :]  # first column = q0[:, 0] / |q0[:, 0]|


def lyapunov(jacs: jax.Array, k: Optional[int] = None, q0: Optional[jax.Array] = None, *,
             transient: int = 0) -> Lyapunov:
    r"""Leading ``k`` Lyapunov exponents of :math:`J_T\cdots J_1` by QR re-orthonormalisation (log space).

    Args:
      jacs: ``(T, d, d)`` step Jacobians in time order (bfloat16/float16 promoted to float32).
      k: number of exponents, an int in ``1..d`` (default ``d``).
      q0: ``(d, k)`` initial directions (default the first ``k`` columns of the identity, which can
        sit in the Jacobians' null space — e.g. when the first coordinates are units the step ignores —
        and then report :math:`\log` of the floor for every step; prefer random directions from an
        explicit key, as ``lstm-jax diagnose`` does: ``jax.random.normal(key, (d, k))``).
        They are orthonormalised by QR first (span and the direction of the first column are
        kept, so ``log_growth`` follows ``q0[:, 0] / |q0[:, 0]|``); linearly dependent, zero or
        non-finite columns are a ``ValueError`` (checked whenever ``q0`` is concrete, also when it
        is closed over by a jitted function; skipped only when ``q0`` itself is traced).
      transient: the first ``transient`` steps re-orthonormalise ``Q`` (so it
        turns towards the leading directions) but are left out of the
        exponents: :math:`\lambda_i = \frac{1}{T - \text{transient}}\sum_{t > \text{transient}}\log|(R_t)_{ii}|`.
        ``log_growth`` and ``log_volume`` still cover every step.

    Returns:
      :class:`Lyapunov`.  The finite-``T`` exponents estimate the true ones; along random
      inputs their error shrinks like ``O(T^{-1/2})`` (a central-limit rate: the estimate is
      a time average of the fluctuating :math:`\log|(R_t)_{ii}|`); only for constant or
      periodic Jacobians is it ``O(1/T)``.  A step whose :math:`|(R_t)_{ii}|` falls below the
      dtype's ``tiny`` contributes :math:`\log(\text{tiny})` (counted in the result's
      ``floored``): such exponents are then neither the true exponents nor bounds on them — the
      true value can be anything below, and the ordering of the floored ones means nothing.
    """
    jacs = _linalg_dtype(_check_jacs(jacs))
    T, d, _ = jacs.shape
    transient = check_transient(transient, T)
    q0 = start_directions(q0, d, k, jacs.dtype)

    def step(Q, J):
        Q, logs, low = qr_step(jnp.matmul(J, Q, precision=_HI))
        return Q, (logs, low)

    _, (logs, low) = jax.lax.scan(step, q0, jacs)  # (T, k)
    rates = jnp.mean(logs[transient:], axis=0)
    order = jnp.argsort(-rates)
    return Lyapunov(
        rates[order],
        jnp.cumsum(logs[:, 0]),
        jnp.cumsum(jnp.sum(logs, axis=1)),
        jnp.sum(low),
    )


def lag_map(jacs: jax.Array, select: Callable[[jax.Array], jax.Array] = lambda P: P) -> jax.Array:
    r"""Spectral norms :math:`\|\mathrm{select}(\partial s_t/\partial s_u)\|_2` for all ``u < t``; shape ``(T, T)``.

    Entry ``[t - 1, u]`` (``t = 1..T``, ``u = 0..T-1``) is the norm of
    ``select`` :math:`(J_t\cdots J_{u+1})`; entries with ``u >= t`` are NaN.
    ``select`` picks a block, e.g. ``lambda P: P[..., n:, n:]`` for
    :math:`\partial c_t/\partial c_u` with :math:`h_u` held fixed.  Cost
    ``O(T^2 d^3)`` in one scan: for moderate ``T`` (a few hundred).  Direct products
    (float64 for long lags); bfloat16/float16 are promoted to float32.
    """
    jacs = _linalg_dtype(_check_jacs(jacs))
    if not callable(select):
        raise TypeError(f"select is a {type(select).__name__} but a function of the (T, d, d) products is expected")
    T, d, _ = jacs.shape
    eye = jnp.broadcast_to(jnp.eye(d, dtype=jacs.dtype), (T, d, d))

    def step(carry, inp):
        t, J = inp
        # carry[u] = J_(t-1) ... J_(u+1) for u < t - 1 (identity for u >= t - 1)
        prods = J[None] @ carry
        prods = jnp.where((jnp.arange(T) < t)[:, None, None], prods, eye)
        norms = jnp.linalg.norm(select(prods), ord=2, axis=(-2, -1))
        return prods, jnp.where(jnp.arange(T) < t, norms, jnp.nan)

    _, rows = jax.lax.scan(step, eye, (jnp.arange(1, T + 1), jacs))
    return rows


# --------------------------------------------------------------------------- autodiff references (flow maps)


def rnn_flow_map(params, xs: jax.Array, activation=None) -> Callable[[jax.Array], jax.Array]:
    r"""The map :math:`c_0 \mapsto c_T` through :func:`~lstm_jax.run_rnn` (the same ``lax.scan``).

    ``jax.jacfwd(rnn_flow_map(p, xs))(c0)`` is the autodiff reference for
    :math:`\partial c_T/\partial c_0 = J_T\cdots J_1` (compare :func:`suffix_products`).
    ``activation`` defaults to :data:`~lstm_jax.SIGMOID`.
    """
    from ._activations import SIGMOID, as_activation
    from ._rnn import run_rnn

    act = SIGMOID if activation is None else as_activation(activation)
    return lambda c0: run_rnn(params, c0, xs, act)[0]


def lstm_flow_map(params, xs: jax.Array) -> Callable[[jax.Array], jax.Array]:
    r"""The map :math:`[h_0; c_0] \mapsto [h_T; c_T]` (vectors of size ``2n``) through :func:`~lstm_jax.run_lstm`.

    ``jax.jacfwd(lstm_flow_map(p, xs))(s0)`` is the autodiff reference for
    :math:`\partial s_T/\partial s_0`; with ``xs`` of length 1 it is the step map.
    """
    from ._lstm import LSTMState, run_lstm

    def flow(s0: jax.Array) -> jax.Array:
        s0 = check_array(s0, "s0", ("2n",))
        if s0.shape[0] % 2:
            raise ValueError(f"s0 has shape {s0.shape} but the joint state [h; c] of shape (2n,) (even length) "
                             "is expected")
        n = s0.shape[-1] // 2
        final, _ = run_lstm(params, LSTMState(s0[:n], s0[n:]), xs)
        return jnp.concatenate([final.h, final.c])

    return flow
