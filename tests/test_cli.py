"""``lstm-jax verify`` end to end: table, JSON schema, Markdown, --only, exit codes."""

import json
import subprocess
import sys

import pytest

from lstm_jax import cli
from lstm_jax.verify import Claim, Finding, Verdict, claim_ids
from lstm_jax.verify import _runner

FAST = ["rnn-eq2-tanh", "eq3-sum", "lstm-eq6-D"]


def test_verify_subprocess_prints_table_and_writes_json_and_markdown(tmp_path):
    js, md = tmp_path / "out" / "v.json", tmp_path / "v.md"
    cmd = [sys.executable, "-m", "lstm_jax", "verify", "--only", *FAST, "--json", str(js), "--markdown", str(md)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("claim "))
    assert lines[header].split() == ["claim", "id", "verdict", "root", "cause", "time", "status"]
    # one compact line per claim, in order, none wider than 100 characters (the full table is --markdown's)
    rows = lines[header + 1: header + 1 + len(FAST)]
    assert [r.split()[:2] for r in rows] == [[f"{i}/3", cid] for i, cid in enumerate(FAST, 1)]
    assert "fails as published" in rows[2] and "sigma-for-tanh" in rows[2] and rows[2].endswith("ok")
    assert max(map(len, [lines[header], *rows])) <= 100
    doc = json.loads(js.read_text())
    assert set(doc) >= {"claims", "jax_version", "device"}
    assert [c["id"] for c in doc["claims"]] == FAST
    for c in doc["claims"]:
        assert set(c) >= {"id", "title", "equation", "verdict", "root_cause", "readings", "measured"}
        assert c["verdict"] in {v.value for v in Verdict}
        assert isinstance(c["measured"], dict) and c["measured"]
    table = md.read_text().splitlines()
    assert table[0] == "| id | claim | eq. | verdict | root cause | measured | status |"
    assert "[lstm-eq6-D](proofs/lstm-eq6-D.md)" in table[4]


def test_unknown_id_is_a_clear_error_with_exit_code_2():
    out = subprocess.run([sys.executable, "-m", "lstm_jax", "verify", "--only", "eq9"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown claim id(s) ['eq9']" in out.stderr and "rnn-eq2-sigmoid" in out.stderr


def test_list_prints_every_id(capsys):
    assert cli.main(["verify", "--list"]) == 0
    assert capsys.readouterr().out.split() == claim_ids()


def _fake(verdict, ok=True, boom=False):
    def check(ctx):
        if boom:
            raise ArithmeticError("boom")
        return Finding(verdict, {"x": 1.0}, "s", ok, "fig")

    return check


@pytest.mark.parametrize(
    "claim, status",
    [
        (Claim("c-ok", "t", "(0)", Verdict.FAILS, "sigma-for-tanh", "p.md", _fake(Verdict.FAILS)), "ok"),
        (Claim("c-bad", "t", "(0)", Verdict.FAILS, "sigma-for-tanh", "p.md", _fake(Verdict.FAILS, ok=False)), "corrected formula disagrees"),
        (Claim("c-verdict", "t", "(0)", Verdict.HOLDS, None, "p.md", _fake(Verdict.FAILS)), "unexpected verdict"),
        (Claim("c-err", "t", "(0)", Verdict.HOLDS, None, "p.md", _fake(Verdict.HOLDS, boom=True)), "error: ArithmeticError: boom"),
    ],
)
def test_exit_code_is_nonzero_exactly_when_a_check_misbehaves(monkeypatch, capsys, claim, status):
    monkeypatch.setattr(_runner, "CLAIMS", (claim,))
    code = cli.main(["verify"])
    out = capsys.readouterr()
    assert (code == 0) == (status == "ok")
    assert status in out.out


def test_unwritable_output_path_exits_3_before_any_claim_runs(tmp_path, monkeypatch, capsys):
    def never(ctx):
        raise AssertionError("a claim ran before the output path was checked")

    monkeypatch.setattr(_runner, "CLAIMS", (Claim("c", "t", "(0)", Verdict.HOLDS, None, "p.md", never),))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["verify", "--json", str(blocker / "out.json")]) == 3
    assert "--json" in capsys.readouterr().err
