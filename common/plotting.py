"""Matplotlib set up once for headless runs (Agg), with the project's few shared figure helpers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def image_grid(rows: list[list[np.ndarray]], row_labels: list[str] | None = None,
               col_labels: list[str] | None = None, scale: float = 1.4):
    """A grid of images (HxW, HxWx1 or HxWx3, uint8 or float in [0, 1]); returns the figure."""
    n_r, n_c = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_r, n_c, figsize=(scale * n_c, scale * n_r), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_c):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                img = np.asarray(row[j])
                if img.ndim == 3 and img.shape[-1] == 1:
                    img = img[..., 0]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0,
                          vmax=255 if img.dtype == np.uint8 else 1)
            else:
                ax.axis("off")
            if row_labels and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
            if col_labels and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    fig.tight_layout()
    return fig
