"""Shapes of what a function's backward pass keeps, for tests that count saved residuals."""
import contextlib
import io
import re

from jax.ad_checkpoint import print_saved_residuals


def saved_text(fn, *args) -> str:
  """jax's public print_saved_residuals, one residual per line: "f32[2,16,64] from ..."."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    print_saved_residuals(fn, *args)
  return out.getvalue()


def saved_shapes(fn, *args) -> list[tuple[int, ...]]:
  """One shape per residual."""
  text = saved_text(fn, *args)
  shapes = re.findall(r"^\w+\[([\d,]*)\]", text, re.M)
  assert shapes, text
  return [tuple(int(d) for d in s.split(",") if d) for s in shapes]
