"""A data source as a small spec (what a ml_collections config holds) and the two entry points.

  pairs, counts = load_preferences({"format": "helpsteer2_preference",
                                    "path": "nvidia/HelpSteer2", "split": "train"}, loss="bt")
  rated, counts = load_ratings({"format": "helpsteer2_ratings", "path": "train.jsonl.gz"})

`path` is a local file (jsonl, jsonl.gz, json, parquet), a local folder laid out like a hub
repository, or a hub id. Formats and the options they read are in `FORMATS`; an option a format
does not read, or an unknown key, is an error rather than silently ignored.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional, Union

from helpsteer_jax.data import adapters, generic, helpsteer
from helpsteer_jax.data.reading import read_split
from helpsteer_jax.data.records import ATTRIBUTES, Counts, DataError, PreferencePair, RatedExample
from helpsteer_jax.data.ties import finish_pairs, resolve_drop_ties


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Where the data is, how to read it, and what to do with bad rows and ties."""
  format: str
  path: str
  split: Optional[str] = None  # None/"all": every row; see reading.read_split
  data_dir: Optional[str] = None  # hub sub-folder; helpsteer2_preference defaults to "preference"
  skip_invalid: bool = False  # count and skip bad rows instead of raising
  drop_ties: Optional[bool] = None  # None: the default of ties.resolve_drop_ties (drop)
  validation_fraction: float = 0.0  # prompts held out when the data has no split of its own
  strength_column: Optional[str] = None  # chosen_rejected: a margin/strength column (else 1.0)
  attributes: tuple[str, ...] = ATTRIBUTES  # ratings: which attributes to read
  # {field the format reads: column of this file}, e.g. {"prompt": "question", "chosen": "good"}:
  # a file with other column names read as the format's schema.
  columns: Optional[Mapping[str, str]] = None
  max_rows: int = 0  # read only the file's first rows (1-based row numbers <= max_rows); 0: all

  @classmethod
  def create(cls, spec: Union["DataSpec", Mapping[str, Any]]) -> "DataSpec":
    """From a DataSpec, a dict or a ConfigDict; unknown keys are errors (typos fail loudly)."""
    if isinstance(spec, DataSpec):
      return spec
    if hasattr(spec, "to_dict"):  # ml_collections.ConfigDict
      spec = spec.to_dict()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(spec) - fields
    if unknown:
      raise DataError(f"unknown data spec key(s) {sorted(unknown)}; known: {sorted(fields)}")
    kw = dict(spec)
    if "attributes" in kw:
      kw["attributes"] = tuple(kw["attributes"])
    if kw.get("columns") is not None:
      kw["columns"] = dict(kw["columns"])
    kw["path"] = os.fspath(kw["path"])
    return cls(**kw)

  @property
  def name(self) -> str:
    """The name used in reports: the file name, or hub id, plus the split."""
    base = os.path.basename(self.path) if os.path.exists(self.path) else self.path
    return base if self.split in (None, "", "all") else f"{base}[{self.split}]"


@dataclasses.dataclass(frozen=True)
class Format:
  kind: str  # "pairs" or "ratings"
  load: Callable[..., list]
  prompt_key: Callable[[dict[str, Any]], str]  # for the hash split of split-less files
  options: tuple[str, ...] = ()  # spec fields passed on to `load`
  data_dir: Optional[str] = None


def _column(name: str) -> Callable[[dict[str, Any]], str]:
  return lambda row: str(row.get(name, "")) if isinstance(row, dict) else ""


def _prompt_or_chosen(row: dict[str, Any]) -> str:
  """The explicit prompt, or the shared part of an implicit-prompt conversation."""
  if not isinstance(row, dict):
    return ""
  if row.get("prompt") is not None:
    return str(row["prompt"])
  chosen = row.get("chosen")
  return str(chosen[:-1]) if isinstance(chosen, list) else ""


_RATINGS = Format("ratings", helpsteer.load_ratings, _column("prompt"), ("attributes",))
FORMATS: dict[str, Format] = {
    "helpsteer2_preference": Format("pairs", helpsteer.load_preferences, _column("prompt"),
                                    data_dir="preference"),
    "helpsteer2_ratings": _RATINGS,
    "helpsteer_ratings": _RATINGS,  # HelpSteer v1: the same schema
    "helpsteer_ratings_pairs": Format("pairs", helpsteer.matched_pairs, _column("prompt")),
    "chosen_rejected": Format("pairs", generic.load_chosen_rejected, _prompt_or_chosen,
                              ("strength_column",)),
    "hh_rlhf": Format("pairs", generic.load_hh_rlhf, generic.hh_prompt_key),
    "pandalm": Format("pairs", adapters.load_pandalm, adapters.pandalm_prompt),
    "stack_exchange": Format("pairs", adapters.load_stack_exchange, _column("question")),
    "arena": Format("pairs", adapters.load_arena, _column("prompt")),
}


def _renamed(row: Any, columns: Mapping[str, str]) -> Any:
  if not isinstance(row, dict):
    return row
  return {**row, **{ours: row[theirs] for ours, theirs in columns.items() if theirs in row}}


def _rename_rows(rows, columns: Mapping[str, str], counts: Counts, skip_invalid: bool):
  """Rows with the mapped columns under the format's names; a row without one is bad input."""
  for src, i, row in rows:
    missing = [theirs for theirs in columns.values()
               if not isinstance(row, dict) or theirs not in row]
    if missing:
      if skip_invalid:  # counted as parse_rows counts a bad row
        counts.rows += 1
        counts.invalid += 1
        continue
      raise DataError(f"{src}:{i}: no column {missing[0]!r} (the data spec maps "
                      f"{ {k: v for k, v in columns.items() if v in missing} } to it)")
    yield src, i, _renamed(row, columns)


def _read(spec: DataSpec, kind: str) -> tuple[list, Counts]:
  fmt = FORMATS.get(spec.format)
  if fmt is None:
    raise DataError(f"unknown data format {spec.format!r}; known: {sorted(FORMATS)}")
  if fmt.kind != kind:
    raise DataError(f"format {spec.format!r} gives {fmt.kind}, not {kind}")
  defaults = DataSpec(format="", path="")
  for opt in ("strength_column", "attributes"):
    if opt not in fmt.options and getattr(spec, opt) != getattr(defaults, opt):
      raise DataError(f"format {spec.format!r} does not read option {opt!r}")
  counts = Counts(source=spec.name)
  prompt_key = fmt.prompt_key
  if spec.columns:
    prompt_key = lambda row: fmt.prompt_key(_renamed(row, spec.columns))
  rows = read_split(spec.path, spec.split, data_dir=spec.data_dir or fmt.data_dir, counts=counts,
                    skip_invalid=spec.skip_invalid, validation_fraction=spec.validation_fraction,
                    prompt_key=prompt_key)
  if spec.columns:
    rows = _rename_rows(rows, spec.columns, counts, spec.skip_invalid)
  if spec.max_rows:
    rows = (r for r in rows if r[1] <= spec.max_rows)
  records = fmt.load(rows, counts, skip_invalid=spec.skip_invalid,
                     **{opt: getattr(spec, opt) for opt in fmt.options})
  return records, counts


def load_preferences(spec: Union[DataSpec, Mapping[str, Any]],
                     loss: Optional[str] = None) -> tuple[list[PreferencePair], Counts]:
  """Preference pairs of a source, after the tie policy for `loss` (see ties.py), and counts."""
  spec = DataSpec.create(spec)
  drop = resolve_drop_ties(loss, spec.drop_ties)
  pairs, counts = _read(spec, "pairs")
  return finish_pairs(pairs, counts, drop_ties=drop), counts


def load_ratings(spec: Union[DataSpec, Mapping[str, Any]]) -> tuple[list[RatedExample], Counts]:
  """Rated responses of a source (HelpSteer schema) and counts."""
  spec = DataSpec.create(spec)
  if spec.drop_ties is not None:
    raise DataError("drop_ties applies to preference pairs, not to ratings")
  return _read(spec, "ratings")
