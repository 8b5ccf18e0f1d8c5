"""``advlib scan --plot``: the histogram of a report's scores with the threshold line."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

#: Bins of the histogram over P(adversarial) in [0, 1].
BINS = 50


def plot_scores(rows: Sequence[dict[str, Any]], threshold: float, path: str | os.PathLike,
                title: str = "advlib scan") -> Path:
    """Save the histogram of the rows' scores (P(adversarial), :data:`BINS` bins over [0, 1]),
    flagged and not flagged in two colours, with a line at ``threshold``; the format follows the
    suffix of ``path`` (png, pdf, svg). Written atomically with matplotlib's Agg canvas (no
    window, no change to matplotlib's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib: only with --plot
    from matplotlib.figure import Figure

    from ..store import atomic_write_bytes

    scores = [float(r["score"]) for r in rows if r.get("score") not in (None, "")]
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = [i / BINS for i in range(BINS + 1)]
    ax.hist([[s for s in scores if s < threshold], [s for s in scores if s >= threshold]], bins=bins,
            stacked=True, color=["tab:blue", "tab:red"], label=["not flagged", "flagged"])
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    flagged = sum(s >= threshold for s in scores)
    ax.set(xlim=(0, 1), xlabel="score: P(adversarial)", ylabel="files",
           title=f"{title}: {flagged} of {len(scores)} flagged")
    ax.legend(loc="upper center")
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=120)
    return atomic_write_bytes(path, buf.getvalue())
