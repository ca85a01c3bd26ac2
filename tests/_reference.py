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


def gru_loop(p, h0, xs):
    """The GRU in the PyTorch convention, written from its equations with NumPy (reset after the hidden matmul)."""
    f = lambda v: None if v is None else np.asarray(v, np.float64)  # noqa: E731
    W_r, W_z, W_n = (f(getattr(p, w)) for w in ("W_r", "W_z", "W_n"))
    b = {k: (0.0 if getattr(p, k) is None else f(getattr(p, k))) for k in ("b_r", "b_z", "b_in", "b_hn")}
    n = W_r.shape[0]
    h = np.asarray(h0, np.float64)
    hs = []
    for x in np.asarray(xs, np.float64):
        hx = np.concatenate([h, x])
        r = _sig(W_r @ hx + b["b_r"])
        z = _sig(W_z @ hx + b["b_z"])
        cand = np.tanh(W_n[:, n:] @ x + b["b_in"] + r * (W_n[:, :n] @ h + b["b_hn"]))
        h = (1 - z) * cand + z * h
        hs.append(h)
    return np.stack(hs)


def _np(p):
    return {k: (None if v is None else np.asarray(v, np.float64)) for k, v in p._asdict().items()}


def mingru_loop(p, h0, xs):
    """minGRU (Feng et al. 2024) from its equations: h = (1 - z) h + z h~, z and h~ from x only."""
    q, h, out = _np(p), np.asarray(h0, np.float64), []
    for x in np.asarray(xs, np.float64):
        z = _sig(q["W_z"] @ x + q["b_z"])
        h = (1 - z) * h + z * (q["W_h"] @ x + q["b_h"])
        out.append(h)
    return np.stack(out)


def minlstm_loop(p, h0, xs):
    """minLSTM (Feng et al. 2024): h = f/(f + i) h + i/(f + i) h~."""
    q, h, out = _np(p), np.asarray(h0, np.float64), []
    for x in np.asarray(xs, np.float64):
        f, i = _sig(q["W_f"] @ x + q["b_f"]), _sig(q["W_i"] @ x + q["b_i"])
        h = f / (f + i) * h + i / (f + i) * (q["W_h"] @ x + q["b_h"])
        out.append(h)
    return np.stack(out)


def rglru_loop(p, h0, xs):
    """RG-LRU (De et al. 2024): log a = -8 r softplus(Lambda), h = a h + sqrt(1 - a^2) (i x)."""
    q, h, out = _np(p), np.asarray(h0, np.float64), []
    for x in np.asarray(xs, np.float64):
        r, i = _sig(q["W_a"] @ x + q["b_a"]), _sig(q["W_x"] @ x + q["b_x"])
        a = np.exp(-8.0 * r * np.log1p(np.exp(q["Lambda"])))
        h = a * h + np.sqrt(1 - a * a) * (i * x)
        out.append(h)
    return np.stack(out)


def slstm_loop(p, s0, xs):
    """sLSTM (xLSTM) from its equations, heads as a block-diagonal recurrent matrix; returns (T, 4n) [h, c, n, m]."""
    q = _np(p)
    R = {g: np.zeros((q["W_i"].shape[0],) * 2) for g in "ifzo"}
    for g in "ifzo":
        H, d, _ = q[f"R_{g}"].shape
        for k in range(H):
            R[g][k * d:(k + 1) * d, k * d:(k + 1) * d] = q[f"R_{g}"][k].T  # rows act as h @ R (row layout)
    h, c, n, m = (np.asarray(v, np.float64) for v in (s0.h, s0.c, s0.n, s0.m))
    out = []
    for x in np.asarray(xs, np.float64):
        raw = {g: q[f"W_{g}"] @ x + h @ R[g] + q[f"b_{g}"] for g in "ifzo"}
        logf = -np.log1p(np.exp(-raw["f"]))
        m_new = np.maximum(logf + m, raw["i"])
        i, f = np.exp(raw["i"] - m_new), np.exp(logf + m - m_new)
        c = f * c + i * np.tanh(raw["z"])
        n = f * n + i
        h = _sig(raw["o"]) * c / n
        m = m_new
        out.append(np.concatenate([h, c, n, m]))
    return np.stack(out)


def mlstm_loop(p, s0, xs, outputs=False):
    """mLSTM (Beck et al. 2024) head by head from its equations: C = f C + i v k^T, n = f n + i k, with
    f = sigma(w_f x + b_f), i = exp(w_i x + b_i), k = W_k x / sqrt(d) + b_k; h = o * C q / max(|n q|, 1).

    ``s0``: the flat memory ``(H (d + 1) d,)``, head by head the rows of C then n.  Returns the flat memories
    ``(T, H (d + 1) d)``, or with ``outputs`` the outputs ``(T, H d)``.
    """
    q = _np(p)
    H, n = q["w_i"].shape[0], q["W_q"].shape[0]
    d = n // H
    mem = np.asarray(s0, np.float64).reshape(H, d + 1, d).copy()
    states, hs = [], []
    for x in np.asarray(xs, np.float64):
        qv = (q["W_q"] @ x + q["b_q"]).reshape(H, d)
        kv = (q["W_k"] @ x / np.sqrt(d) + q["b_k"]).reshape(H, d)
        vv = (q["W_v"] @ x + q["b_v"]).reshape(H, d)
        o = _sig(q["W_o"] @ x + q["b_o"]).reshape(H, d)
        h = np.empty((H, d))
        for j in range(H):
            f = _sig(q["w_f"][j] @ x + q["b_f"][j])
            i = np.exp(q["w_i"][j] @ x + q["b_i"][j])
            C = f * mem[j, :d] + i * np.outer(vv[j], kv[j])
            nn = f * mem[j, d] + i * kv[j]
            mem[j, :d], mem[j, d] = C, nn
            h[j] = o[j] * (C @ qv[j]) / max(abs(nn @ qv[j]), 1.0)
        states.append(mem.reshape(-1).copy())
        hs.append(h.reshape(-1))
    return np.stack(hs if outputs else states)


def lstmp_loop(p, s0, xs, outputs=False):
    """The projected LSTM (torch ``proj_size``) from its equations: gates on [h, x], u = o tanh(c), h = W_hr u.

    ``s0``: the state ``(u_0, c_0)`` (an ``LSTMState`` whose ``h`` holds ``u``); returns the flat states
    ``(T, 2n)`` ``[u; c]``, or with ``outputs`` the projected outputs ``(T, p)``.
    """
    q = _np(p)
    u, c = np.asarray(s0.h, np.float64), np.asarray(s0.c, np.float64)
    states, hs = [], []
    for x in np.asarray(xs, np.float64):
        hx = np.concatenate([q["W_hr"] @ u, x])
        g = {k: q["W_" + k] @ hx + (0.0 if q["b_" + k] is None else q["b_" + k]) for k in "fico"}
        c = c * _sig(g["f"]) + np.tanh(g["c"]) * _sig(g["i"])
        u = _sig(g["o"]) * np.tanh(c)
        states.append(np.concatenate([u, c]))
        hs.append(q["W_hr"] @ u)
    return np.stack(hs if outputs else states)
