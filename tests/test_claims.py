"""Every claim check, run once through ``lstm-jax verify`` (seed 0, float64), against what its proof derives.

The expected verdicts are NOT taken from the claim tables: each proof document in ``proofs/`` states its
"Derived verdict" by hand, from the derivation, and the test reads it there.  One CLI run (module
fixture) feeds every test, including the check that README.md and proofs/ show what verify prints now.
"""

import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from lstm_jax.verify import Verdict, claim_ids, run_claims
from tools.sync_docs import stale_docs
from lstm_jax.verify._root_causes import ROOT_CAUSES
from lstm_jax.verify._types import FAIL_AT, TOL

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORMULA_CLAIMS = [
    "rnn-eq2-sigmoid", "rnn-eq2-tanh", "eq1-chain", "eq3-sum", "lstm-eq6-product-rule", "lstm-eq6-A",
    "lstm-eq6-B", "lstm-eq6-C", "lstm-eq6-D", "lstm-eq6-sum", "appendix-df", "appendix-di", "appendix-dc",
    "lstm-multistep",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One whole ``lstm-jax verify --json --markdown`` run in a fresh process: (JSON document, Markdown)."""
    out = tmp_path_factory.mktemp("verify")
    js, md = out / "verify.json", out / "table.md"
    proc = subprocess.run([sys.executable, "-m", "lstm_jax", "verify", "--json", str(js), "--markdown", str(md)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(js.read_text()), md.read_text()


@pytest.fixture(scope="module")
def claims(run):
    return {c["id"]: c for c in run[0]["claims"]}


def m(claims, cid):
    return claims[cid]["measured"]


def _derived_verdicts():
    """{claim id: verdict} from the hand-written "**Derived verdict (`id`): ...**" lines of proofs/*.md."""
    out = {}
    for doc in (ROOT / "proofs").glob("*.md"):
        text = doc.read_text()
        for cid, verdict in re.findall(r"\*\*Derived verdict \(`([^`]+)`\): ([^*]+?)\.?\*\*", text):
            out[cid] = verdict.strip()
        single = re.findall(r"\*\*Derived verdict: ([^*]+?)\.?\*\*", text)
        if single:
            cid = re.search(r"^# `([^`]+)`", text, re.M).group(1)
            out[cid] = single[0].strip()
    return out


def test_every_claim_behaves_as_its_proof_says(claims):
    assert list(claims) == claim_ids()
    assert {cid: c["status"] for cid, c in claims.items() if c["status"] != "ok"} == {}


def test_verdicts_equal_the_verdicts_derived_by_hand_in_the_proofs(claims):
    derived = _derived_verdicts()
    assert set(derived) == set(claims)
    assert {cid: c["verdict"] for cid, c in claims.items()} == derived
    assert {c["verdict"] for c in claims.values()} <= {v.value for v in Verdict}


def test_root_causes_are_named_null_exactly_when_the_claim_holds_and_listed_once(run, claims):
    doc = run[0]
    for cid, c in claims.items():
        holds = c["verdict"] in (Verdict.HOLDS.value, Verdict.HOLDS_UNDER_READING.value)
        assert (c["root_cause"] is None) == holds, cid
        for rc in [c["root_cause"]] if isinstance(c["root_cause"], str) else c["root_cause"] or []:
            assert rc in ROOT_CAUSES and cid in doc["root_causes"][rc]["claims"]
    kinds = [ROOT_CAUSES[rc].kind for rc in doc["root_causes"]]
    assert f"{len(kinds)} root causes: {kinds.count('error')} errors, {kinds.count('typo')} typos" in doc["summary"]


def test_every_formula_claim_carries_its_readings_and_the_verdict_follows_them(claims):
    for cid in FORMULA_CLAIMS:
        c = claims[cid]
        readings = {r["name"]: r for r in c["readings"]}
        assert set(readings) == {"row", "column"}, cid
        for r in readings.values():
            assert r["holds"] == (r["max_rel_err"] <= TOL), (cid, r)
        v = c["verdict"]
        if v == Verdict.HOLDS.value:
            assert all(r["holds"] for r in readings.values()), cid
        elif v == Verdict.HOLDS_UNDER_READING.value:
            assert readings["row"]["holds"] and not readings["column"]["holds"], cid
            assert readings["column"]["max_rel_err"] > FAIL_AT, cid
        else:  # typo / fails as published: wrong under every reading, by more than FAIL_AT
            assert min(r["max_rel_err"] for r in readings.values()) > FAIL_AT, cid


def test_readme_table_and_proofs_are_what_verify_prints_now(run):
    doc, markdown = run
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- verify-table:start -->\n(.*?)\n<!-- verify-table:end -->", readme, re.S).group(1)
    assert block == markdown.rstrip("\n")
    assert stale_docs(doc, ROOT) == [], "regenerate with: python -m tools.sync_docs"


def test_sync_docs_check_mode_reads_a_saved_run_and_refuses_bad_files(run, tmp_path, capsys):
    """``python -m tools.sync_docs --json FILE --check``: 0 when up to date; a document that is not verify's is
    exit 2, a missing file exit 3, each one line; nothing is rewritten."""
    from tools.sync_docs import main

    saved = tmp_path / "v.json"
    saved.write_text(json.dumps(run[0]))
    assert main(["--json", str(saved), "--check"]) == 0
    (tmp_path / "other.json").write_text("[1, 2]")
    assert main(["--json", str(tmp_path / "other.json"), "--check"]) == 2
    assert main(["--json", str(tmp_path / "missing.json"), "--check"]) == 3
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 2 and "not an `lstm-jax verify --json` document" in errs[0] and "no such file" in errs[1]


def test_tables_print_round_off_as_an_upper_bound_only(run):
    _, markdown = run
    for figure in re.findall(r"(\d\.\de-1[3-9])", markdown):  # round-off-level numbers must not be printed
        pytest.fail(f"round-off-level figure {figure} printed; expected '< 1e-12'")


def test_eq2_holds_and_the_transposed_scaling_is_wrong(claims):
    for cid in ("rnn-eq2-sigmoid", "rnn-eq2-tanh"):
        x = m(claims, cid)
        assert x["max_rel_err_vs_jacfwd_jacrev"] <= TOL
        assert x["min_rel_err_of_W_rec_diag_misreading_n_gt_1"] > 0.05


def test_eq1_single_chain_misses_almost_all_of_the_gradient(claims):
    x = m(claims, "eq1-chain")
    assert 0.5 < x["published_rel_err_W_rec_min"] < 1 and 0.5 < x["published_rel_err_W_in_min"] < 1
    assert x["corrected_rel_err"] <= TOL
    assert "1 − " in claims["eq1-chain"]["figure"] and "≥" not in claims["eq1-chain"]["figure"]


def test_vanishing_bound_never_violated_and_tanh_at_gain_above_one_grows(claims):
    x = m(claims, "rnn-vanishing")
    assert x["max_log_norm_minus_log_bound"] <= 1e-12
    assert x["sigmoid_gain0.9_rate"] < math.log(0.9) and x["tanh_gain0.9_rate"] < math.log(0.9)
    assert abs(x["tanh_gain1.5_fixed_point_rate"] - math.log(1.5)) < 1e-9


def test_exploding_at_the_sigmoid_fixed_point_has_the_predicted_rate(claims):
    x = m(claims, "rnn-exploding")
    assert abs(x["sigmoid_gain1.25_fixed_point_rate"] - math.log(1.25)) < 1e-9
    assert x["tanh_gain3_saturated_rate"] < 0  # large W_rec, still vanishing: "can", not "will"
    assert x["sigmoid_gain0.99_max_log_norm"] <= 0


@pytest.mark.parametrize("term", "AC")
def test_printed_A_and_C_are_exact_under_the_row_reading_only(claims, term):
    x = m(claims, f"lstm-eq6-{term}")
    assert x["corrected_max_rel_err"] <= TOL
    assert x["readings_min_rel_err_n_gt_1"]["column"] > 0.05  # every n > 1 draw is off under "column"
    assert x["readings_max_rel_err_n_eq_1"]["column"] <= TOL  # for one unit the readings coincide


def test_printed_D_error_is_unbounded_as_the_closed_form_says(claims):
    """|σ'(z)/tanh'(z) − 1| = |cosh²z / (4 cosh²(z/2)) − 1| (proofs/lstm-eq6-D.md), computed here with NumPy."""
    got = m(claims, "lstm-eq6-D")["n_eq_1_rel_err_at_z_c"]
    for z, err in got.items():
        z = float(z)
        want = abs(np.cosh(z) ** 2 / (4 * np.cosh(z / 2) ** 2) - 1)
        # the library's tanh' = 1 - tanh^2 cancels ~4 digits at |z| = 5 (tanh'(5) = 1.8e-4): rel. 1e-9
        assert err == pytest.approx(want, rel=1e-9), z
    assert got["5.0"] > 30 and got["1.66"] < 0.01  # grows without bound; ratio 1 near |z| = 1.66


def test_B_is_the_forget_gate_exactly(claims):
    assert all(r["max_rel_err"] <= TOL for r in claims["lstm-eq6-B"]["readings"])


def test_eq6_sum_fails_only_through_D_under_the_row_reading(claims):
    x = m(claims, "lstm-eq6-sum")
    assert x["corrected_max_rel_err"] <= TOL
    assert x["readings_min_rel_err"]["row"] > FAIL_AT
    assert claims["lstm-eq6-sum"]["root_cause"] == "sigma-for-tanh"


@pytest.mark.parametrize("cid", ["appendix-df", "appendix-di", "appendix-dc"])
def test_appendix_lines_printed_wrong_intended_or_corrected_exact(claims, cid):
    x = m(claims, cid)
    assert max(v for k, v in x.items() if k.endswith("_max_rel_err") and k.startswith("app_")) > 0.05
    assert x.get("intended_max_rel_err", x.get("corrected_max_rel_err")) <= TOL


def test_article_product_exact_at_k2_off_from_k3_and_output_gate_path_is_the_gap(claims):
    x = m(claims, "lstm-multistep")
    errs = x["corrected_terms_product_max_rel_err_per_k"]
    assert errs[0] <= TOL
    assert min(errs[1:]) > 1e-2
    assert x["U_o_zero_product_max_rel_err"] <= TOL
    assert x["exact_formula_max_rel_err_vs_jacfwd"] <= TOL


def test_balancing_only_bounds_the_product(claims):
    x = m(claims, "balancing")
    assert abs(x["diagonal_terms_product_norm"] - 1) < 1e-12
    # random directions: decays, at a per-step rate between the proof's lower bound log(0.7 - 0.3) and 0
    assert math.log(0.4) <= x["random_directions_rate_per_step"] < -0.1
    assert x["random_directions_product_norm"] < 1e-3


def test_an_open_forget_gate_keeps_the_product_alive_at_every_weight_scale_and_a_closed_one_kills_it(claims):
    x = m(claims, "forget-gate")
    rows = x["by_weight_scale_and_forget_bias"]
    tiny = [rows[f"scale0.001_bf{b:+g}"]["norm"] for b in (-4.0, -2.0, 0.0, 2.0, 4.0)]
    assert tiny == sorted(tiny)  # the product grows monotonically with the forget bias
    assert all(rows[f"scale{s:g}_bf+8"]["norm"] >= x["alive_norm"] for s in (0.001, 0.1, 3.0))  # alive: the claim
    assert all(rows[f"scale{s:g}_bf-4"]["norm"] < 1e-6 for s in (0.001, 0.1, 3.0))  # killed
    # the separate note: alive is not bounded, and ≈ I only for small weights
    assert rows["scale0.001_bf+8"]["dist_to_identity"] < 0.05 and rows["scale3_bf+8"]["norm"] > 1
    assert claims["forget-gate"]["verdict"] == "holds" and "can explode" in claims["forget-gate"]["statement"]


def test_long_lag_share_orders_rnn_below_lstm_and_grows_with_forget_bias(claims):
    x = m(claims, "lag-share")
    med = x["median_long_lag_share"]
    assert x["sum_of_per_step_grads_max_rel_err_vs_jax_grad"] <= TOL
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
