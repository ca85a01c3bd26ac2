"""Independent NumPy references (plain Python loops over time) and error helpers for the tests."""

from __future__ import annotations

import numpy as np

# float64 agreement bound for analytic-vs-autodiff and scan-vs-loop comparisons.  Both sides evaluate the
# same sums of at most n + m <= 48 products in a different order: rounding is ~ (n + m) * eps64 ~ 5e-15 per
# entry; over <= 6-step products at weight scale <= 3 the largest error measured in the suite is printed at
# the end of every run (conftest summary): 3.6e-14 at most when this bound was set, a margin of ~30.  Genuine
# formula errors are far larger (the published eq. 6 terms are off by > 1e-5 on every draw verify makes;
# the smallest is in its JSON).
RTOL64 = 1e-12
# float32: eps32 = 1.2e-7; the same reasoning gives ~1e-5 worst case, so 1e-4.
RTOL32 = 1e-4


def rel_err(a, b) -> float:
    """Relative Frobenius error ||a - b|| / ||b|| (0 when both are exactly zero)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    num = np.linalg.norm(a - b)
    den = np.linalg.norm(b)
    if den == 0.0:
        return 0.0 if num == 0.0 else np.inf
    return float(num / den)


#: largest relative error measured per labelled formula during the session (printed at the end)
MAX_ERR: dict = {}


def check_close(got, want, rtol: float, label: str, err=None) -> None:
    """Assert ``err(got, want) < rtol`` (default :func:`rel_err`) and record the error under ``label`` for the summary."""
    e = (err or rel_err)(got, want)
    MAX_ERR[label] = max(MAX_ERR.get(label, 0.0), e)
    assert e < rtol, f"{label}: relative error {e:.3g} >= {rtol:g}"


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def rnn_loop(W_rec, W_in, b, c0, xs, act: str):
    f = _sig if act == "sigmoid" else np.tanh
    c = np.asarray(c0, np.float64)
    out = []
    for x in np.asarray(xs, np.float64):
        z = W_rec @ c + W_in @ x + (0.0 if b is None else b)
        c = f(z)
        out.append(c)
    return np.stack(out)


def lstm_loop(p, h0, c0, xs):
    """The article's LSTM, written from its equations with NumPy (gates on [h, x])."""
    def g(name, hx):
        W = np.asarray(getattr(p, "W_" + name), np.float64)
        b = getattr(p, "b_" + name)
        return W @ hx + (0.0 if b is None else np.asarray(b, np.float64))

    h = np.asarray(h0, np.float64)
    c = np.asarray(c0, np.float64)
    hs, cs = [], []
    for x in np.asarray(xs, np.float64):
        hx = np.concatenate([h, x])
        f, i, ct, o = _sig(g("f", hx)), _sig(g("i", hx)), np.tanh(g("c", hx)), _sig(g("o", hx))
        c = c * f + ct * i
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)
