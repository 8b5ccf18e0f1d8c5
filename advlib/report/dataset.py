"""Figures of Sect. 2 (notebook 01): Fig. 3 (PSNR / SSIM of the adversarial images) and examples."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from .style import UNITS, SavedFigure, mean_min_max_bars, save, styled


@styled
def fig3_psnr_ssim(manifest: pd.DataFrame, attacks: list[str], path: str | Path) -> SavedFigure:
    """Fig. 3: mean PSNR and SSIM per attack (bars), min and max (error bars)."""
    adv = manifest[manifest["kind"] != "normal"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    present = [a for a in attacks if a in set(adv["attack"])]
    # the paper's text (Sect. 2.3): "the average PSNR was about 40 dB while the average SSIM was greater than 0.9"
    paper = {"psnr": (40.0, "paper: average about 40 dB"), "ssim": (0.9, "paper: average above 0.9")}
    for ax, col, color in ((axes[0], "psnr", "tab:blue"), (axes[1], "ssim", "tab:red")):
        mean_min_max_bars(ax, adv, "attack", col, present, color, rotation=45)
        ax.axhline(paper[col][0], color="k", ls=":", lw=1.2, label=paper[col][1])
        ax.legend(fontsize=7, loc="lower left")
        ax.set_title(f"{UNITS[col]} of adversarial vs normal image (n={len(adv)})", fontsize=9)
    return save(fig, path)


def _amplified(diff: np.ndarray) -> np.ndarray:
    d = np.abs(diff.astype(np.int16)).max(axis=2).astype(float)
    return d / max(d.max(), 1)


@styled
def fig_examples(root: Path, manifest: pd.DataFrame, path: str | Path, n: int = 6) -> SavedFigure:
    """Example images: normal, adversarial, and the amplified absolute difference, one attack each."""
    adv = manifest[manifest["kind"] != "normal"].drop_duplicates("attack").head(n)
    normal = manifest[manifest["kind"] == "normal"].set_index("image_id")
    fig, axes = plt.subplots(3, max(len(adv), 1), figsize=(2.2 * max(len(adv), 1), 6.8), squeeze=False)
    for j, (_, row) in enumerate(adv.iterrows()):
        a = np.asarray(Image.open(Path(root) / row["path"]).convert("RGB"))
        x = np.asarray(Image.open(Path(root) / normal.loc[row["source_id"], "path"]).convert("RGB"))
        for i, (img, title) in enumerate(((x, "normal"), (a, row["attack"]), (_amplified(a.astype(int) - x), "|diff| (scaled)"))):
            axes[i, j].imshow(img, cmap="magma" if img.ndim == 2 else None)
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    for ax in axes.ravel():
        ax.axis("off")
    return save(fig, path)
