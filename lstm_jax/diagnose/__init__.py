r"""Diagnose your own recurrent network: how its gradients flow, in one self-contained report.

Front door of the ``lstm_jax.diagnose`` wing (it uses only the public names of :mod:`lstm_jax`
and :mod:`lstm_jax.io`).  ``diagnose(model, xs, key=...)`` computes, per layer and direction,
the statistics described in ``lstm_jax.diagnose._core`` (gradient-flow norms against the lag
with a finite-time growth rate and a gradient half-life, Lyapunov exponents from random
start directions, the article's eq. (6) terms, gate histograms, memory time constants,
saturation, and all of it again for a freshly initialised model); ``write_report(diagnosis,
out_dir)`` writes them; ``lstm-jax diagnose MODEL`` does both from the command line.

Example::

    import jax
    jax.config.update("jax_enable_x64", True)
    from lstm_jax.io import load_model
    from lstm_jax.diagnose import diagnose, write_report
    model = load_model("model.pt")                   # a torch nn.LSTM/GRU state_dict, a Flax/lstm_jax file, ...
    xs = jax.random.normal(jax.random.PRNGKey(1), (16, 200, model.m))
    write_report(diagnose(model, xs, key=jax.random.PRNGKey(0)), "diagnosis")

The article: N. Arbel, "How LSTM networks solve the problem of vanishing gradients",
DataDrivenInvestor (Medium).

``diagnosis.json``, schema 1 (every number of ``report.html``; ``null`` stands for NaN/inf or
"not applicable")::

    {"schema": 1,
     "model":  {"kind", "n", "m", "layers", "directions", "source", "recurrences": [names]},
     "inputs": {"source", "batch", "T", "m", "dtype", "lengths": {"min", "max", "mean"},
                "padded", "k", "transient", "jax_version", "device"},
     "layers": [{
        "name": "layer0.forward", "kind", "layer", "reverse", "n", "m" (this layer's input size),
        "flow": {"norm": description,
                 "lags": [l1, l2, ...],                 # lag = T - t, every `stride` steps
                 "median", "q10", "q90": [...],         # LOG10 of the spectral norm of the
                                                        # joint-state Jacobian ds_T/ds_(T-lag),
                                                        # median and 10/90 % quantiles over sequences
                 "rate", "rate_stderr",                 # finite-time growth rate per step (natural
                                                        # log) and its standard error over sequences
                 "rate_interval": [lo, hi],              # rate ± 2 stderr, at least ± 1e3 eps max(|rate|, 1)
                 "measurable": bool,                     # the interval excludes 0
                 "half_life" | null, "doubling_time" | null,   # ln 2 / |rate| steps, only when measurable
                 "half_life_interval" | null, "doubling_time_interval" | null,  # from rate_interval
                 "extrapolated": bool,                   # half-life / doubling time longer than the fit
                 "factor_over_fit": exp(rate * (to - from)),
                 "fit_lags": [from, to], "per_sequence_rate": [...], "sentence": str,
                 "exact_zero": {"sequences", "from_lag" | null},  # products exactly 0 (log 0 = -inf)
                 "norm_method": {"method": str, "checked_lags": [...],  # Lanczos, then power
                                 "max_relative_error" | null,          # iteration, checked by SVDs
                                 "window_steps": int,                  # steps of the full d x d product
                                 "tail_rank": int,                     # rank carried after them (d: all)
                                 "tail_discarded_share": float}},      # sigma_(r+1)/sigma_1 there (0: none)
        "lyapunov": {"exponents": [k, descending], "stderr": [k], "k", "transient",
                     "start_directions", "per_sequence_leading": [B]},
        "agreement": {"agree": bool | null, "difference": rate - exponent[0],
                      "combined_stderr", "sentence": str},
        "terms": null | {"norm": "spectral", "times": [t...],
                         "median": {"A": [...], "B": [...], "C": [...], "D": [...]},
                         "overall_median": {"A", "B", "C", "D"},
                         "norm_method": {"method": str, "checked_times": [...],  # Lanczos,
                                         "max_relative_error" | null}},         # checked by SVDs
        "gates": {"bins": [41 edges on 0..1], "memory_gate": "f" | "z" | null,
                  "saturation_rule": str, "saturated_units": fraction,
                  "gates": {name: {"unit_mean": [n], "hist": [40 counts],
                                   "saturated_low", "saturated_high", "saturated"}},
                  "tau": [n] (memory time constant -1/log mean gate, steps),
                  "tau_median", "tau_longer_than_T"},
        "baseline": {"flow", "lyapunov", "agreement", "terms", "gates", "init"} | null
     }],
     "figures": {layer name: [png file names]}}

A reader must check ``"schema"``; a change of any field's meaning increments it.
"""

from ._core import SCHEMA_VERSION, Diagnosis, LayerDiagnosis, diagnose, estimate_bytes
from ._report import write_report


__all__ = ["diagnose", "estimate_bytes", "Diagnosis", "LayerDiagnosis", "write_report", "SCHEMA_VERSION"]
