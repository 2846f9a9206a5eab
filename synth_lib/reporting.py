"""Human-readable summaries for asset metadata: Markdown previews and small PNG plots."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import polars as pl


def markdown_table(rows: Sequence[Mapping[str, object]], width: int = 80) -> str:
    """Dict rows as a Markdown table (columns of the first row), cells cut to `width`."""
    if not rows:
        return "_none_"

    def cell(value: object) -> str:
        text = str(value).replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(row[h]) for h in head) + " |" for row in rows]
    return "\n".join(lines)


def markdown_preview(
    frame: pl.DataFrame, columns: Sequence[str], rows: int = 5, width: int = 80
) -> str:
    """A Markdown table of the first `rows` rows, long cells cut to `width` characters."""
    present = [c for c in columns if c in frame.columns]
    if not present or frame.is_empty():
        return "_no rows_"
    return markdown_table(frame.head(rows).select(present).to_dicts(), width)


def counts_table(counts: Mapping[str, int], key: str = "reason", value: str = "rows") -> str:
    """A two-column Markdown table, largest count first."""
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return markdown_table([{key: k, value: v} for k, v in ordered])


def histogram_png_markdown(values: Sequence[float], title: str, xlabel: str, bins: int = 30) -> str:
    """A histogram as a Markdown image with an inline PNG (renders in the Dagster UI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=90)
    ax.hist(list(values) or [0], bins=bins, color="#4f6df5")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
