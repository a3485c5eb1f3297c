"""Small, deterministic text for notebooks: number formats, Markdown tables, glued values.

nbval compares text outputs exactly, so everything a notebook prints goes through these rounding
helpers; figures are not compared and may show full precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.display import Markdown


def sig(x: float, digits: int = 3) -> str:
    """`x` to `digits` significant figures ('1.23e-05', '71.5'); non-finite values as words."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
        return f"{x:.{decimals}f}"
    return f"{x:.{digits - 1}e}"


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return f"{sig(arr.mean(), digits)} ± {sig(arr.std(ddof=1) if arr.size > 1 else 0.0, 2)}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> Markdown:
    """An IPython Markdown object (renders as a table in the book; plain, stable text for nbval)."""
    from IPython.display import Markdown

    def cell(v: Any) -> str:
        return sig(v) if isinstance(v, float) else str(v)

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def glue(name: str, value: Any, display: bool = False) -> None:
    """myst_nb.glue where the book's tooling is installed (not in Colab): numbers in prose."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=display)
