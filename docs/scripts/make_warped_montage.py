"""Draw ``docs/images/warped_montage.png``: subjects warped from nibabel's real T1 scan, in three planes.

    python docs/scripts/make_warped_montage.py

Two healthy subjects (top) and two with enlarged ventricles (bottom), as
``make_warped_cohort(source=None, size=96)`` renders them; the red line is the outline of
each subject's warped ventricle mask.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from napari_latent.volumes.warped import VentricleWarp, WarpedFactors, output_grid, prepare_source, warp_subject

OUT = Path(__file__).resolve().parents[1] / "images" / "warped_montage.png"
SIZE = 96

SUBJECTS = [
    ("healthy", WarpedFactors(ventricle_enlargement=1.0, rotation_inplane=-4.0, head_size=1.0, gamma=1.0,
                              bias_field=0.05, noise=0.015)),
    ("healthy", WarpedFactors(ventricle_enlargement=0.95, rotation_inplane=8.0, head_size=0.92, gamma=1.2,
                              bias_field=0.12, noise=0.025)),
    ("disease", WarpedFactors(ventricle_enlargement=1.5, rotation_inplane=3.0, head_size=1.06, gamma=0.85,
                              bias_field=0.08, noise=0.02)),
    ("disease", WarpedFactors(ventricle_enlargement=2.0, rotation_inplane=-9.0, head_size=0.97, gamma=1.0,
                              bias_field=0.1, noise=0.02)),
]


def main() -> Path:
    source = prepare_source(None)
    warp = VentricleWarp(source)
    grid = output_grid(source, SIZE)
    inverse = np.linalg.inv(grid.affine)
    # planes through the ventricles: 10 mm above the head's centre (axial), its centre (coronal), 6 mm right
    i, j, k = (round(float(v)) for v in (inverse @ np.append(np.add(source.centre, (6.0, 0.0, 10.0)), 1.0))[:3])
    fig, axes = plt.subplots(len(SUBJECTS), 3, figsize=(9, 3.0 * len(SUBJECTS)), facecolor="black")
    for row, (group, factors) in enumerate(SUBJECTS):
        image, ventricles = warp_subject(source, warp, factors, grid, rng=row)
        views = [(image[:, :, k], ventricles[:, :, k]), (image[:, j, :], ventricles[:, j, :]),
                 (image[i], ventricles[i])]
        for col, (plane, mask) in enumerate(views):
            ax = axes[row, col]
            flip = (lambda a: np.rot90(a)[:, ::-1]) if col < 2 else np.rot90  # radiological for axial/coronal
            ax.imshow(flip(plane), cmap="gray", vmin=0.0, vmax=1.2)
            ax.contour(flip(mask), [0.5], colors="red", linewidths=0.6)
            ax.set_axis_off()
            ax.set_title(["axial", "coronal", "sagittal"][col], color="white", fontsize=9)
        f = factors
        axes[row, 0].text(-6, SIZE / 2, f"{group}\nventricles x{f.ventricle_enlargement:.2f}\n"
                          f"rotation {f.rotation_inplane:+.0f} deg\nhead {f.head_size:.2f}\ngamma {f.gamma:.2f}",
                          color="white", fontsize=8, ha="right", va="center")
    fig.suptitle(f"warped from nibabel's anatomical.nii ({SIZE}³, {grid.spacing[0]:.2f} mm): healthy (top) and "
                 "enlarged ventricles (bottom)", color="white", fontsize=10)
    fig.tight_layout(rect=(0.14, 0, 1, 0.97))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80, facecolor="black")
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(main())
