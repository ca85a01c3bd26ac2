"""Files a user hands us, tried as an attacker and as a new user would (``lstm_jax/io/_sniff.py``, ``_load.py``,
``_files.py``, the CLI's error policy): every file is refused before it can hang the process or exhaust memory,
each refusal is one line naming the file, what it is and what is accepted, with the documented exit code;
output sets are all or nothing under a kill.  Every file is real, built here by the library that writes it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import lstm_jax as lj
import lstm_jax.io as lio
from lstm_jax import outputs
from lstm_jax import cli
from lstm_jax.io import _sniff

M, N = 3, 4
ACCEPTED = "accepted: a PyTorch state_dict"


def _diagnose(capsys, *argv):
    """``lstm-jax diagnose`` in process: (exit code, stderr lines)."""
    code = cli.main(["diagnose", *map(str, argv)])
    return code, capsys.readouterr().err.strip().splitlines()


def _lstm_file(tmp_path, name="m.pt", **change):
    sd = torch.nn.LSTM(M, N).state_dict()
    sd.update(change)
    torch.save(sd, tmp_path / name)
    return tmp_path / name


def _npz_with_header(path, shape, dtype="<f8", compress=False, body_bytes=0):
    """An .npz whose one member declares ``shape`` and holds ``body_bytes`` zero bytes (a bomb when compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        with z.open("a.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
            chunk = bytes(1 << 20)
            for _ in range(body_bytes >> 20):
                fh.write(chunk)
    path.write_bytes(buf.getvalue())
    return path


# ----------------------------------------------------------------------------- not a regular file


def test_a_fifo_is_refused_without_opening_it(tmp_path, capsys):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    code, err = _diagnose(capsys, fifo, "--out", tmp_path / "o")
    assert code == 2 and time.perf_counter() - t0 < 30  # open() on a FIFO would block forever
    assert err == [f"lstm-jax diagnose: error: MODEL: {str(fifo)!r} is a named pipe (FIFO); expected a regular file"]


@pytest.mark.parametrize("path, what", [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_devices_are_refused(path, what):
    with pytest.raises(ValueError, match=f"is {what}; expected a regular file"):
        lio.load_model(path, argument="MODEL")


def test_a_folder_is_a_usage_error_not_an_output_io_error(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    code, err = _diagnose(capsys, tmp_path / "ckpt", "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1
    assert "is a folder; expected a regular file (a checkpoint folder, e.g. Orbax, is not read" in err[0]


def test_a_missing_file_is_an_io_error(tmp_path, capsys):
    code, err = _diagnose(capsys, tmp_path / "nope.pt", "--out", tmp_path / "o")
    assert code == 3 and err == [f"lstm-jax diagnose: I/O error: MODEL: no such file {str(tmp_path / 'nope.pt')!r}"]


# ----------------------------------------------------------------------------- sizes declared before they are built


def test_a_zip_bomb_npz_is_refused_at_its_header(tmp_path):
    bomb = _npz_with_header(tmp_path / "bomb.npz", (60_000, 10_000), compress=True, body_bytes=64 << 20)
    assert bomb.stat().st_size < 1 << 20  # under 1 MB on disk, 4.8 GB declared
    with pytest.raises(ValueError, match=r"declares 4\.47 GiB of arrays; at most .* GiB are read"):
        lio.load_model(bomb, argument="MODEL")


def test_an_npz_declaring_terabytes_is_refused(tmp_path):
    f = _npz_with_header(tmp_path / "huge.npz", (10**6, 10**6))
    with pytest.raises(ValueError, match=r"declares 7450\.58 GiB of arrays"):
        lio.load_model(f)


def test_a_zero_stride_tensor_is_sized_by_what_it_becomes(tmp_path):
    f = tmp_path / "zs.pt"
    torch.save({"weight_ih_l0": torch.zeros(1).expand(40_000, 40_000), "weight_hh_l0": torch.zeros(16, 4)}, f)
    assert f.stat().st_size < 10_000  # one float of storage on disk
    with pytest.raises(ValueError, match=r"declares 5\.96 GiB of arrays"):
        lio.load_model(f, argument="MODEL")


def test_data_declaring_240_gb_is_refused_before_reading(tmp_path, capsys):
    data = tmp_path / "x.npy"
    with open(data, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (1000, 10**7, 3)})
    code, err = _diagnose(capsys, _lstm_file(tmp_path), "--data", data, "--out", tmp_path / "o")
    assert code == 2 and re.search(r"--data .* declares 223\.52 GiB of arrays", err[0]), err


def test_truncated_data_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 10, 3)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"declares shape \(4, 10, 3\) float64 \(960 bytes\) but holds only 172: truncated"):
        _sniff.read_npy(tmp_path / "cut.npy", "--data")


def test_an_npz_given_as_data_says_so(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 5, M)))
    code, err = _diagnose(capsys, _lstm_file(tmp_path), "--data", tmp_path / "x.npz", "--out", tmp_path / "o")
    assert code == 2 and "is a NumPy .npz archive; expected one .npy array" in err[0]


@pytest.mark.parametrize("opts, fragment", [
    (["--T", "100000000"], "--T must be in 2..1,000,000, got 100000000"),
    (["--batch", "100000000"], "--batch must be in 1..100,000, got 100000000"),
    (["--seed", str(2**64)], "--seed must be in 0..9,223,372,036,854,775,807"),
    (["--T", "1000000", "--batch", "100000"], "would need about"),
])
def test_diagnose_sizes_beyond_what_xla_or_memory_allows_are_refused_up_front(tmp_path, capsys, opts, fragment):
    t0 = time.perf_counter()
    code, err = _diagnose(capsys, _lstm_file(tmp_path), *opts, "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "o").exists()


def test_verify_seed_overflow_is_a_usage_error(capsys):
    assert cli.main(["verify", "--seed", str(2**64)]) == 2
    assert capsys.readouterr().err.strip() == "lstm-jax verify: error: --seed must be in 0..2**63-1, got 18446744073709551616"


# ----------------------------------------------------------------------------- formats named, not "corrupt"


def _keras_file(path):
    """A Keras 3 ``.keras`` archive as the format documents it: config.json, metadata.json, model.weights.h5."""
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f["layers/lstm/cell/vars/0"] = np.zeros((M, 4 * N), np.float32)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": [{"class_name": "LSTM"}]}}))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
        z.writestr("model.weights.h5", weights.getvalue())
    return path


def _h5_file(path):
    with h5py.File(path, "w") as f:
        f["lstm/kernel"] = np.zeros((M, 4 * N))
    return path


FORMATS = [
    ("empty.pt", lambda p: p.write_bytes(b"") and p, "is an empty file (0 bytes)"),
    ("notes.pt", lambda p: p.write_text("weights: see the paper\n") and p, "is a text file; model files are binary"),
    ("random.npz", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)) and p,
     "is a file of no format lstm_jax recognises"),
    ("cut.pt", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(60)) and p, "zip archive that cannot be opened (truncated"),
]


@pytest.mark.parametrize("name, make, fragment", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_load_error_names_what_the_file_is_and_what_is_accepted(tmp_path, capsys, name, make, fragment):
    path = tmp_path / name
    make(path)
    # the name of a file does not decide its format: the same bytes under a .pt name give the same answer
    renamed = tmp_path / "renamed.pt"
    renamed.write_bytes(path.read_bytes())
    for p in (path, renamed):
        with pytest.raises(ValueError) as info:
            lio.load_model(p, argument="MODEL")
        assert fragment in str(info.value) and ACCEPTED in str(info.value), str(info.value)
    code, err = _diagnose(capsys, path, "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, make, fragment", [
    ("model.keras", _keras_file, "Keras LSTM layer 'lstm': 1 variables; a LSTM cell has kernel, recurrent kernel and bias"),
    ("model.h5", _h5_file, "is an HDF5 file without a layers/ group: not a Keras 3 weights file")])
def test_keras_and_hdf5_files_of_a_layout_lstm_jax_does_not_read_are_refused_in_one_line(tmp_path, capsys, name, make,
                                                                                        fragment):
    path = make(tmp_path / name)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        lio.load_model(path, argument="MODEL")
    code, err = _diagnose(capsys, path, "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and fragment in err[0] and not (tmp_path / "o").exists()


def test_msgpack_nested_a_thousand_deep_is_refused(tmp_path):
    deep = b"\x81\xa1a" * 1000 + b"\x80"  # {"a": {"a": ... {}}}, 1000 levels
    (tmp_path / "deep.msgpack").write_bytes(deep)
    with pytest.raises(ValueError, match="deeper than 64 levels|nests msgpack maps too deeply"):
        lio.load_model(tmp_path / "deep.msgpack")


# ----------------------------------------------------------------------------- lstm_jax's own .npz header


def _own_npz(tmp_path, **header_change):
    path = lio.save(tmp_path / "own.npz", torch.nn.LSTM(M, N))
    arrays = dict(np.load(path))
    header = json.loads(bytes(arrays["__lstm_jax__"]).decode())
    for k, v in header_change.items():
        if v is None:
            del header[k]
        else:
            header[k] = v
    arrays["__lstm_jax__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("change, fragment", [
    ({"num_layers": 10**9}, "gives num_layers = 1000000000; expected an integer in 1..1024"),
    ({"num_layers": 2}, "declares 2 layer(s) x 1 direction(s) but the file has no arrays for layer1.forward"),
    ({"kind": None}, "header lacks ['kind']"),
    ({"arrays": [1]}, "gives arrays as a list; expected a dict"),
    ({"n": "abc"}, "gives n = 'abc'; expected an integer"),
    ({"arrays": {"layer0.forward.W_f": {"shape": ["abc"], "dtype": "float32"}}}, "declares array 'layer0.forward.W_f'"),
])
def test_own_npz_headers_are_validated_against_the_schema(tmp_path, change, fragment):
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        lio.load(_own_npz(tmp_path, **change))
    assert fragment in str(info.value) and time.perf_counter() - t0 < 10


# ----------------------------------------------------------------------------- weights checked like inputs


@pytest.mark.parametrize("change, fragment", [
    ({"weight_hh_l0": torch.full((16, 4), float("nan"))}, "parameter W_f (4, 7) holds 16 NaN and 0 inf values"),
    ({"bias_ih_l0": torch.tensor([float("inf")] * 16)}, "holds 0 NaN and 4 inf values"),
    ({"bias_hh_l0": torch.zeros(5)}, "bias_hh has shape (5,); expected (16,) for weight_hh (16, 4)"),
    ({"weight_ih_l0": torch.zeros(12, 3)}, "weight_ih has shape (12, 3); expected (16, m) to match weight_hh (16, 4)"),
    ({"weight_ih_l0": torch.zeros(0, 0), "weight_hh_l0": torch.zeros(0, 0)}, "hidden size n and input size m must be >= 1"),
])
def test_bad_weights_are_refused_naming_the_tensor(tmp_path, change, fragment):
    with pytest.raises(ValueError) as info:
        lio.load_model(_lstm_file(tmp_path, **change))
    assert fragment in str(info.value), str(info.value)


def test_a_state_dict_missing_bias_hh_is_refused_like_torch_refuses_it(tmp_path):
    sd = torch.nn.LSTM(M, N).state_dict()
    del sd["bias_hh_l0"]
    with pytest.raises(RuntimeError, match="bias_hh_l0"):  # torch's own verdict on this dict
        torch.nn.LSTM(M, N).load_state_dict(sd)
    with pytest.raises(ValueError, match="has bias_ih_l0 but no bias_hh_l0"):
        lio.load_model(sd)


def test_a_relu_rnn_is_never_read_as_tanh(tmp_path):
    relu = torch.nn.RNN(M, N, nonlinearity="relu")
    with pytest.raises(ValueError, match="nonlinearity='relu' is not supported"):
        lio.load_model(relu)
    torch.save(relu.state_dict(), tmp_path / "relu.pt")
    with pytest.raises(ValueError, match="do not record its nonlinearity .* pass kind='rnn-tanh'"):
        lio.load_model(tmp_path / "relu.pt")
    tanh = torch.nn.RNN(M, N)
    model = lio.load_model(tanh.state_dict(), kind="rnn-tanh")
    x = torch.randn(7, 1, M, dtype=torch.float64)
    want = tanh.double()(x)[0][:, 0].detach().numpy()
    got = lj.run_rnn(model.layers[0].params, jnp.zeros(N), jnp.asarray(x[:, 0].numpy()), "tanh")[1]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


def test_layer_on_a_single_model_says_it_has_no_names(tmp_path):
    with pytest.raises(ValueError, match="holds a single recurrence, which has no name; drop layer"):
        lio.load_model(_lstm_file(tmp_path), layer="rnn")


# ----------------------------------------------------------------------------- pickles and new users


_WHOLE_MODULE = textwrap.dedent("""
    import sys, torch
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(3, 4)
    torch.save(Net(), sys.argv[1])
""")


def test_an_unimportable_pickled_class_is_one_line_exit_2(tmp_path):
    path = tmp_path / "whole.pt"
    subprocess.run([sys.executable, "-c", _WHOLE_MODULE, str(path)], check=True, timeout=120)
    out = subprocess.run([sys.executable, "-m", "lstm_jax", "diagnose", str(path), "--allow-pickle", "--out",
                          str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "pickles an object whose class cannot be imported here (Can't get attribute 'Net'" in lines[0]
    assert "Save model.state_dict() with torch.save" in lines[0]
    assert not (tmp_path / "o").exists()


def test_version_is_printed(capsys):
    assert cli.main(["--version"]) == 0
    assert re.fullmatch(r"lstm-jax \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_a_failed_run_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "deep" / "diagnose-out"
    code, _ = _diagnose(capsys, _lstm_file(tmp_path, weight_hh_l0=torch.full((16, 4), float("nan"))), "--out", out)
    assert code == 2 and not (tmp_path / "deep").exists()


def test_lyapunov_under_jit_accepts_a_closed_over_q0():
    J = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (30, 4, 4))
    q0 = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(1), (4, 2)))[0]
    jitted = jax.jit(lambda J: lj.lyapunov(J, 2, q0).exponents)(J)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(lj.lyapunov(J, 2, q0).exponents), rtol=1e-12)
    with pytest.raises(ValueError, match="linearly independent"):  # a concrete bad q0 is still refused under jit
        jax.jit(lambda J: lj.lyapunov(J, 2, np.zeros((4, 2))).exponents)(J)


# ----------------------------------------------------------------------------- output sets: all or nothing


def _publish(folder, version: int) -> None:
    with outputs.AtomicOutputs() as out:
        for name in ("report.html", "diagnosis.json", "a.png"):
            out.write(folder / name, f"{name} v{version}\n")


def _contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir() if p.name in ("report.html", "diagnosis.json", "a.png")}


_KILL_AT = textwrap.dedent("""
    import os, pathlib, signal, sys
    from lstm_jax import outputs
    folder, kill_at = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    real, calls = os.replace, [0]
    def replace(src, dst):                       # the test hook: SIGKILL at the kill_at-th rename
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)
    os.replace = replace
    with outputs.AtomicOutputs() as out:
        for name in ("report.html", "diagnosis.json", "a.png"):
            out.write(folder / name, f"{name} v2\\n")
""")


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_a_kill_at_any_rename_leaves_the_old_set_or_the_new_set(tmp_path, kill_at):
    """Renames: 1 the journal (the commit point), 2-4 the three files, 5 the manifest."""
    _publish(tmp_path, 1)
    old = _contents(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _KILL_AT, str(tmp_path), str(kill_at)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    manifest = outputs.check_output_set(tmp_path)  # the reader's side: completes a committed set, checks every file
    got = _contents(tmp_path)
    new = {k: v.replace("v1", "v2") for k, v in old.items()}
    assert got == (old if kill_at == 1 else new)
    assert sorted(manifest["files"]) == sorted(got)
    assert not list(tmp_path.glob(".manifest.json.pending"))


def test_a_mixed_set_is_detected_by_the_reader(tmp_path):
    _publish(tmp_path, 1)
    (tmp_path / "report.html").write_text("edited by hand\n")
    with pytest.raises(ValueError, match="'report.html' is not the file published with this set"):
        outputs.check_output_set(tmp_path)


def test_interrupt_message_is_true_about_what_was_left(tmp_path):
    args = cli.build_parser().parse_args(["diagnose", "model.pt", "--out", str(tmp_path)])
    assert cli._main._after_interrupt(args, time.time()) == "interrupted; no partial output was left"
    (tmp_path / ".report.html.abc.tmp").write_text("half")
    msg = cli._main._after_interrupt(args, time.time())
    assert msg == "interrupted; removed 1 temporary file(s); no partial output was left"
    assert not list(tmp_path.glob(".*.tmp"))


def test_sigterm_during_diagnose_removes_its_files_and_says_so(tmp_path):
    model = _lstm_file(tmp_path)
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "lstm_jax", "diagnose", str(model), "--T", "3000", "--batch",
                             "64", "--out", str(out)], stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.time() + 240
    while "diagnose" not in seen and time.time() < deadline:  # the progress bar: computing has started
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGTERM)
    err = seen + proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    assert "lstm-jax diagnose: interrupted;" in err and "no partial output was left" in err
    assert "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())


def test_an_interrupt_just_after_the_commit_point_keeps_what_the_journal_needs(tmp_path, monkeypatch):
    """Ctrl-C while the journal is being written (the first rename): the staged files stay, so the set completes."""
    from lstm_jax import outputs as _files

    _publish(tmp_path, 1)
    real = _files._fsync_dir

    def interrupted(folder):
        if (folder / ".manifest.json.pending").exists():
            raise KeyboardInterrupt
        return real(folder)

    monkeypatch.setattr(_files, "_fsync_dir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _publish(tmp_path, 2)
    monkeypatch.undo()
    outputs.check_output_set(tmp_path)
    assert set(_contents(tmp_path).values()) == {"report.html v2\n", "diagnosis.json v2\n", "a.png v2\n"}


def test_an_npy_header_declaring_gigabytes_is_refused_before_it_is_read(tmp_path):
    f = tmp_path / "x.npy"
    f.write_bytes(b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{" + b" " * 1000)
    with pytest.raises(ValueError, match=r"header declares 2147483648 bytes; at most 65536 are read"):
        _sniff.read_npy(f, "--data")


def test_corrupt_deflate_data_and_zero_size_dtypes_are_value_errors(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, a=np.random.default_rng(0).normal(size=(64, 64)))
    raw = bytearray(good.read_bytes())
    raw[200:260] = bytes(60)  # inside the deflated member
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a readable"):
        _sniff.read_npz(tmp_path / "bad.npz", "MODEL")
    with open(tmp_path / "v0.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|V0", "fortran_order": False, "shape": (10**12,)})
    with pytest.raises(ValueError, match=r"has dtype \|V0; expected a numeric array"):
        _sniff.read_npy(tmp_path / "v0.npy", "--data")


def test_a_growth_beyond_float64_is_written_as_a_power_of_ten_not_an_overflow():
    from lstm_jax.diagnose._core import _exp, _flow_sentence

    flow = {"rate": 0.5, "rate_stderr": 0.01, "fit_lags": [1, 2001], "measurable": True, "half_life": None,
            "doubling_time": math.log(2) / 0.5, "doubling_time_interval": [1.35, 1.42], "extrapolated": False,
            "factor_over_fit": _exp(0.5 * 2000), "rate_interval": [0.48, 0.52]}
    assert flow["factor_over_fit"] == math.inf
    assert "×10^434.3 over those 2000 lags" in _flow_sentence("layer0.forward", flow, 2001)


def test_formats_read_whole_are_bounded_by_their_file_size(tmp_path, monkeypatch):
    """msgpack and legacy-pickle checkpoints are read into memory whole: their size is checked first."""
    from lstm_jax.io import _load

    monkeypatch.setattr(_load, "array_budget", lambda: 1000)
    (tmp_path / "big.msgpack").write_bytes(b"\x81\xa1a" + bytes(5000))
    with pytest.raises(ValueError, match=r"is read whole; at most 0\.00 GiB are read"):
        lio.load_model(tmp_path / "big.msgpack")
    torch.save(torch.nn.LSTM(M, 64).state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert _sniff.sniff(tmp_path / "legacy.pt") == "pickle"
    with pytest.raises(ValueError, match="is read whole"):
        lio.load_model(tmp_path / "legacy.pt")
