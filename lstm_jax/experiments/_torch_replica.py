r"""The PyTorch replication of the long-lag runs: ``torch.nn.LSTM`` trained on the same batches.

Model ids :data:`TORCH_MODELS` (``torch-lstm-bf1``, ``torch-lstm-chrono``) are ``lstm-bf1`` / ``lstm-chrono``
trained by PyTorch instead of JAX, with everything else held fixed, so that a difference between the two
rows can only come from the framework (its kernels, its float32 rounding, its optimiser code):

* **the same initial parameters**: :func:`~lstm_jax.experiments.init_model` of the JAX model (same key),
  copied into ``torch.nn.LSTM(m, n, batch_first=True)`` (gate order i, f, g, o, by
  :func:`lstm_jax.io.to_torch_state_dict`) and a ``torch.nn.Linear(n, 1)`` readout;
  ``bias_hh`` is zero and **not trained**, so each gate has one bias, as in the JAX cell (training both
  of PyTorch's biases would give every bias two Adam copies, a different optimiser);
* **the same batches**: the task generator's ``fold_in(data_key, step)`` stream, converted to tensors;
  the readout takes the output at each sequence's own last step (the LSTM is causal, so the right padding
  changes nothing);
* **the same optimiser**: ``torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8)`` (optax's defaults) after
  ``torch.nn.utils.clip_grad_norm_(…, clip)``.  The one difference: PyTorch scales by
  ``clip / (norm + 1e-6)`` where optax scales by ``clip / norm`` (both only when the norm exceeds ``clip``);
* **the same stopping rule, test set and test-time parameters**: the training loop is
  :func:`~lstm_jax.experiments.train_run`'s; the chunk below returns the PyTorch weights converted back
  (:func:`lstm_jax.io.from_torch_arrays`), so the test errors and the gradient-flow snapshots are measured
  by the same code as the JAX rows.
"""

from __future__ import annotations

import numpy as np

from ._models import TORCH_MODELS

PREFIX = "torch-"


def base_model(model: str) -> str:
    """``lstm-bf1`` for ``torch-lstm-bf1``; any other id unchanged."""
    return model[len(PREFIX):] if model in TORCH_MODELS else model


def torch_chunk(spec, settings, params: dict):
    """``(state, chunk)`` with the interface of :func:`~lstm_jax.experiments._train.make_chunk`'s ``chunk``:
    ``chunk(params, state, data_key, step0) -> (params, state, abs_errors (K, B), losses (K,), scored)``;
    the PyTorch modules and optimiser live in ``state`` (``params`` in is ignored, the weights out are the
    PyTorch ones converted to the JAX layout)."""
    try:
        import torch
    except ImportError:
        raise ValueError(f"model {spec.model!r} needs PyTorch: pip install 'lstm-jax[compare]'") from None
    import jax
    import jax.numpy as jnp

    from ..io import from_torch_arrays, to_torch_state_dict
    from ._tasks import check_task

    gen, m, out, _, regression = check_task(spec.task)
    if not regression:
        raise ValueError(f"the PyTorch replication runs regression tasks only, got task {spec.task!r}")
    n, K, B = spec.n, settings.check_every, settings.batch
    lstm = torch.nn.LSTM(m, n, batch_first=True)
    head = torch.nn.Linear(n, out)
    sd = to_torch_state_dict([params["cell"]])
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.as_tensor(sd["weight_ih_l0"]))
        lstm.weight_hh_l0.copy_(torch.as_tensor(sd["weight_hh_l0"]))
        lstm.bias_ih_l0.copy_(torch.as_tensor(sd["bias_ih_l0"]))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.as_tensor(np.array(params["W_out"])))
        head.bias.copy_(torch.as_tensor(np.array(params["b_out"])))
    lstm.bias_hh_l0.requires_grad_(False)
    trained = [p for p in list(lstm.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(trained, lr=settings.lr, betas=(0.9, 0.999), eps=1e-8)
    batches = jax.jit(lambda key, step0: jax.vmap(lambda i: gen(jax.random.fold_in(key, i), B, spec.T))(
        step0 + jnp.arange(K)))

    def as_jax():
        with torch.no_grad():
            _, cell = from_torch_arrays(lstm.weight_ih_l0.numpy().copy(), lstm.weight_hh_l0.numpy().copy(),
                                        lstm.bias_ih_l0.numpy().copy(), lstm.bias_hh_l0.numpy().copy(), kind="lstm")
            return {"cell": cell, "W_out": jnp.asarray(head.weight.numpy().copy()),
                    "b_out": jnp.asarray(head.bias.numpy().copy())}

    def chunk(_params, state, key, step0):
        b = jax.device_get(batches(key, step0))
        xs, ys, last = torch.as_tensor(np.array(b.xs)), torch.as_tensor(np.array(b.y)), np.array(b.lengths) - 1
        errs, losses, scored = [], [], None
        for k in range(K):
            if k == K - 1:
                scored = as_jax()  # the parameters that score the chunk's last batch
            outs, _ = lstm(xs[k])
            pred = head(outs[torch.arange(B), torch.as_tensor(last[k])])[:, 0]
            err = pred - ys[k]
            loss = torch.mean(err**2)
            opt.zero_grad()
            loss.backward()
            if settings.clip:
                torch.nn.utils.clip_grad_norm_(trained, settings.clip)
            opt.step()
            errs.append(err.detach().abs().numpy())
            losses.append(float(loss.detach()))
        return as_jax(), state, np.stack(errs), np.asarray(losses), scored

    return (lstm, head, opt), chunk
