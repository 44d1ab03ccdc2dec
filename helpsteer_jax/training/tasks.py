"""The table of training paradigms: what each trains, with which objective, on which batches.

A run's `config.loss.name` picks its task (`task_for`): the pairwise Bradley-Terry family, SteerLM
regression, or DPO. Each entry says how the paradigm builds its model from a started checkpoint
(training/model_setup.py), its training objective and its validation objective (pairwise accuracy
for every paradigm, so runs compare), and what its batches hold (data_setup.py reads these
fields). A new paradigm (a judge, another preference loss) is a new row here, never a string test
in the trainer; a new loop (RL) builds on training/trainer.py as rlhf/train.py does.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from helpsteer_jax import losses
from helpsteer_jax.training import model_setup, objectives
from helpsteer_jax.training.step import Objective

ModelBuilder = Callable[..., model_setup.BuiltModel]  # (model_cfg, cfg, tokenizer, pre, seed)
ObjectiveBuilder = Callable[[Any, Any], Objective]  # (run config, flax model) -> objective


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  title: str  # for messages
  losses: Mapping[str, losses.LossFn]  # the `loss.name`s this paradigm trains with
  build_model: ModelBuilder
  objective: ObjectiveBuilder
  eval_objective: ObjectiveBuilder  # validation: accuracy on held-out preference pairs
  batches: str  # what a training batch holds: "pairs" or "ratings"
  response_mask: bool = False  # pair batches mark response tokens (sums of response log-probs)
  packable: bool = False  # data.packing may pack several pairs to a row
  eval_ratings: bool = False  # also validates on held-out ratings (data.eval_ratings)
  frozen: str | None = None  # a parameter subtree the optimiser never updates
  reward_head: bool = True  # the trained model ends in a reward head (else: a causal LM)
  trained_subtree: tuple[str, ...] = ()  # where the trained model sits in the saved params
  reference_forwards: int = 0  # forward passes of a reference model per step (FLOPs, MFU)


def _pairwise(config: Any, model: Any) -> Objective:
  loss = config.loss
  return objectives.pairwise_objective(model, loss.name, head_index=loss.head_index,
                                       normalize=loss.normalize,
                                       centering_coef=loss.centering_coef)


def _regression(config: Any, model: Any) -> Objective:
  return objectives.regression_objective(model, tuple(config.data.attributes))


def _regression_eval(config: Any, model: Any) -> Objective:
  """The regression head's helpfulness output, ranked pairwise like a BT reward."""
  head = list(config.data.attributes).index("helpfulness")
  return objectives.pairwise_objective(model, "bt", head_index=head)


def _dpo(config: Any, model: Any) -> Objective:
  return objectives.dpo_objective(model, config.loss.name, beta=config.loss.beta)


TASKS: Mapping[str, Task] = {
    "pairwise": Task(
        name="pairwise", title="Bradley-Terry", losses=losses.PAIRWISE_LOSSES,
        build_model=model_setup.reward_model, objective=_pairwise, eval_objective=_pairwise,
        batches="pairs", packable=True),
    "regression": Task(
        name="regression", title="regression", losses={"regression": losses.regression},
        build_model=model_setup.reward_model, objective=_regression,
        eval_objective=_regression_eval, batches="ratings", eval_ratings=True),
    "dpo": Task(
        name="dpo", title="DPO", losses=losses.DPO_LOSSES, build_model=model_setup.dpo_model,
        objective=_dpo, eval_objective=_dpo, batches="pairs", response_mask=True,
        frozen="ref", reward_head=False, trained_subtree=("policy",), reference_forwards=1),
}


def task_for(loss_name: str) -> Task:
  """The paradigm that trains with `loss_name`."""
  for task in TASKS.values():
    if loss_name in task.losses:
      return task
  known = sorted(name for task in TASKS.values() for name in task.losses)
  raise ValueError(f"unknown loss {loss_name!r}; choose one of {known}")
