"""Tie policy: what a strength-0 pair (annotators saw no difference) means to each loss.

HelpSteer2-Preference's code never trains a tie as "response_2 wins": for Bradley-Terry ("bt")
and Margin BT ("margin_bt") ties are dropped. Scaled BT multiplies the loss by the strength, so a
tie contributes exactly zero; we drop ties there too by default. Dropping is equivalent for the
gradient of the summed loss but not for a loss averaged over pairs (ties would dilute the mean and
shrink the effective learning rate), and it makes the three BT losses see the same batches, which
is what a matched comparison needs.

The same holds for DPO (`losses.DPO_LOSSES`): "dpo" is −log σ(h) whatever the strength and
"dpo_margin" is −log σ(h − m), which at m = 0 is plain DPO, so both would train a kept tie as
"chosen wins"; "dpo_scaled" is −m · log σ(h), zero at m = 0 like Scaled BT. `drop_ties=False`
therefore keeps ties (strength 0) only for the strength-scaled losses, scaled_bt and dpo_scaled.
"""
from __future__ import annotations

from typing import Optional

from helpsteer_jax.data.records import Counts, DataError, PreferencePair

# The losses that multiply each pair's term by its strength, so that a tie's loss and gradient are
# exactly 0 (tests/test_losses.py checks this against the losses themselves). Any other loss
# ("bt", "margin_bt", "dpo", "dpo_margin", or one added later) would train a kept tie as a real
# preference, so keeping ties is refused unless the loss is listed here.
MAY_KEEP_TIES = ("scaled_bt", "dpo_scaled")


def resolve_drop_ties(loss: Optional[str], drop_ties: Optional[bool] = None) -> bool:
  """Whether to drop strength-0 pairs for `loss`; None means the default (drop).

  `loss=None` (pairs read outside training, e.g. RLHF prompts) may keep ties.
  """
  if drop_ties is None:
    return True
  if not drop_ties and loss is not None and loss not in MAY_KEEP_TIES:
    raise DataError(f"loss {loss!r} cannot keep ties: a strength-0 pair would be trained as "
                    f"'chosen wins'; only {' and '.join(MAY_KEEP_TIES)} (tie weight 0) may set "
                    f"drop_ties=False")
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
