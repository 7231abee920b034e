"""Reading real-scan formats: our readers against the libraries underneath them, in one run.

    python benchmarks/bench_readers.py [--shape 256 256 120] [--repeats 3]

A CT-like volume (int16 values in HU, slope 1, intercept -1024) of ``--shape`` is written as
uncompressed NIfTI, NRRD, MetaImage and a DICOM series (one file per slice). For each format
the median of ``--repeats`` wall times of :func:`napari_latent.open_volume` is compared with
the baseline a user would write without us:

* NIfTI: ``nibabel.load(path).get_fdata(dtype=float32)``;
* NRRD, MetaImage: ``SimpleITK.ReadImage`` plus ``GetArrayFromImage``;
* DICOM: SimpleITK's own series recipe (``GetGDCMSeriesFileNames`` + ``ImageSeriesReader``),
  which reads but does not check the series (several series, gaps, spacing, syntaxes).

Prints one table of times and ratios (ours / baseline).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import SimpleITK as sitk

    from napari_latent.volumes import Volume, open_volume, save_volume
    from tests.volumes._series import write_dicom_series, write_itk

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 120))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    data = np.round(rng.normal(40.0, 300.0, size=tuple(args.shape))).clip(-1024, 3000).astype(np.float32)
    volume = Volume(data, np.diag([0.7, 0.7, 1.25, 1.0]), None, {}, "ct")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_volume(volume, root / "ct.nii", dtype=np.int16)
        write_itk(volume.with_data(data.astype(np.int16)), root / "ct.nrrd")
        write_itk(volume.with_data(data.astype(np.int16)), root / "ct.mha")
        write_dicom_series(volume, root / "dicom", slope=1.0, intercept=-1024.0)

        def dicom_baseline() -> np.ndarray:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(root / "dicom")))
            return sitk.GetArrayFromImage(reader.Execute())

        cases = {
            "NIfTI": (root / "ct.nii", lambda: nib.load(str(root / "ct.nii")).get_fdata(dtype=np.float32)),
            "NRRD": (root / "ct.nrrd", lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(root / "ct.nrrd")))),
            "MetaImage": (root / "ct.mha", lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(root / "ct.mha")))),
            "DICOM series": (root / "dicom", dicom_baseline),
        }
        print(f"volume {tuple(args.shape)} int16, median of {args.repeats}")
        print(f"{'format':<14} {'ours (s)':>9} {'baseline (s)':>13} {'ratio':>7}")
        for name, (path, baseline) in cases.items():
            open_volume(path)
            baseline()  # warm the page cache for both
            ours = _median_time(lambda p=path: open_volume(p), args.repeats)
            base = _median_time(baseline, args.repeats)
            print(f"{name:<14} {ours:9.3f} {base:13.3f} {ours / base:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
