"""Bad input, issue 12: every case raises the documented exception, naming the argument, what it got and
what is accepted, before any work; the CLI answers with one line and exit code 2 (usage) or 3 (I/O) and
leaves no file behind; the atomic writer survives a SIGKILL in the middle of a write.

The error policy these tests hold the code to is the module docstring of ``lstm_jax/_validation.py``
(docs/guide/errors.md).  Each core case is ``(id, call, exception type, fragments)``: the
message must contain every fragment, in order.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax import cli
from lstm_jax.outputs import AtomicOutputs, atomic_write

KEY = jax.random.PRNGKey(0)
P = lj.init_lstm(KEY, 4, 3)
R = lj.init_rnn(KEY, 4, 3)
S = lj.zero_state(4)
C0 = jnp.zeros(4)
XS = jnp.ones((5, 3))
LONG = jnp.zeros((3000, 3))  # lax.scan with unroll=0/True/1e9 over 3000 steps compiled for minutes (issue 12)
JACS = jnp.broadcast_to(0.5 * jnp.eye(4), (6, 4, 4))
F8 = ml_dtypes.float8_e4m3fn


def _case(id_, call, exc, *fragments):
    return pytest.param(call, exc, fragments, id=id_)


UNROLL_BAD = [
    ("0", 0, ValueError, ("unroll must be an int in 1..T", "T = 5 here", "got 0")),
    ("true", True, TypeError, ("unroll must be an int in 1..T", "got bool True", "pass unroll=5")),
    ("false", False, TypeError, ("unroll must be an int", "got bool False")),
    ("npbool", np.True_, TypeError, ("unroll must be an int", "got bool True")),
    ("1e9", 1e9, TypeError, ("unroll must be an int in 1..T", "got float 1000000000.0")),
    ("10**9", 10**9, ValueError, ("unroll must be an int in 1..T", "got 1000000000")),
    ("T+1", 6, ValueError, ("unroll must be an int in 1..T", "got 6")),
    ("none", None, TypeError, ("unroll must be an int", "got NoneType None")),
    ("negative", -2, ValueError, ("unroll must be an int in 1..T", "got -2")),
    ("float", 2.5, TypeError, ("unroll must be an int", "got float 2.5")),
    ("str", "4", TypeError, ("unroll must be an int", "got str '4'")),
]

CORE = [
    # --- unroll: runners (both) -------------------------------------------------------------------
    *[_case(f"run_lstm-unroll-{i}", lambda u=u: lj.run_lstm(P, S, XS, unroll=u), e, *f) for i, u, e, f in UNROLL_BAD],
    *[_case(f"run_rnn-unroll-{i}", lambda u=u: lj.run_rnn(R, C0, XS, unroll=u), e, *f) for i, u, e, f in UNROLL_BAD],
    _case("run_lstm-unroll0-T3000-no-hang", lambda: lj.run_lstm(P, S, LONG, unroll=0), ValueError,
          "unroll must be an int in 1..T", "T = 3000 here", "got 0"),
    _case("run_rnn-unrollTrue-T3000-no-hang", lambda: lj.run_rnn(R, C0, LONG, unroll=True), TypeError,
          "unroll", "got bool True"),
    # --- remat ---------------------------------------------------------------------------------------
    _case("remat-float", lambda: lj.run_lstm(P, S, XS, remat=2.5), TypeError, "remat must be a bool or a positive int",
          "got float 2.5"),
    _case("remat-str", lambda: lj.run_rnn(R, C0, XS, remat="yes"), TypeError, "remat", "got str 'yes'"),
    _case("remat-none", lambda: lj.run_lstm(P, S, XS, remat=None), TypeError, "remat", "got NoneType None"),
    _case("remat-0", lambda: lj.run_lstm(P, S, XS, remat=0), ValueError, "remat", "got 0"),
    _case("remat-negative", lambda: lj.run_rnn(R, C0, XS, remat=-3), ValueError, "remat", "got -3"),
    # --- activation -----------------------------------------------------------------------------------
    _case("run_rnn-act-relu", lambda: lj.run_rnn(R, C0, XS, "relu"), ValueError,
          "activation='relu' is not a known activation", "['sigmoid', 'tanh']"),
    _case("run_rnn-act-int", lambda: lj.run_rnn(R, C0, XS, 3), TypeError, "activation is a int", "lstm_jax.SIGMOID"),
    _case("run_rnn-act-none", lambda: lj.run_rnn(R, C0, XS, None), TypeError, "activation is a NoneType"),
    _case("run_rnn-act-function", lambda: lj.run_rnn(R, C0, XS, jnp.tanh), TypeError, "activation is a",
          "lstm_jax.TANH"),
    _case("rnn_step-act", lambda: lj.rnn_step(R, C0, XS[0], "Tanhh"), ValueError, "activation='Tanhh'"),
    _case("rnn_step_jacobian-act", lambda: lj.rnn_step_jacobian(R, C0, XS[0], "softplus"), ValueError,
          "activation='softplus'"),
    _case("rnn_step_jacobians-act", lambda: lj.rnn_step_jacobians(R, C0, XS, 1.0), TypeError, "activation is a float"),
    _case("rnn_flow_map-act", lambda: lj.rnn_flow_map(R, XS, "gelu"), ValueError, "activation='gelu'"),
    _case("parallel_run_rnn-act", lambda: lj.parallel_run_rnn(R, C0, XS, "relu"), ValueError, "activation='relu'"),
    # --- mode -----------------------------------------------------------------------------------------
    _case("parallel_lstm-mode-sparse", lambda: lj.parallel_run_lstm(P, S, XS, mode="sparse"), ValueError,
          "mode='sparse' is not a known mode", "['dense', 'diagonal']"),
    _case("parallel_lstm-mode-int", lambda: lj.parallel_run_lstm(P, S, XS, mode=1), TypeError, "mode is a int",
          "lstm_jax.DENSE"),
    _case("parallel_rnn-mode-none", lambda: lj.parallel_run_rnn(R, C0, XS, mode=None), TypeError, "mode is a NoneType"),
    _case("solve_linear_recurrence-mode", lambda: lj.solve_linear_recurrence(jnp.ones((5, 3)), jnp.ones((5, 3)),
                                                                              jnp.zeros(3), "diag"),
          ValueError, "mode='diag'"),
    # --- parallel: tol, max_iter ----------------------------------------------------------------------
    _case("tol-inf", lambda: lj.parallel_run_lstm(P, S, XS, tol=float("inf")), ValueError,
          "tol must be a finite relative tolerance in (0, 0.01]", "got inf"),
    _case("tol-nan", lambda: lj.parallel_run_lstm(P, S, XS, tol=float("nan")), ValueError, "tol", "got nan"),
    _case("tol-0", lambda: lj.parallel_run_rnn(R, C0, XS, tol=0.0), ValueError, "tol", "got 0"),
    _case("tol-negative", lambda: lj.parallel_run_rnn(R, C0, XS, tol=-1e-6), ValueError, "tol", "got -1e-06"),
    _case("tol-1", lambda: lj.parallel_run_lstm(P, S, XS, tol=1.0), ValueError, "tol", "got 1"),
    _case("tol-str", lambda: lj.parallel_run_lstm(P, S, XS, tol="1e-6"), TypeError, "tol", "got str '1e-6'"),
    _case("tol-bool", lambda: lj.parallel_run_lstm(P, S, XS, tol=True), TypeError, "tol", "got bool True"),
    _case("max_iter-2.7", lambda: lj.parallel_run_lstm(P, S, XS, max_iter=2.7), TypeError,
          "max_iter must be an int in 1..2147483647", "got float 2.7"),
    _case("max_iter-0", lambda: lj.parallel_run_rnn(R, C0, XS, max_iter=0), ValueError, "max_iter", "got 0"),
    _case("max_iter-negative", lambda: lj.parallel_run_rnn(R, C0, XS, max_iter=-4), ValueError, "max_iter", "got -4"),
    _case("max_iter-bool", lambda: lj.parallel_run_lstm(P, S, XS, max_iter=True), TypeError, "max_iter", "got bool"),
    _case("max_iter-str", lambda: lj.parallel_run_lstm(P, S, XS, max_iter="10"), TypeError, "max_iter", "got str"),
    # --- zero_state -----------------------------------------------------------------------------------
    _case("zero_state--1", lambda: lj.zero_state(-1), ValueError, "n must be an int >= 1", "got -1"),
    _case("zero_state-0", lambda: lj.zero_state(0), ValueError, "n must be an int >= 1", "got 0"),
    _case("zero_state-3.5", lambda: lj.zero_state(3.5), TypeError, "n must be an int >= 1", "got float 3.5"),
    _case("zero_state-str", lambda: lj.zero_state("4"), TypeError, "n must be an int", "got str '4'"),
    _case("zero_state-bool", lambda: lj.zero_state(True), TypeError, "n must be an int", "got bool True"),
    _case("zero_state-dtype-int", lambda: lj.zero_state(4, jnp.int32), TypeError, "dtype must be a floating dtype",
          "got int32"),
    _case("zero_state-dtype-float8", lambda: lj.zero_state(4, F8), TypeError, "dtype must be a floating dtype",
          "got float8_e4m3fn"),
    _case("zero_state-dtype-complex", lambda: lj.zero_state(4, jnp.complex64), TypeError, "dtype", "got complex64"),
    _case("zero_state-dtype-none", lambda: lj.zero_state(4, None), TypeError, "dtype must be a floating dtype",
          "got None"),
    _case("zero_state-dtype-junk", lambda: lj.zero_state(4, "float33"), TypeError, "dtype", "float33"),
    # --- init_lstm / init_rnn -------------------------------------------------------------------------
    _case("init_lstm-n-3.5", lambda: lj.init_lstm(KEY, 3.5, 2), TypeError, "n must be an int >= 1", "got float 3.5"),
    _case("init_lstm-n-0", lambda: lj.init_lstm(KEY, 0, 2), ValueError, "n must be an int >= 1", "got 0"),
    _case("init_lstm-m--1", lambda: lj.init_lstm(KEY, 3, -1), ValueError, "m must be an int >= 1", "got -1"),
    _case("init_lstm-n-bool", lambda: lj.init_lstm(KEY, True, 2), TypeError, "n must be an int", "got bool"),
    _case("init_lstm-key-0", lambda: lj.init_lstm(0, 3, 2), TypeError, "key must be a PRNG key",
          "jax.random.key(0)", "got int 0"),
    _case("init_rnn-key-0", lambda: lj.init_rnn(0, 3, 2), TypeError, "key must be a PRNG key", "got int 0"),
    _case("init_lstm-key-none", lambda: lj.init_lstm(None, 3, 2), TypeError, "key must be a PRNG key", "NoneType"),
    _case("init_lstm-key-float", lambda: lj.init_lstm(jnp.zeros(2), 3, 2), TypeError, "key must be a PRNG key",
          "dtype float"),
    _case("init_lstm-key-batch", lambda: lj.init_lstm(jax.random.split(KEY, 3), 3, 2), ValueError,
          "key has shape (3, 2)", "one raw uint32 PRNG key of shape (2,)"),
    _case("init_rnn-typed-key-batch", lambda: lj.init_rnn(jax.random.split(jax.random.key(0), 2), 3, 2), ValueError,
          "key has shape (2,)", "one PRNG key (shape ())"),
    _case("init_lstm-scale-nan", lambda: lj.init_lstm(KEY, 3, 2, scale=float("nan")), ValueError, "scale", "got nan"),
    _case("init_rnn-scale-inf", lambda: lj.init_rnn(KEY, 3, 2, scale=float("inf")), ValueError, "scale", "got inf"),
    _case("init_rnn-scale-str", lambda: lj.init_rnn(KEY, 3, 2, scale="2"), TypeError, "scale", "got str"),
    _case("init_lstm-forget_bias-inf", lambda: lj.init_lstm(KEY, 3, 2, forget_bias=float("inf")), ValueError,
          "forget_bias", "got inf"),
    _case("init_lstm-bias-str", lambda: lj.init_lstm(KEY, 3, 2, bias="yes"), TypeError, "bias must be a bool",
          "got str 'yes'"),
    _case("init_lstm-dtype-float8", lambda: lj.init_lstm(KEY, 3, 2, dtype=F8), TypeError,
          "dtype must be a floating dtype (float32, float64, bfloat16 or float16)", "got float8_e4m3fn"),
    _case("init_rnn-dtype-int", lambda: lj.init_rnn(KEY, 3, 2, dtype=jnp.int32), TypeError, "dtype", "got int32"),
    # --- array dtypes and kinds -----------------------------------------------------------------------
    _case("xs-float8", lambda: lj.run_lstm(P, S, XS.astype(F8)), TypeError, "xs has dtype float8_e4m3fn",
          "float32, float64, bfloat16 or float16"),
    _case("params-float8", lambda: lj.run_rnn(R._replace(W_rec=R.W_rec.astype(F8)), C0, XS), TypeError,
          "params.W_rec has dtype float8_e4m3fn"),
    _case("xs-complex", lambda: lj.run_rnn(R, C0, XS.astype(jnp.complex64)), TypeError, "xs has dtype complex64"),
    _case("xs-none", lambda: lj.run_lstm(P, S, None), TypeError, "xs is a NoneType", "floating array"),
    _case("xs-str", lambda: lj.run_lstm(P, S, "abc"), TypeError, "xs is a str"),
    _case("xs-dict", lambda: lj.run_lstm(P, S, {"x": XS}), TypeError, "xs is a dict"),
    _case("xs-ragged", lambda: lj.run_rnn(R, C0, [[1.0, 2.0, 3.0], [1.0]]), TypeError, "xs (list) cannot be read"),
    _case("jacs-int", lambda: lj.gradient_flow_norms(jnp.ones((3, 4, 4), jnp.int32)), TypeError,
          "jacs has dtype int32"),
    _case("jacs-float8", lambda: lj.lyapunov(JACS.astype(F8)), TypeError, "jacs has dtype float8_e4m3fn"),
    # --- lstm_flow_map --------------------------------------------------------------------------------
    _case("lstm_flow_map-odd", lambda: lj.lstm_flow_map(P, XS)(jnp.zeros(7)), ValueError,
          "s0 has shape (7,)", "(2n,) (even length)"),
    _case("lstm_flow_map-rank2", lambda: lj.lstm_flow_map(P, XS)(jnp.zeros((2, 4))), ValueError,
          "s0 has shape (2, 4) (rank 2)", "(2n,)"),
    _case("lstm_flow_map-wrong-n", lambda: lj.lstm_flow_map(P, XS)(jnp.zeros(6)), ValueError,
          "state0.h has shape (3,)", "(4,)"),
    _case("lstm_flow_map-int", lambda: lj.lstm_flow_map(P, XS)(jnp.zeros(8, jnp.int32)), TypeError,
          "s0 has dtype int32"),
    # --- check_finite ---------------------------------------------------------------------------------
    _case("check_finite-complex-nan", lambda: lj.check_finite(jnp.array([1 + 1j, complex(np.nan, 0)]), "z"),
          ValueError, "z has 1 non-finite entries", "out of 2"),
    _case("check_finite-complex-inf-imag", lambda: lj.check_finite(np.array([complex(0, np.inf)]), "z"), ValueError,
          "z has 1 non-finite"),
    _case("check_finite-bfloat16-nan", lambda: lj.check_finite(jnp.array([1.0, jnp.nan], jnp.bfloat16), "b"),
          ValueError, "b has 1 non-finite"),
    _case("check_finite-float16-inf", lambda: lj.check_finite({"w": jnp.array([jnp.inf], jnp.float16)}, "p"),
          ValueError, "p['w'] has 1 non-finite"),
    # --- lyapunov / flow --------------------------------------------------------------------------------
    _case("lyapunov-q0-zeros", lambda: lj.lyapunov(JACS, k=2, q0=jnp.zeros((4, 2))), ValueError,
          "q0 (shape (4, 2)) must have 2 linearly independent finite columns"),
    _case("lyapunov-q0-dependent", lambda: lj.lyapunov(JACS, k=2, q0=jnp.ones((4, 2))), ValueError,
          "q0", "rank-deficient"),
    _case("lyapunov-q0-nan", lambda: lj.lyapunov(JACS, k=1, q0=jnp.full((4, 1), jnp.nan)), ValueError,
          "q0", "non-finite"),
    _case("lyapunov-q0-shape", lambda: lj.lyapunov(JACS, k=2, q0=jnp.eye(4, 3)), ValueError,
          "q0 has shape (4, 3)", "(4, 2)"),
    _case("lyapunov-k-0", lambda: lj.lyapunov(JACS, k=0), ValueError, "k must be an int in 1..4", "got 0"),
    _case("lyapunov-k-float", lambda: lj.lyapunov(JACS, k=2.5), TypeError, "k must be an int in 1..4", "got float 2.5"),
    _case("lyapunov-k-bool", lambda: lj.lyapunov(JACS, k=True), TypeError, "k must be an int", "got bool"),
    _case("lyapunov-k-too-big", lambda: lj.lyapunov(JACS, k=5), ValueError, "k must be an int in 1..4", "got 5"),
    _case("gradient_flow_norms-rank2", lambda: lj.gradient_flow_norms(jnp.eye(4)), ValueError,
          "jacs has shape (4, 4) (rank 2)", "(T, d, d)"),
    _case("gradient_flow_norms-nonsquare", lambda: lj.gradient_flow_norms(jnp.ones((3, 4, 5))), ValueError,
          "jacs has shape (3, 4, 5)", "square"),
    _case("gradient_flow_norms-empty", lambda: lj.gradient_flow_norms(jnp.ones((0, 4, 4))), ValueError,
          "jacs has shape (0, 4, 4)", "axis T is empty"),
    _case("lag_map-select", lambda: lj.lag_map(JACS, select="cc"), TypeError, "select is a str", "function"),
    _case("unfuse-n-float", lambda: lj.unfuse_lstm_params(lj.fuse_lstm_params(P), 3.5), TypeError,
          "n must be an int >= 1", "got float 3.5"),
    _case("unfuse-n-0", lambda: lj.unfuse_lstm_params(lj.fuse_lstm_params(P), 0), ValueError, "n must be", "got 0"),
    _case("lstm_terms_along-terms-str", lambda: lj.lstm_terms_along(P, S, XS, "published"), TypeError,
          "terms is a str ('published')", "lstm_jax.article_terms_published"),
    _case("check_finite-name-int", lambda: lj.check_finite(XS, 3), TypeError, "name must be a str", "got int 3"),
    _case("init_lstm-n-too-big-for-memory", lambda: lj.init_lstm(KEY, 10**7, 2), ValueError,
          "init_lstm(n=10000000, m=2) parameters need about", "GiB of memory", "available"),
    _case("init_rnn-n-too-big-for-memory", lambda: lj.init_rnn(KEY, 10**7, 2), ValueError,
          "init_rnn(n=10000000, m=2) parameters need about"),
    _case("max_iter-beyond-int32", lambda: lj.parallel_run_lstm(P, S, XS, max_iter=10**12), ValueError,
          "max_iter must be an int in 1..2147483647", "got 1000000000000"),
    _case("suffix_products-nonsquare", lambda: lj.suffix_products(jnp.ones((2, 3, 2))), ValueError,
          "jacs has shape (2, 3, 2)"),
]


@pytest.mark.parametrize("call, exc, fragments", CORE)
def test_core_bad_input_raises_a_clear_error_naming_the_argument(call, exc, fragments):
    pattern = ".*".join(re.escape(f) for f in fragments)
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert type(info.value) is exc  # exactly the documented type (not a JAX-internal subclass)


def test_the_unroll_hang_is_refused_before_any_compilation():
    """issue 12: unroll=0 over T = 3000 compiled for minutes; now the error comes from the argument check."""
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="unroll"):
        jax.jit(lambda x: lj.run_lstm(P, S, x, unroll=0))(LONG)
    assert time.perf_counter() - t0 < 5.0


# ----------------------------------------------------------------------------- accepted spellings (valid cases)


def test_documented_names_are_accepted_and_equal_the_objects():
    np.testing.assert_array_equal(lj.run_rnn(R, C0, XS, "tanh")[1], lj.run_rnn(R, C0, XS, lj.TANH)[1])
    np.testing.assert_array_equal(lj.rnn_step_jacobians(R, C0, XS, "sigmoid"), lj.rnn_step_jacobians(R, C0, XS))
    a, _ = lj.parallel_run_lstm(P, S, XS, mode="diagonal")
    b, _ = lj.parallel_run_lstm(P, S, XS, mode=lj.DIAGONAL)
    np.testing.assert_array_equal(a.c, b.c)


def test_numpy_bool_remat_is_a_bool_and_numpy_ints_are_ints():
    ref = lj.run_lstm(P, S, XS)[1].h
    np.testing.assert_array_equal(lj.run_lstm(P, S, XS, remat=np.True_)[1].h, ref)
    np.testing.assert_array_equal(lj.run_lstm(P, S, XS, unroll=np.int64(5))[1].h, ref)
    assert lj.zero_state(np.int32(3)).h.shape == (3,)
    assert lj.init_lstm(jax.random.key(1), np.int64(3), 2).W_f.shape == (3, 5)  # typed keys work too


def test_parallel_run_capped_is_never_reported_converged():
    """A cap of 1 Newton iteration on a 5-step LSTM cannot meet 16 eps: converged False, fell back, exact."""
    p = lj.init_lstm(KEY, 4, 3, scale=2.0, dtype=jnp.float64)
    s0, xs = lj.zero_state(4, jnp.float64), jax.random.normal(KEY, (40, 3), jnp.float64)
    with pytest.warns(RuntimeWarning, match="fell back"):
        traj, info = lj.parallel_run_lstm(p, s0, xs, mode="diagonal", max_iter=1)
        jax.block_until_ready(traj)
    assert int(info.iterations) == 1 and not bool(info.converged) and bool(info.fell_back)
    np.testing.assert_array_equal(traj.c, lj.run_lstm(p, s0, xs)[1].c)


# ----------------------------------------------------------------------------- command line


def _no_files(path):
    return [p.name for p in path.iterdir()] if path.exists() else []


FLOW_BAD = [
    (["--T", "-5"], "--T must be an int >= 2", "got -5"),
    (["--T", "0"], "--T must be an int >= 2", "got 0"),
    (["--T", "1"], "--T must be an int >= 2", "got 1"),
    (["--n", "0"], "--n must be an int >= 1", "got 0"),
    (["--n", "-3"], "--n must be an int >= 1", "got -3"),
    (["--m", "0"], "--m must be an int >= 1", "got 0"),
    (["--seed", "-1"], "--seed must be an int in 0..9223372036854775807", "got -1"),
    (["--seed", str(2**64)], "--seed must be an int in 0..", "got 18446744073709551616"),
    (["--n", "60000"], "--T 200 --n 60000 --m 8 needs about", "GiB of memory", "reduce --n or --T"),
    (["--T", "100000000", "--n", "64"], "needs about", "GiB", "available"),
    (["--T", "x"], "argument --T: invalid int value: 'x'"),
    (["--n", "3.5"], "argument --n: invalid int value: '3.5'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("opts, fragments", [pytest.param(o, f, id=" ".join(o)) for o, *f in FLOW_BAD])
def test_flow_bad_option_is_one_line_exit_2_and_no_file(tmp_path, capsys, opts, fragments):
    out = tmp_path / "out"
    code = cli.main(["flow", "--out", str(out), *opts])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(".*".join(re.escape(f) for f in fragments), err), err
    assert "Traceback" not in err
    assert _no_files(out) == []


def test_flow_output_path_problems_exit_3_before_computing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    t0 = time.perf_counter()
    assert cli.main(["flow", "--out", str(blocker)]) == 3
    assert cli.main(["flow", "--out", str(blocker / "sub")]) == 3
    clash = tmp_path / "clash"
    (clash / "terms.png").mkdir(parents=True)
    assert cli.main(["flow", "--out", str(clash)]) == 3
    assert time.perf_counter() - t0 < 10  # refused up front: the full report takes ~50 s
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("lstm-jax flow: I/O error: --out:") for line in err), err
    assert "exists and is not a folder" in err[0] and "'terms.png'" not in err[0]
    assert "is a folder; expected a file path" in err[2]
    assert blocker.read_text() == "keep" and sorted(_no_files(clash)) == ["terms.png"]


def test_flow_failure_leaves_an_existing_report_unchanged(tmp_path, capsys):
    (tmp_path / "flow.json").write_text('{"old": true}\n')
    assert cli.main(["flow", "--out", str(tmp_path), "--T", "1"]) == 2
    assert json.loads((tmp_path / "flow.json").read_text()) == {"old": True}
    assert _no_files(tmp_path) == ["flow.json"]


@pytest.mark.parametrize("argv, code, fragment", [
    (["flow", "--T", "-5"], 2, "lstm-jax flow: error: --T must be an int >= 2"),
    (["flow", "--n", "60000"], 2, "needs about"),
])
def test_flow_bad_options_in_a_subprocess_print_no_traceback(tmp_path, argv, code, fragment):
    out = subprocess.run([sys.executable, "-m", "lstm_jax", *argv, "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == code
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "o").exists() or _no_files(tmp_path / "o") == []


def test_main_returns_argparse_codes_in_process(capsys):
    assert cli.main(["flow", "--help"]) == 0
    assert cli.main(["nonsense"]) == 2
    assert cli.main([]) == 2


# ----------------------------------------------------------------------------- atomic outputs


def test_atomic_outputs_publish_nothing_when_the_block_fails(tmp_path):
    (tmp_path / "a.json").write_text("old a")
    with pytest.raises(ZeroDivisionError):
        with AtomicOutputs() as out:
            out.write(tmp_path / "a.json", "new a")
            out.write_with(tmp_path / "b.bin", lambda p: p.write_bytes(b"new b"))
            1 / 0
    assert (tmp_path / "a.json").read_text() == "old a"
    assert _no_files(tmp_path) == ["a.json"]  # no b.bin, no temporary files


def test_atomic_outputs_refuse_before_the_first_rename_when_a_target_is_a_folder(tmp_path):
    (tmp_path / "z.png").mkdir()
    with pytest.raises(IsADirectoryError, match="z.png"):
        with AtomicOutputs() as out:
            out.write(tmp_path / "a.json", "a")
            out.write_with(tmp_path / "z.png", lambda p: p.write_bytes(b"z"))
    assert sorted(_no_files(tmp_path)) == ["z.png"]


def test_published_files_get_umask_permissions_not_mkstemp_0600(tmp_path):
    atomic_write(tmp_path / "x.txt", "x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    (tmp_path / "x.txt").chmod(0o640)
    atomic_write(tmp_path / "x.txt", "y")  # replacing keeps the old file's permissions
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o640


_WRITER = textwrap.dedent("""
    import json, sys, time
    from lstm_jax.outputs import AtomicOutputs, atomic_write
    target, mode = sys.argv[1], sys.argv[2]
    if mode == "stall":  # a large file half written, then the process hangs until it is killed
        def slow(path):
            with open(path, "wb") as fh:
                fh.write(b'{"new": "' + b"x" * 8_000_000)
                fh.flush()
                print("half-written", flush=True)
                time.sleep(600)
        with AtomicOutputs() as out:
            out.write_with(target, slow)
    else:  # rewrite the file over and over with complete documents of 8 MB
        print("looping", flush=True)
        i = 0
        while True:
            i += 1
            atomic_write(target, json.dumps({"version": i, "pad": "y" * 8_000_000}))
""")


@pytest.mark.parametrize("mode", ["stall", "loop"])
def test_sigkill_mid_write_leaves_the_old_file_or_a_complete_new_one(tmp_path, mode):
    """SIGKILL cannot be caught: the target must hold a complete document (the old one, or for the loop a whole
    new version).  A stray hidden ``.NAME.*.tmp`` may remain (documented, docs/guide/errors.md)."""
    target = tmp_path / "report.json"
    target.write_text(json.dumps({"old": True}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), mode], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() in (b"half-written", b"looping")
        if mode == "loop":
            time.sleep(1.0)  # many replacements have happened; the kill lands at a random point of one
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads(target.read_text())  # valid JSON, never a torn file
    if mode == "stall":
        assert doc == {"old": True}
        strays = [p.name for p in tmp_path.iterdir() if p.name != "report.json"]
        assert all(re.fullmatch(r"\.report\.json\..+\.tmp(\.json)?", s) for s in strays) and strays
    else:
        assert doc == {"old": True} or (doc["version"] >= 1 and len(doc["pad"]) == 8_000_000)


@pytest.mark.parametrize("kwargs, exc, arg", [
    ({"key": 0}, TypeError, "key"),
    ({"n": 3.5}, TypeError, "n"),
    ({"n": 0}, ValueError, "n"),
    ({"m": -1}, ValueError, "m"),
    ({"scale": "big"}, TypeError, "scale"),
    ({"bias": "yes"}, TypeError, "bias"),
    ({"dtype": jnp.int32}, TypeError, "dtype"),
    ({"n": 10**6, "m": 10**6}, ValueError, "init_gru"),
])
def test_init_gru_validates_like_init_lstm_and_init_rnn(kwargs, exc, arg):
    """init_gru shares the init argument checks (check_init_args) of init_lstm / init_rnn."""
    args = {"key": jax.random.PRNGKey(0), "n": 4, "m": 3, **kwargs}
    with pytest.raises(exc, match=arg):
        lj.init_gru(**args)
