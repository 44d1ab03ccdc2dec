"""Tie policy: what a strength-0 pair (annotators saw no difference) means to each loss.

HelpSteer2-Preference's code never trains a tie as "response_2 wins": for Bradley-Terry ("bt")
and Margin BT ("margin_bt") ties are dropped. Scaled BT multiplies the loss by the strength, so a
tie contributes exactly zero; we drop ties there too by default. Dropping is equivalent for the
gradient of the summed loss but not for a loss averaged over pairs (ties would dilute the mean and
shrink the effective learning rate), and it makes the three BT losses see the same batches, which
is what a matched comparison needs. `drop_ties=False` keeps ties (strength 0) for scaled_bt only.
"""
from __future__ import annotations

from typing import Optional

from helpsteer_jax.data.records import Counts, DataError, PreferencePair

# Losses for which a kept tie would be trained as a real preference.
MUST_DROP_TIES = ("bt", "margin_bt")


def resolve_drop_ties(loss: Optional[str], drop_ties: Optional[bool] = None) -> bool:
  """Whether to drop strength-0 pairs for `loss`; None means the default (drop)."""
  if drop_ties is None:
    return True
  if not drop_ties and loss in MUST_DROP_TIES:
    raise DataError(f"loss {loss!r} cannot keep ties: a strength-0 pair would be trained as "
                    f"'chosen wins'; only scaled_bt (tie weight 0) may set drop_ties=False")
  return bool(drop_ties)


def finish_pairs(pairs: list[PreferencePair], counts: Counts, *,
                 drop_ties: bool) -> list[PreferencePair]:
  """Applies the tie policy, drops pairs whose two responses are the same text, sets `kept`."""
  out = []
  for p in pairs:
    if p.chosen == p.rejected:
      counts.skip("identical_responses")
    elif p.strength == 0 and drop_ties:
      counts.dropped_tie += 1
    else:
      out.append(p)
  counts.kept = len(out)
  return out
