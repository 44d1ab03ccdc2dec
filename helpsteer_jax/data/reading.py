"""Reading raw rows, each tagged with its source and 1-based row number, and choosing a split.

Local files are jsonl, jsonl.gz, json (an array of objects, or jsonl), json.gz and parquet. JSON
is parsed line by line here (not by `datasets`) so an unreadable line is reported as `file:line`;
text must be UTF-8 (a leading BOM is allowed), and a byte that is not is reported the same way.
`text_lines` and `read_text` are the UTF-8 readers the other commands' row readers use too.
Anything else (a hub id such as `nvidia/HelpSteer2`, or a local folder laid out like a hub
repository) goes through `datasets.load_dataset`, optionally with `data_dir` (HelpSteer2's
preferences live in `data_dir="preference"`).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from helpsteer_jax.data.records import Counts, DataError, where

Row = tuple[str, int, dict[str, Any]]  # (source, 1-based row number, the row)

_JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_FILE_SUFFIXES = _JSON_SUFFIXES + (".parquet",)


def _open_bytes(path: Path):
  # Bytes, decoded line by line below, so that a bad byte can be reported with its line number.
  return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _not_utf8(source: str, line_no: int, byte: int, column: int) -> DataError:
  return DataError(f"{where(source, line_no)}: not UTF-8 text (byte 0x{byte:02x} at byte {column} "
                   f"of the line); save the file as UTF-8")


def _decode_line(line: bytes, source: str, line_no: int) -> str:
  try:
    return line.decode("utf-8-sig" if line_no == 1 else "utf-8")
  except UnicodeDecodeError as e:
    # e.object, not line: with utf-8-sig the positions are those after a leading BOM.
    raise _not_utf8(source, line_no, e.object[e.start], e.start + 1) from e


def text_lines(path: str | os.PathLike, source: Optional[str] = None) -> Iterator[tuple[int, str]]:
  """(1-based line number, line) of a UTF-8 text file (gzip by suffix), decoded one line at a
  time; a byte that is not UTF-8 raises a DataError naming `source:line` (`source`: the path)."""
  path = Path(path)
  source = os.fspath(path) if source is None else source
  try:
    with _open_bytes(path) as f:
      for line_no, line in enumerate(f, 1):
        yield line_no, _decode_line(line, source, line_no)
  except (OSError, EOFError) as e:  # truncated gzip, unreadable file: not per line
    raise DataError(f"{source}: cannot read ({e})") from e


def read_text(path: str | os.PathLike, source: Optional[str] = None) -> str:
  """The whole of a UTF-8 text file (gzip by suffix); bad bytes: a DataError naming the line."""
  path = Path(path)
  source = os.fspath(path) if source is None else source
  try:
    with _open_bytes(path) as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"{source}: cannot read ({e})") from e
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    text = e.object  # positions are after a leading BOM, if any
    line_no = text.count(b"\n", 0, e.start) + 1
    column = e.start - text.rfind(b"\n", 0, e.start)
    raise _not_utf8(source, line_no, text[e.start], column) from e


def _read_json_lines(path: Path, name: str, counts: Counts, skip_invalid: bool) -> Iterator[Row]:
  # Bytes that are not UTF-8 are not skippable like bad JSON: the file's encoding is wrong, and
  # skipping would quietly drop every row with a non-ASCII character.
  for line_no, line in text_lines(path, name):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      problem = None if isinstance(row, dict) else "a row must be a JSON object"
    except json.JSONDecodeError as e:
      problem = f"not valid JSON ({e.msg})"
    if problem is None:
      yield name, line_no, row
    elif skip_invalid:  # counted here: such a line never reaches a parser (nor a split)
      counts.rows += 1
      counts.invalid += 1
    else:
      raise DataError(f"{where(name, line_no)}: {problem}")


def _read_json_array(path: Path, name: str) -> Iterator[Row]:
  text = read_text(path, name)
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    # A JSON array cannot be resumed after a syntax error, so skip_invalid cannot apply here.
    raise DataError(f"{where(name, e.lineno)}: not valid JSON ({e.msg}; line {e.lineno} of the "
                    f"array file)") from e
  if not isinstance(data, list):
    raise DataError(f"{name}: a .json file must hold an array of row objects")
  for i, row in enumerate(data, 1):
    yield name, i, row  # non-dict rows are rejected by the format's parser, with the row


def _is_json_array(path: Path) -> bool:
  # Bytes, not text: the first non-blank byte decides, whatever the encoding of what follows
  # (a bad byte is then reported with its line by the reader).
  try:
    with _open_bytes(path) as f:
      for chunk in iter(lambda: f.read(256), b""):
        stripped = chunk.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()  # BOM
        if stripped:
          return stripped[:1] == b"["
  except (OSError, EOFError) as e:
    raise DataError(f"{path.name}: cannot read ({e})") from e
  return False


def _read_parquet(path: Path, name: str) -> Iterator[Row]:
  import datasets  # pylint: disable=g-import-not-at-top  (slow import, only when needed)
  try:
    ds = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
  except Exception as e:  # pyarrow raises several types for a bad file
    raise DataError(f"{name}: cannot read parquet ({e})") from e
  for i, row in enumerate(ds, 1):
    yield name, i, row


def _read_datasets(path: str, data_dir: Optional[str]) -> Iterator[Row]:
  """Every split of a hub dataset (or a local folder laid out like one), in split order."""
  import datasets  # pylint: disable=g-import-not-at-top
  try:
    dd = datasets.load_dataset(path, data_dir=data_dir)
  except Exception as e:  # offline, missing repo, bad files: one clear message
    raise DataError(f"{path}: cannot load with datasets.load_dataset (data_dir={data_dir!r}): "
                    f"{e}") from e
  base = path if not data_dir else f"{path}/{data_dir}"
  for hf_split, ds in dd.items():
    for i, row in enumerate(ds, 1):
      yield f"{base}[{hf_split}]", i, row


def is_local_file(path: str) -> bool:
  return any(str(path).endswith(s) for s in _FILE_SUFFIXES)


def read_rows(path: str | os.PathLike, *, data_dir: Optional[str] = None, counts: Counts,
              skip_invalid: bool = False, name: Optional[str] = None) -> Iterator[Row]:
  """Rows of a local file (by suffix) or of every split of a hub dataset / hub-like folder.

  Unreadable JSON lines raise a DataError naming file and line, or are counted as invalid
  under `skip_invalid`. A local file's rows (and errors) are named by the file's name, or by
  `name` when given (the commands that read one file name it as the user wrote it).
  """
  path_s = os.fspath(path)
  if is_local_file(path_s):
    p = Path(path_s)
    if not p.is_file():
      raise DataError(f"{path_s}: no such file")
    name = p.name if name is None else name
    if p.name.endswith(".parquet"):
      return _read_parquet(p, name)
    if _is_json_array(p):
      return _read_json_array(p, name)
    return _read_json_lines(p, name, counts, skip_invalid)
  return _read_datasets(path_s, data_dir)


def read_split(path: str | os.PathLike, split: Optional[str], *, data_dir: Optional[str] = None,
               counts: Counts, skip_invalid: bool = False, validation_fraction: float = 0.0,
               prompt_key: Callable[[dict[str, Any]], str]) -> Iterator[Row]:
  """The rows of one split; `split=None` (or "all") means every row.

  A `split` column, where present, is honoured (HelpSteer2's preference file). A hub dataset
  without one uses its own splits (`nvidia/HelpSteer2` train/validation). A file with neither is
  split by prompt: `validation_fraction` of the prompts, chosen by a hash of `prompt_key(row)`, are
  the validation split, so every response to a prompt lands on one side (no leakage between the
  matched-pair and the ratings views of the same file).
  """
  want = None if split in (None, "", "all") else split
  rows = read_rows(path, data_dir=data_dir, counts=counts, skip_invalid=skip_invalid)
  first = next(rows, None)
  if first is None:
    return
  rows = _chain(first, rows)
  if want is None:
    yield from rows
    return
  if "split" in first[2]:
    for src, i, row in rows:
      if row.get("split") == want:
        yield src, i, row
    return
  if not is_local_file(os.fspath(path)):  # a hub dataset: use its own splits
    found = False
    for src, i, row in rows:
      if src.endswith(f"[{want}]"):
        found = True
        yield src, i, row
    if not found:
      raise DataError(f"{os.fspath(path)}: no split {want!r} (and no 'split' column)")
    return
  if want not in ("train", "validation"):
    raise DataError(f"{os.fspath(path)}: no 'split' column, so split must be train, validation "
                    f"or all, got {want!r}")
  if want == "validation" and validation_fraction <= 0:
    raise DataError(f"{os.fspath(path)}: no 'split' column; set validation_fraction > 0 to hold "
                    f"out prompts for validation")
  for src, i, row in rows:
    if in_validation(prompt_key(row), validation_fraction) == (want == "validation"):
      yield src, i, row


def _chain(first: Row, rest: Iterator[Row]) -> Iterator[Row]:
  yield first
  yield from rest


def in_validation(key: str, fraction: float) -> bool:
  """Stable (process- and platform-independent) assignment of a prompt to validation."""
  if fraction <= 0:
    return False
  h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
  return h / 2.0**64 < fraction


def require(row: Any, columns: tuple[str, ...], source: str, row_no: int) -> None:
  """DataError naming the row unless it is an object holding every column."""
  if not isinstance(row, dict):
    raise DataError(f"{where(source, row_no)}: a row must be an object, got {type(row).__name__}")
  missing = [c for c in columns if c not in row]
  if missing:
    raise DataError(f"{where(source, row_no)}: missing column(s) {', '.join(map(repr, missing))}")


def number(value: Any, column: str, lo: float, hi: float, source: str, row_no: int,
           *, allow_none: bool = False) -> Optional[float]:
  """A finite number in [lo, hi] from a cell (None/NaN allowed only when `allow_none`)."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    if allow_none:
      return None
    raise DataError(f"{where(source, row_no)}: {column} is missing")
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise DataError(f"{where(source, row_no)}: {column} must be a number, got {value!r}")
  if not lo <= value <= hi:
    raise DataError(f"{where(source, row_no)}: {column}={value} is outside {lo:g}..{hi:g}")
  return float(value)


def parse_rows(rows: Iterator[Row], parse: Callable[[str, int, dict[str, Any]], list],
               counts: Counts, skip_invalid: bool) -> list:
  """Records from every row through `parse`; a DataError stops, or skips the row when asked."""
  out: list = []
  for source, row_no, row in rows:
    counts.rows += 1
    try:
      out.extend(parse(source, row_no, row))
    except DataError:
      if not skip_invalid:
        raise
      counts.invalid += 1
  return out
