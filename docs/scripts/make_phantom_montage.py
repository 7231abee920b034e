"""Draw ``docs/images/phantom_montage.png``: healthy and disease phantoms in three planes.

    python docs/scripts/make_phantom_montage.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

OUT = Path(__file__).resolve().parents[1] / "images" / "phantom_montage.png"

SUBJECTS = [
    ("healthy", PhantomFactors(ventricle_enlargement=0.1, cortical_atrophy=0.1, rotation_inplane=-3.0), 11),
    ("healthy", PhantomFactors(ventricle_enlargement=0.25, cortical_atrophy=0.2, head_size=0.95,
                               rotation_outofplane=5.0, bias_field=0.15), 12),
    ("disease", PhantomFactors(ventricle_enlargement=0.6, cortical_atrophy=0.5, lesion_load=0.5,
                               rotation_inplane=4.0), 13),
    ("disease", PhantomFactors(ventricle_enlargement=0.95, cortical_atrophy=0.85, lesion_load=0.9,
                               head_size=1.05), 14),
]


def main() -> Path:
    fig, axes = plt.subplots(len(SUBJECTS), 3, figsize=(9, 3.1 * len(SUBJECTS)), facecolor="black")
    for row, (group, factors, seed) in enumerate(SUBJECTS):
        phantom = make_phantom(factors, size=128, seed=seed)
        image = phantom.image
        centre = np.array(image.shape) // 2
        views = [np.rot90(image[:, :, centre[2] + 10]),  # axial (RAS array: x right, y anterior)
                 np.rot90(image[:, centre[1] - 5, :]),  # coronal
                 np.rot90(image[centre[0] - 8, :, :])]  # sagittal, just off the midline
        titles = ["axial", "coronal", "sagittal"]
        for col, view in enumerate(views):
            ax = axes[row, col]
            ax.imshow(view[:, ::-1] if col < 2 else view, cmap="gray", vmin=0.0, vmax=1.15)
            ax.set_axis_off()
            ax.set_title(titles[col], color="white", fontsize=9)
        f = factors
        axes[row, 0].text(-8, 64, f"{group}\nventricles {f.ventricle_enlargement:.2f}\natrophy "
                          f"{f.cortical_atrophy:.2f}\nlesions {f.lesion_load:.2f}", color="white", fontsize=8,
                          ha="right", va="center")
    fig.suptitle("napari-latent phantoms (128³, 1.5 mm): healthy (top) and MS-like disease (bottom)",
                 color="white", fontsize=10)
    fig.tight_layout(rect=(0.12, 0, 1, 0.97))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80, facecolor="black")
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(main())
