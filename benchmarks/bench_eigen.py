"""Chunked eigen analysis against ``np.cov`` + ``eigh`` on the whole M and against scikit-learn PCA.

    python benchmarks/bench_eigen.py [--size 256] [--alphas 15] [--components 5] [--repeats 2]

A synthetic traversal of a phantom (upsampled to ``--size`` cubed): ``images = anatomy +
t(alpha) * change + noise`` with 15 alphas (1 GB of float32 at 256 cubed). All three
methods get the same foreground mask and produce the same outputs: every eigenvalue, K
eigenvectors and the K components at the mask's voxels (``(voxels, K)`` float32, ``M_c @ V``;
a map on the volume grid is that column put back into a zero volume).

Baselines, as analysis scripts write them: M = ``np.stack([image[mask] for image in
images], axis=1)`` (voxels x A); (1) ``np.cov(M, rowvar=False)``, ``np.linalg.eigh``,
projections ``(M - mean) @ V``; (2) ``sklearn.decomposition.PCA(K).fit_transform(M)``. Ours:
``eigencomponents(traversal, mask, K, differences="none")``, whose result keeps the
projections and makes grid maps on demand. Putting all K maps on the grid at once costs
every method the same (K volumes); it is measured for ours as well ("+ K grid maps").

Time: best of ``--repeats``, with one BLAS thread for every method (like for like, and
what a shared 2-core machine gives: two BLAS threads spin-waiting for each other there make
these memory-bound products several times slower) and again with the default threads.
Memory: peak of the numpy allocations made by the analysis (tracemalloc; the traversal
itself exists beforehand and is not counted), with and without the output projections,
which every method must hold. Targets: 3x faster, 5x less memory.
"""

from __future__ import annotations

import argparse
import functools
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import machine
from scipy import ndimage
from threadpoolctl import threadpool_info, threadpool_limits

from napari_latent.analysis.eigen import eigencomponents
from napari_latent.latent.traversal import Traversal
from napari_latent.volumes import Volume, foreground_mask
from napari_latent.volumes.grid import Grid
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom


def synthetic_traversal(size: int, count: int) -> Traversal:
    """Anatomy plus a smooth non-linear change in alpha plus a little noise, at ``size`` cubed."""
    base = 64
    healthy = make_phantom(PhantomFactors(), size=base, seed=3)
    diseased = make_phantom(PhantomFactors(ventricle_enlargement=0.8, cortical_atrophy=0.5), size=base, seed=3)
    zoom = size / base
    anatomy = ndimage.zoom(healthy.image, zoom, order=1).astype(np.float32)
    change = ndimage.zoom(diseased.image - healthy.image, zoom, order=1).astype(np.float32)
    affine = healthy.affine.copy()
    affine[:3, :3] /= zoom
    alphas = np.linspace(0.0, 50.0, count)
    rng = np.random.default_rng(0)
    images = np.empty((count, *anatomy.shape), dtype=np.float32)
    for i, alpha in enumerate(alphas):
        t = alpha / 50.0
        images[i] = anatomy + (t + 0.3 * t * t) * change
        images[i] += rng.standard_normal(anatomy.shape, dtype=np.float32) * 0.01
    return Traversal(images, alphas, Grid(anatomy.shape, affine))


def numpy_cov(traversal: Traversal, mask: np.ndarray, components: int) -> dict[str, Any]:
    matrix = np.stack([image[mask] for image in traversal.images], axis=1)
    covariance = np.cov(matrix, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    values, vectors = values[::-1], vectors[:, ::-1][:, :components]
    projected = (matrix - matrix.mean(axis=0)) @ vectors
    return {"eigenvalues": values, "eigenvectors": vectors, "projections": projected}


def sklearn_pca(traversal: Traversal, mask: np.ndarray, components: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    matrix = np.stack([image[mask] for image in traversal.images], axis=1)
    pca = PCA(n_components=components, svd_solver="full")
    projected = pca.fit_transform(matrix)
    return {"eigenvalues": pca.explained_variance_, "eigenvectors": pca.components_.T, "projections": projected}


def ours(traversal: Traversal, mask: np.ndarray, components: int, grid_maps: bool = False) -> dict[str, Any]:
    result = eigencomponents(traversal, mask=mask, n_components=components, differences="none")
    out = {"eigenvalues": result.eigenvalues, "eigenvectors": result.eigenvectors, "projections": result.projections}
    if grid_maps:  # all K maps on the volume grid at once (what every method would pay for them)
        out["maps"] = result.maps
    return out


def measure(function: Callable[..., dict[str, Any]], repeats: int, *args: Any) -> tuple[float, int, dict[str, Any]]:
    """Best time, peak traced memory of one run, and the result."""
    tracemalloc.start()
    result = function(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), peak, result


def exact(traversal: Traversal, mask: np.ndarray, components: int) -> dict[str, Any]:
    """The float64 reference (untimed): np.cov on float64 M, eigh, centred projection."""
    matrix = np.stack([image[mask] for image in traversal.images], axis=1).astype(np.float64)
    values, vectors = np.linalg.eigh(np.cov(matrix, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1][:, :components]
    return {"eigenvalues": values, "eigenvectors": vectors, "projected": (matrix - matrix.mean(axis=0)) @ vectors}


def error(reference: dict[str, Any], other: dict[str, Any], mask: np.ndarray, components: int) -> str:
    """Largest deviation from the float64 reference (eigenvalues relative to the first, maps to their max)."""
    values = float(np.max(np.abs(reference["eigenvalues"][:components] - other["eigenvalues"][:components])
                       / reference["eigenvalues"][0]))
    signs = np.sign(np.sum(reference["eigenvectors"] * other["eigenvectors"], axis=0))
    vectors = float(np.max(np.abs(reference["eigenvectors"] - other["eigenvectors"] * signs)))
    maps = max(float(np.max(np.abs(reference["projected"][:, k] - other["projections"][:, k] * signs[k])))
               / float(np.max(np.abs(reference["projected"][:, k]))) for k in range(components))
    return f"eigenvalues {values:.0e}, eigenvectors {vectors:.0e}, maps {maps:.0e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--alphas", type=int, default=15)
    parser.add_argument("--components", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    traversal = synthetic_traversal(args.size, args.alphas)
    mask = foreground_mask(Volume(traversal.baseline, traversal.grid.affine))
    print(f"machine: {machine()}")
    print(f"traversal {traversal.images.shape} float32 ({traversal.images.nbytes / 2**30:.2f} GiB), mask "
          f"{int(mask.sum()):,} voxels ({mask.mean():.0%}), K = {args.components}; set up in "
          f"{time.perf_counter() - start:.0f} s")
    output_bytes = args.components * int(mask.sum()) * 4
    grid_maps_bytes = args.components * int(np.prod(traversal.grid.shape)) * 4
    reference = exact(traversal, mask, args.components)
    errors = {}
    default_threads = max((pool.get("num_threads", 1) for pool in threadpool_info()), default=1)
    for threads in (1, default_threads):
        print(f"-- {threads} BLAS thread(s)")
        rows = {}
        with threadpool_limits(threads):
            for name, function in (("ours (chunked)", ours), ("+ K grid maps", functools.partial(ours, grid_maps=True)),
                                   ("np.cov + eigh", numpy_cov), ("sklearn PCA", sklearn_pca)):
                rows[name] = measure(function, args.repeats, traversal, mask, args.components)
                seconds, peak, result = rows[name]
                errors[name] = error(reference, result, mask, args.components)
                held = output_bytes + (grid_maps_bytes if name == "+ K grid maps" else 0)
                print(f"{name:>15}: {seconds:7.2f} s, peak {peak / 2**20:7.0f} MiB "
                      f"({(peak - held) / 2**20:.0f} MiB besides the {held / 2**20:.0f} MiB of output)")
        mine = rows["ours (chunked)"]
        for name in ("np.cov + eigh", "sklearn PCA"):
            seconds, peak, _ = rows[name]
            print(f"vs {name}: {seconds / mine[0]:.1f}x faster (target >= 3x), {peak / mine[1]:.1f}x less memory "
                  f"(target >= 5x; {(peak - output_bytes) / max(mine[1] - output_bytes, 1):.1f}x besides the "
                  f"output; with all K grid maps made at once, at least {peak / rows['+ K grid maps'][1]:.1f}x less "
                  "memory)")
        if threads == default_threads:
            break
    print("deviation from a float64 reference (eigenvalues of the first, maps of their max):")
    for name, text in errors.items():
        print(f"{name:>15}: {text}")


if __name__ == "__main__":
    main()
