"""``lstm-jax verify`` end to end: table, JSON schema, Markdown, --only, exit codes."""

import json
import subprocess
import sys

import pytest

from lstm_jax import _cli, _verify
from lstm_jax._verify import Claim, Finding, Verdict

FAST = ["rnn-eq2-tanh", "eq3-sum", "lstm-eq6-D"]


def test_verify_subprocess_prints_table_and_writes_json_and_markdown(tmp_path):
    js, md = tmp_path / "out" / "v.json", tmp_path / "v.md"
    cmd = [sys.executable, "-m", "lstm_jax", "verify", "--only", *FAST, "--json", str(js), "--markdown", str(md)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("id "))
    assert header.split() == ["id", "claim", "eq.", "verdict", "measured", "status"]
    assert "lstm-eq6-D" in out.stdout and "fails as published" in out.stdout
    doc = json.loads(js.read_text())
    assert set(doc) >= {"claims", "jax_version", "device"}
    assert [c["id"] for c in doc["claims"]] == FAST
    for c in doc["claims"]:
        assert set(c) >= {"id", "title", "equation", "verdict", "measured"}
        assert c["verdict"] in {v.value for v in Verdict}
        assert isinstance(c["measured"], dict) and c["measured"]
    table = md.read_text().splitlines()
    assert table[0] == "| id | claim | eq. | verdict | measured | status |"
    assert "[lstm-eq6-D](proofs/lstm-eq6-D.md)" in table[4]


def test_unknown_id_is_a_clear_error_with_exit_code_2():
    out = subprocess.run([sys.executable, "-m", "lstm_jax", "verify", "--only", "eq9"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown claim id(s) ['eq9']" in out.stderr and "rnn-eq2-sigmoid" in out.stderr


def test_list_prints_every_id(capsys):
    assert _cli.main(["verify", "--list"]) == 0
    assert capsys.readouterr().out.split() == _verify.claim_ids()


def _fake(verdict, ok=True, boom=False):
    def check(ctx):
        if boom:
            raise ArithmeticError("boom")
        return Finding(verdict, {"x": 1.0}, "s", ok, "fig")

    return check


@pytest.mark.parametrize(
    "claim, status",
    [
        (Claim("c-ok", "t", "(0)", Verdict.FAILS, "p.md", _fake(Verdict.FAILS)), "ok"),
        (Claim("c-bad", "t", "(0)", Verdict.FAILS, "p.md", _fake(Verdict.FAILS, ok=False)), "corrected formula disagrees"),
        (Claim("c-verdict", "t", "(0)", Verdict.HOLDS, "p.md", _fake(Verdict.FAILS)), "unexpected verdict"),
        (Claim("c-err", "t", "(0)", Verdict.HOLDS, "p.md", _fake(Verdict.HOLDS, boom=True)), "error: ArithmeticError: boom"),
    ],
)
def test_exit_code_is_nonzero_exactly_when_a_check_misbehaves(monkeypatch, capsys, claim, status):
    monkeypatch.setattr(_verify, "_registry", lambda: [claim])
    code = _cli.main(["verify"])
    out = capsys.readouterr()
    assert (code == 0) == (status == "ok")
    assert status in out.out
