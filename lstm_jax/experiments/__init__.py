"""Training experiments: does training use the forget gate?  The 1997 adding problem, reproduced.

Front door of the ``lstm_jax.experiments`` wing; it uses only the public names of :mod:`lstm_jax`.

* tasks: :func:`adding_problem_1997` (H&S 1997 Experiment 4 as specified), :func:`adding_problem`
  (the common variant), :func:`temporal_order`; :func:`stopping_rule` (the paper's);
* models: :data:`MODELS` (``rnn-tanh``, ``rnn-sigmoid``, ``rnn-floss``, ``lstm-bf0`` … ``lstm-bf6``,
  ``lstm-chrono``, ``lstm-1997``, ``lstm-frozen-forget``, ``lstm-1997-ib``; the ``constant`` control; the PyTorch
  replicas ``torch-lstm-bf1``, ``torch-lstm-chrono``; the modern cells ``mingru``, ``minlstm``, ``rglru``, ``mlstm``
  (trained in parallel over time) and ``slstm``), :class:`ModelSpec`, :func:`loss_terms` (the
  training objective, written once), :func:`floss_penalty` (gradient flossing);
* training: :class:`TrainSettings`, :func:`train_run` (to the stopping rule, with
  :func:`flow_snapshot` gradient-flow measurements along the way);
* the sweep and its report: ``lstm-jax sweep`` (``docs/long-lag/``; the report's statistics come from
  ``scipy.stats``, ``_stats.py``; controls, collapse rule and contrasts in ``_report.py``);
* the article's learning claim: :func:`measure_forget_claim` (``key -> dict``) and
  :func:`forget_claim_verdict` (``dict -> (verdict, statement)``), id :data:`FORGET_CLAIM_ID`
  (``proofs/forget-gate-training.md``).
"""

from ._flow_during import flow_snapshot
from ._forget_claim import CLAIM_ID as FORGET_CLAIM_ID
from ._forget_claim import measure as measure_forget_claim
from ._forget_claim import verdict as forget_claim_verdict
from ._models import MODELS, ModelSpec, floss_penalty, init_model, loss_terms
from ._tasks import TaskBatch, adding_problem, adding_problem_1997, stopping_rule, temporal_order
from ._train import TrainSettings, train_run

__all__ = [
    "TaskBatch",
    "adding_problem_1997",
    "adding_problem",
    "temporal_order",
    "stopping_rule",
    "MODELS",
    "ModelSpec",
    "init_model",
    "loss_terms",
    "floss_penalty",
    "TrainSettings",
    "train_run",
    "flow_snapshot",
    "FORGET_CLAIM_ID",
    "measure_forget_claim",
    "forget_claim_verdict",
]
