"""Figures: drawn from the committed demo tables, saved as PNG + PDF, returned for restyling,
without touching the caller's matplotlib settings."""

import matplotlib
import pandas as pd

from advlib import attacks, paths, report

T = paths.ROOT / "tables" / "demo"


def test_figures_return_saved_figures_and_keep_global_state(tmp_path):
    rc = dict(matplotlib.rcParams)
    effects = pd.read_csv(T / "table3_operation_effects.csv")
    out = report.fig4_operation_effects(effects, tmp_path / "fig4.png")
    assert isinstance(out, report.SavedFigure) and str(out) == str(tmp_path / "fig4.png")
    assert (tmp_path / "fig4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out._repr_png_()[:4] == b"\x89PNG"
    assert (tmp_path / "fig4.pdf").read_bytes()[:5] == b"%PDF-"
    # the Figure can be restyled and saved again by the user
    out.figure.suptitle("restyled")
    out.figure.savefig(tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 0
    heat = report.fig_restored_heatmap(effects, tmp_path / "heat.png", list(attacks.ATTACKS))
    labels = [t.get_text() for t in heat.figure.axes[0].get_yticklabels()]
    assert labels and all("(n=" in t for t in labels)  # every rate shows its n
    q = pd.read_csv(T / "fig8_corrected_quality.csv")
    fig8 = report.fig8_quality(q, tmp_path / "fig8.png")
    assert fig8.figure.axes[0].get_ylabel() == "PSNR (dB)"
    assert "here: no (best fixed: QF 90)" in fig8.figure.axes[0].get_title()
    assert dict(matplotlib.rcParams) == rc
