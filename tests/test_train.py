"""Training experiments (lstm_jax.experiments): padding exactness, the model variants (no-forget 1997 cell,
frozen forget gate, chrono), the gradient-flossing penalty vs an independent QR loss and finite
differences, the per-step gradient decomposition vs jax.grad, a short run that must learn, the forget-gate
claim's verdict rules, and the train CLI (bad input: exit 2, nothing written; outputs; a resumable sweep)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import TANH, lstm_gates, rnn_step, run_lstm, zero_state
from lstm_jax import cli
from lstm_jax.experiments import (
    MODELS,
    ModelSpec,
    TrainSettings,
    adding_problem_1997,
    floss_penalty,
    init_model,
    loss_terms,
    train_run,
)
from lstm_jax.experiments._train import load_params
from lstm_jax.experiments._flow_during import _log_norm_from, diagnostic_batch, per_step_gradients
from lstm_jax.experiments._forget_claim import verdict
from lstm_jax.experiments._models import (final_states, final_states_batch, forget_gate_is_one, make_optimizer,
                                          parameter_count)

F64 = jnp.float64


def _to(tree, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def test_right_padding_is_exact_the_readout_takes_each_sequences_own_last_step():
    spec = ModelSpec("lstm-bf1", "adding-1997", 20, 6)
    p = _to(init_model(jax.random.PRNGKey(0), spec), F64)
    b = _to(adding_problem_1997(jax.random.PRNGKey(1), 16, 20), F64)
    got = final_states(p, b.xs, b.lengths, spec.model)
    assert set(np.asarray(b.lengths).tolist()) == {20, 21, 22}  # every length T..T+T/10 in the batch
    for i in range(16):
        L = int(b.lengths[i])
        ref = run_lstm(p["cell"], zero_state(6, F64), b.xs[i, :L])[0].h  # the unpadded sequence alone
        np.testing.assert_allclose(got[i], ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("model", ["lstm-chrono", "rnn-tanh"])
def test_training_objective_on_the_batch_runners_equals_the_reference_runners_float64(model):
    spec = ModelSpec(model, "adding-1997", 20, 6)
    p = _to(init_model(jax.random.PRNGKey(0), spec), F64)
    b = _to(adding_problem_1997(jax.random.PRNGKey(1), 16, 20), F64)
    ref = jax.value_and_grad(lambda q: loss_terms(q, b, spec)[0])(p)
    fast = jax.value_and_grad(lambda q: loss_terms(q, b, spec, final_states_batch)[0])(p)
    for a, c in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)


def test_lstm_1997_has_f_identically_one_and_no_gradient_reaches_its_forget_parameters():
    spec = ModelSpec("lstm-1997", "adding-1997", 12, 8)
    p = init_model(jax.random.PRNGKey(0), spec)  # float32
    assert forget_gate_is_one(p)
    b = adding_problem_1997(jax.random.PRNGKey(1), 32, 12)
    traj = run_lstm(p["cell"], zero_state(8), b.xs[0])[1]
    h_prev = jnp.concatenate([jnp.zeros((1, 8), jnp.float32), traj.h[:-1]])
    f = jax.vmap(lambda h, x: lstm_gates(p["cell"], h, x).f)(h_prev, b.xs[0])
    assert f.dtype == jnp.float32 and bool(jnp.all(f == 1.0))  # exactly 1 in float32, not just close
    g = jax.grad(lambda q: loss_terms(q, b, spec)[0])(p)
    assert float(jnp.max(jnp.abs(g["cell"].W_f))) == 0.0 and float(jnp.max(jnp.abs(g["cell"].b_f))) == 0.0
    assert float(jnp.max(jnp.abs(g["cell"].W_i))) > 0
    trainable, total = parameter_count(p, spec.model)
    assert total - trainable == 8 * (8 + 2) + 8  # W_f and b_f excluded


def test_the_tested_parameters_are_those_that_scored_the_last_training_batch():
    """No update after the stopping rule (or the budget) ends a run: the parameters scored on the test set are
    the ones the last training batch was scored with, one Adam step before the optimiser's final state."""
    from lstm_jax.experiments._train import count_test_errors, make_chunk

    spec = ModelSpec("lstm-bf1", "adding-1997", 10, 4)
    settings = TrainSettings(batch=8, budget=320, check_every=20, diagnostics=False)
    r = train_run(spec, 0, settings)
    k_init, k_data, _ = jax.random.split(jax.random.PRNGKey(0), 3)
    opt, chunk = make_chunk(spec, settings)
    p = init_model(k_init, spec)
    state = opt.init(p)
    p, state, _, _, _ = chunk(p, state, k_data, 0)
    after, _, errs, _, scored = chunk(p, state, k_data, 20)
    leaves = lambda t: jax.tree_util.tree_leaves(t)  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(leaves(r.params), leaves(scored)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(r.params), leaves(after)))
    # the scored parameters reproduce the errors the window recorded for the last batch
    from lstm_jax.experiments._tasks import check_task

    last = check_task(spec.task)[0](jax.random.fold_in(k_data, 39), 8, spec.T)
    np.testing.assert_allclose(loss_terms(scored, last, spec)[1], errs[-1], rtol=1e-6)
    assert len(r.test_errors_last_checks) == 2 and r.test_errors_last_checks[-1] == r.test_errors
    assert r.test_errors == count_test_errors(scored, spec)


def test_forget_bias_models_start_with_their_bias_and_stay_out_of_the_main_sweep():
    from lstm_jax.experiments._models import FORGET_BIAS_MODELS, LSTM_MODELS
    from lstm_jax.experiments._sweep import sweep_plan

    for m in FORGET_BIAS_MODELS:
        p = init_model(jax.random.PRNGKey(0), ModelSpec(m, "adding-1997", 100, 4))
        np.testing.assert_array_equal(p["cell"].b_f, float(m[len("lstm-bf"):]))
        assert m in MODELS and m not in LSTM_MODELS
    assert not {m for m, _, _ in sweep_plan([])} & set(FORGET_BIAS_MODELS)
    plan = sweep_plan([], Ts=[100], models=("lstm-bf0", "lstm-bf1") + FORGET_BIAS_MODELS, seeds=10)
    assert len(plan) == 70 and {m for m, _, _ in plan} == {"constant", "lstm-bf0", "lstm-bf1", *FORGET_BIAS_MODELS}


def test_every_planned_T_and_seed_gets_its_constant_control_before_its_first_run():
    from lstm_jax.experiments._sweep import sweep_plan

    plan = sweep_plan([], Ts=[100, 500], models=["lstm-chrono", "lstm-1997-ib"], seeds=2)
    for T in (100, 500):
        for s in range(2):
            i = plan.index(("constant", T, s))
            assert i < min(plan.index((m, T, s)) for m in ("lstm-chrono", "lstm-1997-ib"))
    assert len(plan) == 12
    done = [{"model": "lstm-bf0", "T": 25, "seed": 3}]
    assert sweep_plan(done, models=["constant"]) == [("constant", 25, 3)]  # controls of finished runs only


def test_the_constant_control_learns_the_target_mean_from_the_same_stream_and_predicts_nothing_else():
    from lstm_jax.experiments._train import test_scores

    spec = ModelSpec("constant", "adding-1997", 20, 4)
    r = train_run(spec, 3, TrainSettings(batch=16, budget=16 * 400, check_every=20))
    assert set(r.params) == {"b_out"} and r.test_prediction_std == 0.0
    # the target's mean is 0.5 (0.5 + (X1 + X2)/4, X ~ U[-1, 1]); Adam at lr 0.01 from 0 gets there in 400 steps
    assert abs(float(r.params["b_out"][0]) - 0.5) < 0.03
    assert r.test_errors == test_scores(r.params, spec)[0] > 2000  # a constant is right only near its value
    assert all("lyapunov" not in p for p in r.curves["points"])  # no cell: no gradient-flow snapshot


def test_the_torch_replica_trains_the_same_model_on_the_same_batches_as_jax():
    pytest.importorskip("torch")
    settings = TrainSettings(batch=8, budget=8 * 40, check_every=20, diagnostics=False)
    jx = train_run(ModelSpec("lstm-chrono", "adding-1997", 20, 6), 1, settings)
    pt = train_run(ModelSpec("torch-lstm-chrono", "adding-1997", 20, 6), 1, settings)
    # 40 Adam steps apart only by float32 rounding of two frameworks (measured: 2e-7 over 200 steps at n = 16)
    for a, b in zip(jax.tree_util.tree_leaves(jx.params), jax.tree_util.tree_leaves(pt.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    assert jx.test_errors_last_checks == pt.test_errors_last_checks
    p0 = init_model(jax.random.split(jax.random.PRNGKey(1), 3)[0], ModelSpec("lstm-chrono", "adding-1997", 20, 6))
    assert float(jnp.max(jnp.abs(pt.params["cell"].W_c - p0["cell"].W_c))) > 1e-3  # it did train


@pytest.mark.parametrize("model", ["lstm-1997", "lstm-frozen-forget", "lstm-1997-ib"])
def test_frozen_forget_parameters_do_not_move_under_adam_while_the_rest_does(model):
    spec = ModelSpec(model, "adding-1997", 10, 4)
    r = train_run(spec, 0, TrainSettings(batch=8, budget=160, check_every=20, diagnostics=False))
    p0 = init_model(jax.random.split(jax.random.PRNGKey(0), 3)[0], spec)
    np.testing.assert_array_equal(r.params["cell"].W_f, p0["cell"].W_f)
    np.testing.assert_array_equal(r.params["cell"].b_f, p0["cell"].b_f)
    assert float(jnp.max(jnp.abs(r.params["cell"].W_c - p0["cell"].W_c))) > 1e-3
    # a large gradient on the frozen leaves still gives a zero update (optax multi_transform/set_to_zero)
    opt = make_optimizer(model, p0, 1e-2, 1.0)
    g = jax.tree_util.tree_map(lambda a: jnp.full_like(a, 100.0), p0)
    upd, _ = opt.update(g, opt.init(p0), p0)
    assert float(jnp.max(jnp.abs(upd["cell"].W_f))) == 0 and float(jnp.max(jnp.abs(upd["cell"].W_i))) > 0


def test_chrono_initialisation_draws_log_uniform_forget_biases_and_opposite_input_biases():
    c = init_model(jax.random.PRNGKey(3), ModelSpec("lstm-chrono", "adding-1997", 500, 256))["cell"]
    assert float(c.b_f.min()) >= 0 and float(c.b_f.max()) <= np.log(499)
    np.testing.assert_array_equal(c.b_i, -c.b_f)
    u = np.exp(np.asarray(c.b_f, np.float64))  # U(1, 499): mean 250, sd 144 -> 256 draws, 4 sigma
    assert abs(u.mean() - 250) < 4 * 144 / 16


def _qr_penalty_reference(p, xs, k):
    """Engelken's flossing loss written independently: Jacobians by jax.jacfwd of rnn_step, a scan of
    QR steps, sum of squared exponents (summed over sequences, divided by their number)."""
    n = p.W_rec.shape[0]
    total = 0.0
    for x in xs:
        def step(carry, x_t):  # one QR step (a scan body: the compiled graph stays small)
            c, Q, logs = carry
            J = jax.jacfwd(lambda c_: rnn_step(p, c_, x_t, TANH))(c)
            Q, R = jnp.linalg.qr(J @ Q)
            return (rnn_step(p, c, x_t, TANH), Q, logs + jnp.log(jnp.abs(jnp.diagonal(R)))), None

        (_, _, logs), _ = jax.lax.scan(step, (jnp.zeros(n, F64), jnp.eye(n, k, dtype=F64), jnp.zeros(k, F64)), x)
        total = total + jnp.sum((logs / x.shape[0]) ** 2)
    return total / xs.shape[0]


def test_flossing_penalty_and_its_gradient_match_an_independent_qr_loss_and_finite_differences():
    """Claim (Engelken 2023 as implemented): the penalty is sum_i lambda_i^2 over the k leading exponents,
    differentiable through QR.  float64; tolerance 1e-10 relative (same maths, different op order, ~10-step
    products) and 1e-6 for central differences with h = 1e-6 (truncation ~h^2, rounding ~1e-16/h)."""
    spec = ModelSpec("rnn-floss", "adding-1997", 6, 5)
    p = _to(init_model(jax.random.PRNGKey(4), spec)["cell"], F64)
    p = p._replace(W_rec=1.5 * p.W_rec)
    xs = _to(adding_problem_1997(jax.random.PRNGKey(5), 2, 6), F64).xs[:, :6]
    k = 3
    penalty = jax.jit(floss_penalty, static_argnums=2)
    val = penalty(p, xs, k)
    reference = jax.jit(_qr_penalty_reference, static_argnums=2)
    ref = reference(p, xs, k)
    assert abs(float(val - ref)) <= 1e-10 * abs(float(ref)) and float(ref) > 1e-3
    g = jax.jit(jax.grad(floss_penalty), static_argnums=2)(p, xs, k)
    g_ref = jax.jit(jax.grad(_qr_penalty_reference), static_argnums=2)(p, xs, k)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
        assert float(jnp.linalg.norm(a - b)) <= 1e-10 * float(jnp.linalg.norm(b))
    d = jax.tree_util.tree_map(lambda a: jax.random.normal(jax.random.PRNGKey(6), a.shape, F64), p)
    h = 1e-6
    shift = lambda s: jax.tree_util.tree_map(lambda a, b: a + s * b, p, d)  # noqa: E731
    fd = (penalty(shift(h), xs, k) - penalty(shift(-h), xs, k)) / (2 * h)
    directional = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(d)))
    assert abs(fd - directional) <= 1e-6 * abs(directional)


@pytest.mark.parametrize("model", ["lstm-bf1", "rnn-tanh"])
def test_per_step_gradient_decomposition_sums_to_jax_grad(model):
    """sum_t g_t (gradient w.r.t. per-step weight copies) == jax.grad through the runner; float64, 1e-12."""
    spec = ModelSpec(model, "adding-1997", 15, 6)
    p = _to(init_model(jax.random.PRNGKey(7), spec), F64)
    b, _ = diagnostic_batch(jax.random.PRNGKey(8), 15, 4)
    b = _to(b, F64)
    g, c_sens, ref = per_step_gradients(p, b, model)
    assert g.shape[0] == 15 and c_sens.shape == (4, 15, 6)
    assert float(jnp.linalg.norm(g.sum(0) - ref)) <= 1e-12 * float(jnp.linalg.norm(ref))
    # and the per-step parts differ (a real decomposition, not one step holding everything)
    assert float(jnp.linalg.norm(g[0])) > 0 and float(jnp.linalg.norm(g[-1])) > 0


def test_rescaled_log_norm_equals_the_direct_product_norm():
    """log ||J_T ... J_{t1+2}||_2 with per-step rescaling == log of the directly multiplied product (float64)."""
    jacs = jax.random.normal(jax.random.PRNGKey(9), (30, 6, 6), F64) / np.sqrt(6)
    for t1 in (0, 5, 17):
        P = jnp.eye(6, dtype=F64)
        for J in jacs[t1 + 1:]:
            P = J @ P
        assert abs(float(_log_norm_from(jacs, jnp.asarray(t1))) - float(jnp.log(jnp.linalg.norm(P, 2)))) < 1e-10


def test_a_short_run_learns_the_1997_adding_problem_at_T_10():
    """Claim: the training loop learns.  MSE of the last 2000 training sequences falls from the chance level
    (target variance 1/24 = 0.042) below 0.01 within 16,000 sequences (lstm-chrono, n = 8, seed 0)."""
    spec = ModelSpec("lstm-chrono", "adding-1997", 10, 8)
    r = train_run(spec, 0, TrainSettings(batch=32, budget=16_000, check_every=25, snapshot_growth=4.0))
    pts = r.curves["points"]
    assert pts[1]["train_mse"] > 0.03  # the first window: chance level
    assert pts[-1]["train_mse"] < 0.01
    assert r.test_errors < 2560 // 2
    assert all(p["decomposition_rel_err"] < 1e-4 for p in pts)  # float32 decomposition vs jax.grad


def test_forget_claim_verdict_rules_on_injected_measurements():
    base = {"f_lag_start": 0.5, "f_other_start": 0.5, "f_other_end": 0.5, "share_start": 0.0, "mse_start": 0.2}
    up = {**base, "f_lag_end": 0.8, "share_end": 0.5, "mse_end": 0.001}
    flat = {**base, "f_lag_end": 0.51, "share_end": 0.01, "mse_end": 0.001}
    closed = {**base, "f_lag_end": 0.45, "share_end": 0.0, "mse_end": 0.04}  # not learned, gate closing
    arm = lambda d, T: {**d, "T": T}  # noqa: E731
    assert verdict({"short": arm(up, 20), "long": arm(up, 50)})[0] == "holds"
    v, s = verdict({"short": arm(flat, 20), "long": arm(up, 50)})
    assert v == "fails as published" and "did not move" in s
    v, s = verdict({"short": arm(up, 20), "long": arm(closed, 50)})
    assert v == "holds only under conditions" and "the gate did not open" in s and "not learned" in s
    assert verdict({"short": arm({**up, "share_end": 0.02}, 20), "long": arm(up, 50)})[0] == \
        "holds only under conditions"
    assert verdict({"short": arm({**up, "f_lag_end": 0.52}, 20), "long": arm(up, 50)})[0] == \
        "holds only under conditions"
    v, s = verdict({"short": arm({**up, "mse_end": 0.04}, 20), "long": arm(up, 50)})
    assert v == "holds only under conditions" and "not learned" in s


BAD = [["train", "--T", "1"], ["train", "--n", "0"], ["train", "--batch", "0"], ["train", "--eval-every", "0"],
       ["sweep", "--Ts", "junk"], ["train", "--seed", str(2**64)], ["train", "--clip", "-1"], ["train", "--lr", "-1"],
       ["train", "--lr", "nan"], ["train", "--lr", "1e30"], ["train", "--steps", "0"], ["train", "--steps", "-5"],
       ["sweep", "--seeds", "0"], ["train", "--forget-bias", "inf"], ["train", "--model", "gru"],
       ["train", "--task", "copy"], ["sweep", "--models", "lstm-bf9"], ["sweep", "--n", "0"],
       ["sweep", "--lr", "nan"]]


@pytest.mark.parametrize("bad", BAD, ids=[" ".join(b) for b in BAD])
def test_train_and_sweep_reject_bad_options_before_any_work(bad, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([*bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lstm-jax {bad[0]}: error: --")
    assert not out.exists()


def test_train_and_sweep_are_separate_subcommands(tmp_path, capsys):
    """The sweep's options are not train's and the other way round (argparse usage error, exit 2); no option is
    taken for an abbreviation of another (``sweep --model`` is not ``--models``: the message names the option
    as unrecognised; the trailing bad --n keeps a regression from starting a sweep)."""
    for argv, option in ((["diagnose", "m.pt", "--bat", "2"], "--bat"), (["sweep", "--model", "lstm-bf1", "--n", "0"], "--model"),
                         (["train", "--sweep"], "--sweep"), (["train", "--Ts", "100"], "--Ts"),
                         (["sweep", "--forget-bias", "3", "--n", "0"], "--forget-bias")):
        assert cli.main([*argv, "--out", str(tmp_path / "a")]) == 2, argv
        assert f"unrecognized arguments: {option}" in capsys.readouterr().err, argv
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_train_cli_single_run_writes_log_and_params_together(tmp_path):
    out = tmp_path / "one"
    assert cli.main(["train", "--T", "10", "--n", "4", "--budget", "640", "--model", "lstm-1997",
                      "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["log.json", "manifest.json", "params.npz"]
    log = json.loads((out / "log.json").read_text())  # strict JSON (no NaN tokens)
    assert log["config"]["T"] == 10 and log["config"]["model"] == "lstm-1997" and log["sequences_seen"] == 640
    like = init_model(jax.random.PRNGKey(0), ModelSpec("lstm-1997", "adding-1997", 10, 4))
    back = load_params(out / "params.npz", like)
    assert forget_gate_is_one(back)
    assert "['cell'].W_f" in np.load(out / "params.npz").files  # the earlier checkpoint key format


def test_sweep_saves_each_run_and_a_rerun_skips_finished_runs(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--Ts", "10", "--models", "rnn-tanh", "--seeds", "2", "--n", "4",
            "--budget", "640", "--out", str(out)]
    assert cli.main(args) == 0
    runs = sorted((out / "runs").glob("*.json"))
    assert [p.name for p in runs] == ["adding-1997_constant_T10_s0.json", "adding-1997_constant_T10_s1.json",
                                      "adding-1997_rnn-tanh_T10_s0.json", "adding-1997_rnn-tanh_T10_s1.json"]
    stamps = [p.stat().st_mtime_ns for p in runs]
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == 2 and [len(s["runs"]) for s in doc["studies"]] == [4]
    assert set(doc["studies"][0]["runs"][0]) >= {"task", "model", "T", "seed", "solved", "sequences", "test_errors",
                                                 "test_prediction_std", "curves"}
    assert "| rnn-tanh | 10 | 0/2 [0.00, 0.84] |" in (out / "README.md").read_text()
    assert (out / "flow_T10.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(args) == 0  # resumed: nothing retrained
    assert [p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*.json"))] == stamps
    assert not [p for p in pathlib.Path(out).rglob(".*.tmp")]


def test_model_ids_are_fixed():
    assert MODELS == ("rnn-tanh", "rnn-sigmoid", "rnn-floss", "lstm-bf0", "lstm-bf1", "lstm-chrono", "lstm-1997",
                      "lstm-frozen-forget", "lstm-1997-ib", "lstm-bf2", "lstm-bf3", "lstm-bf4", "lstm-bf6", "constant",
                      "torch-lstm-bf1", "torch-lstm-chrono", "mingru", "minlstm", "rglru", "mlstm", "slstm")


def test_the_forget_gate_ablation_differs_from_chrono_only_in_the_forget_gate():
    chrono = init_model(jax.random.PRNGKey(3), ModelSpec("lstm-chrono", "adding-1997", 100, 8))
    ib = init_model(jax.random.PRNGKey(3), ModelSpec("lstm-1997-ib", "adding-1997", 100, 8))
    assert forget_gate_is_one(ib) and not forget_gate_is_one(chrono)
    for field in chrono["cell"]._fields:
        same = bool(jnp.all(getattr(chrono["cell"], field) == getattr(ib["cell"], field)))
        assert same == (field not in ("W_f", "b_f")), field
    assert float(jnp.max(ib["cell"].b_i)) < 0  # the input gate starts biased toward closed: b_i = -log u, u > 1
    assert parameter_count(ib, "lstm-1997-ib") == parameter_count(init_model(
        jax.random.PRNGKey(3), ModelSpec("lstm-1997", "adding-1997", 100, 8)), "lstm-1997")




MODERN = ("mingru", "minlstm", "rglru", "mlstm", "slstm")


@pytest.mark.parametrize("model", MODERN)
def test_a_modern_model_reads_each_sequences_own_last_output_and_the_parallel_form_equals_the_scan(model):
    """The readout of a modern cell equals its sequential runner on each unpadded sequence alone (float64); for the
    diagonal linear cells the model runs the parallel form (one associative scan), so this also checks it."""
    import lstm_jax as lj

    spec = ModelSpec(model, "adding-1997", 20, 8)
    p = _to(init_model(jax.random.PRNGKey(0), spec), F64)
    b = _to(adding_problem_1997(jax.random.PRNGKey(1), 6, 20), F64)
    got = final_states(p, b.xs, b.lengths, model)
    cell = lj.cell_of(model)
    q, N, _ = cell.check(p["cell"])
    assert got.shape == (6, 8)
    for i in range(6):
        x = b.xs[i, : int(b.lengths[i])]
        u = x @ p["embed"].T if "embed" in p else x
        traj = lj.run_cell(model, q, cell.zero(N, F64), u)[1]
        ref = cell.outputs(cell.weights(q), jax.tree_util.tree_map(lambda a: a[-1], traj), u[-1])
        np.testing.assert_allclose(got[i], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("model", MODERN)
def test_a_modern_model_trains_and_records_its_retention_and_flow(model):
    """A short run of every modern model: the loss is finite, the snapshot records the retention of the memory
    block (in (0, 1], mean over the lag-carrying units) and a finite leading exponent; the ``embed`` input map of
    ``rglru`` is trained."""
    spec = ModelSpec(model, "adding-1997", 10, 8)
    r = train_run(spec, 0, TrainSettings(batch=16, budget=640, check_every=20, snapshot_growth=4.0))
    last = r.curves["points"][-1]
    assert np.isfinite(last["train_mse"]) and np.isfinite(last["lyapunov"]) and np.isfinite(last["log_dsds"])
    assert 0 < last["f_mean"] <= 1 and 0 < last["f_lag"] <= 1 and len(last["lag_units"]) >= 1
    assert "terms" not in last and "long_lag_share" not in last
    p0 = init_model(jax.random.split(jax.random.PRNGKey(0), 3)[0], spec)  # train_run's init key for seed 0
    assert ("embed" in r.params) == (model == "rglru")
    moved = {jax.tree_util.keystr(k): not np.allclose(a, b) for (k, a), b in
             zip(jax.tree_util.tree_leaves_with_path(r.params), jax.tree_util.tree_leaves(p0))}
    assert all(moved.values()), moved  # every parameter is trained
