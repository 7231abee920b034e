"""The CT-sized traversal and eigen analysis from the command line, against today's path (issue 16).

    python benchmarks/scale_traversal.py [--workdir DIR] [--quick] [--no-baseline] [--size256]

The volume is a real T1 scan (nibabel's ``anatomical.nii``, 33 x 41 x 25 at 2 mm, clipped at
0) resampled (linear) into the central 62% of a CT-sized 512 x 512 x 300 float32 grid of
zeros: a head in a CT field of view, 24% foreground, 64 MB gzipped. ``--quick`` uses 96 x 96
x 60 (seconds; to check that the benchmark works).

Both paths run the commands a new user would, each in a fresh process (its own wall time and
peak RSS, :mod:`_measure`), with the bundled demo model and its first SeFa direction, 15 alphas
from -3 to 3 and 5 components:

* ours: ``traverse ... --out t.zarr`` then ``eigen t.zarr --components 5`` (the store,
  streamed; eigen's default difference map is the extreme alpha);
* today's: the same commands of the code at commit ``_common.BASELINE_COMMIT`` (exported
  into the work folder with ``git archive``), ``--out t.nii.gz`` and its defaults (every
  difference map).

Then the numbers are compared: traversal voxels (ours read from the store, theirs from the
4D NIfTI) and the eigen results (eigenvalues, eigenvectors, component maps). ``--size256``
adds our path with a 256 px model (a VAE with the demo's settings at 256 px, untrained:
speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import baseline_source, ct_sized_volume

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ALPHAS = "-3:3:15"
COMPONENTS = "5"
GB = 1024 ** 3


def measure(argv: list[str], workdir: Path, source_tree: Path | None = None) -> dict[str, Any]:
    """Run ``python -m napari_latent ARGV`` in a fresh process; seconds and peak RSS."""
    env = dict(os.environ)
    if source_tree is not None:
        env["PYTHONPATH"] = str(source_tree)
    with tempfile.NamedTemporaryFile(suffix=".json", dir=workdir, delete=False) as handle:
        result_file = Path(handle.name)
    command = [sys.executable, str(HERE / "_measure.py"), str(result_file), "--", "-m", "napari_latent", *argv,
               "--quiet"]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(result_file.read_text())
    result_file.unlink()
    return result


def directions_for(model: str, out: Path, workdir: Path) -> Path:
    if not out.is_file():
        measure(["discover", model, "--method", "sefa", "--count", "5", "--out", str(out)], workdir)
    return out


def model_256(path: Path) -> Path:
    """An untrained VAE with the demo model's settings at 256 px (speed does not depend on the weights)."""
    if path.is_file():
        return path
    import dataclasses

    from napari_latent.models.base import build_model
    from napari_latent.models.checkpoint import load_model, save_checkpoint

    demo = load_model("demo", device="cpu")
    settings = {k: v for k, v in dataclasses.asdict(demo.config).items() if k != "image_size"}
    net = build_model(demo.name, image_size=256, **settings)
    spec = dataclasses.replace(demo.slice_spec, size=256)
    save_checkpoint(path, net, spec, {"note": "untrained, for benchmarks"})
    return path


def run_pair(model: str, volume: Path, directions: Path, workdir: Path, tag: str, source_tree: Path | None,
             store: bool) -> dict[str, Any]:
    """``traverse`` then ``eigen``; their times and peaks."""
    out = workdir / (f"{tag}.zarr" if store else f"{tag}.nii.gz")
    eigen_dir = workdir / f"{tag}_eigen"
    traverse = measure(["traverse", model, str(volume), "--directions", str(directions), "--index", "0",
                        f"--alphas={ALPHAS}", "--out", str(out), "--device", "cpu"], workdir, source_tree)
    eigen = measure(["eigen", str(out), "--out", str(eigen_dir), "--components", COMPONENTS], workdir, source_tree)
    return {"traverse": traverse, "eigen": eigen, "out": out, "eigen_dir": eigen_dir}


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """Largest voxel difference of the traversals and of the eigen results."""
    import nibabel as nib

    from napari_latent.latent.traversal import open_traversal

    stored = open_traversal(ours["out"])
    image = nib.load(str(theirs["out"]))
    voxel = 0.0
    for index in range(len(stored)):
        reference = np.asarray(image.dataobj[..., index], dtype=np.float32)
        voxel = max(voxel, float(np.abs(stored.frame(index) - reference).max()))
    mine = json.loads((ours["eigen_dir"] / "eigen.json").read_text())
    other = json.loads((theirs["eigen_dir"] / "eigen.json").read_text())
    values = np.asarray(mine["eigenvalues"])
    value_error = float(np.abs(values - np.asarray(other["eigenvalues"])).max() / np.abs(values).max())
    vector_error = float(np.abs(np.asarray(mine["eigenvectors"]) - np.asarray(other["eigenvectors"])).max())
    map_error = 0.0
    for k in range(1, int(COMPONENTS) + 1):
        a = np.asarray(nib.load(str(ours["eigen_dir"] / f"component_{k}.nii.gz")).dataobj)
        b = np.asarray(nib.load(str(theirs["eigen_dir"] / f"component_{k}.nii.gz")).dataobj)
        map_error = max(map_error, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)))
    return {"voxels_max_abs": voxel, "eigenvalues_rel": value_error, "eigenvectors_abs": vector_error,
            "maps_rel": map_error}


def run(workdir: Path, quick: bool = False, baseline: bool = True, size256: bool = True) -> list[dict[str, Any]]:
    """The scale benchmark's traversal lines (rows: name, ours, baseline, ratio, unit, target)."""
    workdir.mkdir(parents=True, exist_ok=True)
    shape = (96, 96, 60) if quick else (512, 512, 300)
    volume = ct_sized_volume(workdir / f"ct_{'x'.join(map(str, shape))}.nii.gz", shape)
    directions = directions_for("demo", workdir / "sefa_demo.safetensors", workdir)
    ours = run_pair("demo", volume, directions, workdir, "ours", None, store=True)
    rows: list[dict[str, Any]] = []
    total = ours["traverse"]["seconds"] + ours["eigen"]["seconds"]
    peak = max(ours["traverse"]["peak_rss_bytes"], ours["eigen"]["peak_rss_bytes"]) / GB
    theirs = None
    if baseline:
        tree = baseline_source(workdir)
        theirs = run_pair("demo", volume, directions, workdir, "today", tree, store=False)
    for step in ("traverse", "eigen"):
        row = {"name": f"CLI {step} (64 px demo model)", "ours": ours[step]["seconds"], "unit": "s",
               "peak_gb": ours[step]["peak_rss_bytes"] / GB}
        if theirs is not None:
            row.update(baseline=theirs[step]["seconds"], baseline_peak_gb=theirs[step]["peak_rss_bytes"] / GB,
                       ratio=theirs[step]["seconds"] / ours[step]["seconds"])
        rows.append(row)
    row = {"name": "CLI traverse + eigen, total (64 px)", "ours": total, "unit": "s", "peak_gb": peak,
           "target": "<= 60 s and <= 2 GB"}
    if theirs is not None:
        their_total = theirs["traverse"]["seconds"] + theirs["eigen"]["seconds"]
        row.update(baseline=their_total, ratio=their_total / total,
                   baseline_peak_gb=max(theirs["traverse"]["peak_rss_bytes"], theirs["eigen"]["peak_rss_bytes"]) / GB)
        rows.append(row)
        rows.append({"name": "numerics against today's path", **compare(ours, theirs),
                     "target": "voxels identical; eigen within 1e-6"})
    else:
        rows.append(row)
    if size256:
        big = model_256(workdir / "vae_256.safetensors")
        big_dirs = directions_for(str(big), workdir / "sefa_256.safetensors", workdir)
        at256 = run_pair(str(big), volume, big_dirs, workdir, "ours256", None, store=True)
        rows.append({"name": "CLI traverse + eigen, total (256 px VAE)",
                     "ours": at256["traverse"]["seconds"] + at256["eigen"]["seconds"], "unit": "s",
                     "peak_gb": max(at256["traverse"]["peak_rss_bytes"], at256["eigen"]["peak_rss_bytes"]) / GB,
                     "traverse_s": at256["traverse"]["seconds"], "eigen_s": at256["eigen"]["seconds"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-256", action="store_true")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="napari-latent-scale-"))
    for row in run(workdir, args.quick, not args.no_baseline, not args.no_256):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
