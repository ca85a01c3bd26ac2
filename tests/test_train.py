"""Training with optax: a short run whose loss falls, the article's SGD rule, clipping, checkpoints, the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstm_jax import _cli
from lstm_jax import _train as tr


def test_short_lstm_run_on_the_adding_problem_lowers_the_held_out_loss():
    cfg = tr.TrainConfig(task="adding", T=10, model="lstm", n=16, steps=300, eval_every=50, lr=1e-2)
    r = tr.train(cfg)
    first, last = r.log["eval_loss"][0], r.final_loss
    assert last < 0.5 * first
    assert len(r.log["loss"]) == len(r.log["grad_norm"]) == r.log["step"][-1]
    assert all(np.isfinite(r.log["grad_norm"]))


@pytest.mark.parametrize("model", ["rnn-sigmoid", "rnn-tanh"])
def test_plain_rnns_train_with_the_articles_sgd_rule_on_temporal_order(model):
    cfg = tr.TrainConfig(task="temporal-order", T=10, model=model, n=8, optimizer="sgd", lr=0.1, clip=None,
                         steps=30, eval_every=10, eval_size=64)
    r = tr.train(cfg)
    assert np.isfinite(r.final_loss) and 0 <= r.final_metric <= 1


def test_sgd_update_is_minus_lr_times_gradient_and_clipping_bounds_it():
    params = {"w": jnp.array([3.0, 4.0])}
    grads = {"w": jnp.array([30.0, 40.0])}
    plain = tr.make_optimizer(tr.TrainConfig(optimizer="sgd", lr=0.1, clip=None))
    upd, _ = plain.update(grads, plain.init(params), params)
    np.testing.assert_allclose(upd["w"], -0.1 * grads["w"], rtol=1e-6)
    clipped = tr.make_optimizer(tr.TrainConfig(optimizer="sgd", lr=1.0, clip=1e-3))
    upd, _ = clipped.update(grads, clipped.init(params), params)
    assert abs(float(optax.tree.norm(upd)) - 1e-3) < 1e-9


def test_checkpoint_round_trip(tmp_path):
    cfg = tr.TrainConfig(model="lstm", n=4)
    params = tr.init_model(jax.random.PRNGKey(0), cfg)
    tr.save_checkpoint(params, tmp_path / "p.npz", cfg)
    back = tr.load_checkpoint(tmp_path / "p.npz", params)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "p.npz.json").read_text())["n"] == 4


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="task must be one of"):
        tr.train(tr.TrainConfig(task="copy"))
    with pytest.raises(ValueError, match="model must be"):
        tr.init_model(jax.random.PRNGKey(0), tr.TrainConfig(model="gru"))
    with pytest.raises(ValueError, match="optimizer must be"):
        tr.make_optimizer(tr.TrainConfig(optimizer="rmsprop"))


def test_train_cli_single_run_and_tiny_sweep_write_their_files(tmp_path, capsys):
    assert _cli.main(["train", "--T", "10", "--n", "4", "--steps", "20", "--eval-every", "10",
                      "--out", str(tmp_path / "one")]) == 0
    log = json.loads((tmp_path / "one" / "log.json").read_text())
    assert log["config"]["T"] == 10 and len(log["log"]["loss"]) >= 10
    assert (tmp_path / "one" / "params.npz").is_file()
    assert _cli.main(["train", "--sweep", "--Ts", "10", "--seeds", "1", "--n", "4", "--steps", "10",
                      "--eval-every", "5", "--out", str(tmp_path / "sw")]) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"rnn-sigmoid", "rnn-tanh", "lstm-forget-bias0", "lstm-forget-bias1"}
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| model | T = 10 |" in (tmp_path / "sw" / "sweep.md").read_text()
