"""Small, deterministic text for notebooks: number formats, Markdown tables, glued values.

nbval compares text outputs exactly, so everything a notebook prints goes through these rounding
helpers; figures are not compared and may show full precision.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
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


class Md(str):
    """Text that is Markdown on purpose (a link, emphasis): `markdown_table` leaves it unescaped."""


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|$#~])")


def escape_markdown(text: str) -> str:
    """`text` as literal characters in a Markdown (MyST) table cell: `|` no longer splits the cell,
    `*`, `_`, `$` and the rest no longer format; line breaks become spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown_cell(value: Any) -> str:
    """One table cell: floats to 3 significant figures, `Md` as is, everything else escaped."""
    if isinstance(value, Md):
        return " ".join(value.split()).replace("|", "\\|")
    if isinstance(value, float):
        return sig(value)
    return escape_markdown(str(value))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> Markdown:
    """An IPython Markdown object (renders as a table in the book; plain, stable text for nbval).

    Every cell and header is escaped (see `markdown_cell`), so a value such as "1 - |cos|" stays in
    its column; pass `Md(...)` for a cell that is meant to be Markdown.
    """
    from IPython.display import Markdown

    lines = [f"**{markdown_cell(title)}**", ""] if title else []
    lines.append("| " + " | ".join(markdown_cell(h) for h in headers) + " |")
    lines.append("|" + "---|" * len(headers))
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} headers: {row!r}")
        lines.append("| " + " | ".join(markdown_cell(v) for v in row) + " |")
    return Markdown("\n".join(lines))


def in_colab() -> bool:
    """True in Google Colab (its install cell has imported `google.colab` by then)."""
    return "google.colab" in sys.modules


def glue(name: str, value: Any, display: bool = False) -> None:
    """myst_nb.glue where the book's tooling is installed (not in Colab): numbers in prose."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=display)


def glue_numbers(values: Mapping[str, Any]) -> None:
    """Glue every value for the page's prose (`{glue:text}` in the book). In Colab, where that
    markup stays literal, also show them, once, as one compact line: `name = value; ...`. The
    cell that calls this is removed from the book's page, so no number appears twice there."""
    for name, value in values.items():
        glue(name, value)
    if in_colab():
        from IPython.display import Markdown, display

        pairs = "; ".join(f"`{name}` = {escape_markdown(str(value))}" for name, value in values.items())
        display(Markdown(f"Numbers for the text below: {pairs}"))


def kwargs_text(values: Mapping[str, Any]) -> str:
    """Keyword arguments as prose ('depth 8, width 8'), never as a Python dict."""
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in values.items())


def setup_text(setup: Any) -> str:
    """A training setup as prose: 'resnet (depth 8, width 8) on digits'."""
    return f"{setup.model} ({kwargs_text(setup.model_kwargs)}) on {setup.dataset}"


def decision_text(summary: Mapping[str, Any]) -> str:
    """A verification summary as a table cell: 'rejected (3 of 40 failed)'."""
    return f"{summary['decision']} ({summary['failed']} of {summary['replayed']} failed)"
