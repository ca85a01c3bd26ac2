"""Every claim check, run once (seed 0, float64), against the verdict and key numbers its proof states."""

import math
import pathlib

import pytest

from lstm_jax._verify import TOL, Verdict, claim_ids, run_claims

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reports():
    return {r.claim.id: r for r in run_claims(seed=0)}


def m(reports, cid):
    r = reports[cid]
    assert r.finding is not None, r.status
    return r.finding.measured


def test_every_claim_behaves_as_its_proof_says(reports):
    assert list(reports) == claim_ids()
    bad = {cid: r.status for cid, r in reports.items() if not r.ok}
    assert not bad


def test_every_claim_has_a_proof_document_that_names_it(reports):
    for r in reports.values():
        doc = ROOT / "proofs" / r.claim.proof
        assert doc.is_file(), doc
        assert f"`{r.claim.id}`" in doc.read_text(), (r.claim.id, doc)
    index = (ROOT / "proofs" / "README.md").read_text()
    for cid in reports:
        assert cid in index


@pytest.mark.parametrize("cid", ["rnn-eq2-sigmoid", "rnn-eq2-tanh"])
def test_eq2_holds_with_row_scaling_and_the_column_reading_is_wrong(reports, cid):
    x = m(reports, cid)
    assert reports[cid].finding.verdict is Verdict.HOLDS
    assert x["max_rel_err_vs_jacfwd_jacrev"] <= TOL
    assert x["min_rel_err_of_column_reading_W_rec_diag"] > 0.05


def test_eq1_single_chain_misses_almost_all_of_the_gradient(reports):
    x = m(reports, "eq1-chain")
    assert reports["eq1-chain"].finding.verdict is Verdict.FAILS
    assert x["published_rel_err_W_rec"] > 0.5 and x["published_rel_err_W_in"] > 0.5
    assert x["corrected_rel_err"] <= TOL


def test_eq3_sum_rule_holds_to_rounding(reports):
    assert m(reports, "eq3-sum")["max_rel_err_sum_of_per_step_grads_vs_grad"] <= TOL


def test_vanishing_bound_never_violated_and_tanh_at_gain_above_one_grows(reports):
    x = m(reports, "rnn-vanishing")
    assert x["max_log_norm_minus_log_bound"] <= 1e-12
    assert x["sigmoid_gain0.9_rate"] < math.log(0.9) and x["tanh_gain0.9_rate"] < math.log(0.9)
    assert abs(x["tanh_gain1.5_fixed_point_rate"] - math.log(1.5)) < 1e-9


def test_exploding_at_the_sigmoid_fixed_point_has_the_predicted_rate(reports):
    x = m(reports, "rnn-exploding")
    assert abs(x["sigmoid_gain1.25_fixed_point_rate"] - math.log(1.25)) < 1e-9
    assert x["tanh_gain3_saturated_rate"] < 0  # large W_rec, still vanishing
    assert x["sigmoid_gain0.99_max_log_norm"] <= 0


@pytest.mark.parametrize("term", "ACD")
def test_published_terms_fail_but_corrected_terms_are_exact(reports, term):
    x = m(reports, f"lstm-eq6-{term}")
    assert reports[f"lstm-eq6-{term}"].finding.verdict is Verdict.FAILS
    assert x["corrected_max_rel_err"] <= TOL
    assert x["published_min_rel_err_n_gt_1"] > 0.05
    if term == "D":  # sigma' for tanh' is wrong even for one unit
        assert x["published_max_rel_err_n_eq_1"] > 0.05
    else:  # only the side of a diagonal factor is wrong: harmless for one unit
        assert x["published_max_rel_err_n_eq_1"] <= TOL


def test_B_is_the_forget_gate_exactly(reports):
    x = m(reports, "lstm-eq6-B")
    assert x["published_max_rel_err"] <= TOL


def test_eq6_sum_and_product_rule(reports):
    assert m(reports, "lstm-eq6-sum")["corrected_max_rel_err"] <= TOL
    assert m(reports, "lstm-eq6-sum")["published_max_rel_err"] > 0.1
    assert m(reports, "lstm-eq6-product-rule")["max_rel_err"] <= TOL


@pytest.mark.parametrize("cid", ["appendix-df", "appendix-di", "appendix-dc"])
def test_appendix_lines_printed_wrong_corrected_exact(reports, cid):
    x = m(reports, cid)
    assert x["printed_max_rel_err"] > 0.05
    assert x["corrected_max_rel_err"] <= TOL


def test_article_product_exact_at_k2_off_from_k3_and_output_gate_path_is_the_gap(reports):
    x = m(reports, "lstm-multistep")
    errs = x["corrected_terms_product_max_rel_err_per_k"]
    assert errs[0] <= TOL
    assert min(errs[1:]) > 1e-2
    assert x["U_o_zero_product_max_rel_err"] <= TOL
    assert x["exact_formula_max_rel_err_vs_jacfwd"] <= TOL


def test_balancing_only_bounds_the_product(reports):
    x = m(reports, "balancing")
    assert abs(x["diagonal_reading_product_norm"] - 1) < 1e-12
    assert x["lower_bound_norm_(0.7-0.3)^k"] <= x["random_directions_product_norm"] < 0.5


def test_forget_gate_open_keeps_identity_only_for_small_weights(reports):
    rows = m(reports, "forget-gate")["by_weight_scale_and_forget_bias"]
    tiny = [rows[f"scale0.001_bf{b:+g}"]["norm"] for b in (-4.0, -2.0, 0.0, 2.0, 4.0)]
    assert tiny == sorted(tiny)  # the product grows monotonically with the forget bias
    assert rows["scale0.001_bf+8"]["dist_to_identity"] < 0.05
    assert rows["scale3_bf+8"]["norm"] > 1  # open gate + large weights: it can explode


def test_long_lag_share_orders_rnn_below_lstm_and_grows_with_forget_bias(reports):
    med = m(reports, "lag-share")["median_long_lag_share"]
    assert m(reports, "lag-share")["sum_of_per_step_grads_max_rel_err_vs_jax_grad"] <= TOL
    assert med["rnn-sigmoid-scale1"] < 1e-10
    assert med["lstm-forget-bias0"] < med["lstm-forget-bias1"] < med["lstm-forget-bias3"]
    assert med["lstm-forget-bias3"] > 0.5


def test_run_claims_refuses_float32_and_unknown_ids():
    import jax

    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="float64"):
            run_claims(only=["eq3-sum"])
    with pytest.raises(ValueError, match=r"unknown claim id\(s\) \['nope'\]"):
        run_claims(only=["nope"])
