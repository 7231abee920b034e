"""Rebuilds the bundled demo result that napari's File > Open Sample > "Demo result" opens.

    python docs/scripts/make_demo_sample.py

Runs the README's demo (``napari-latent demo``, default settings) in a temporary folder and
copies into ``napari_latent/gui/data/demo_result/`` what the sample needs and cannot
recompute in a moment: the traversed healthy subject, its codes, the supervised direction
and the eigen analysis of its traversal (the component maps, and of the difference maps
only the last alpha's). The traversal itself (15 volumes, about 14 MB) is not stored: the
sample recomputes it from the codes in a background thread.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

from napari_latent.analysis.demo import run_demo

TARGET = Path(__file__).resolve().parents[2] / "napari_latent" / "gui" / "data" / "demo_result"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(Path(tmp) / "demo", progress=True)
        assert result.volume is not None and result.codes is not None and result.eigen is not None
        staging = Path(tmp) / "demo_result"
        staging.mkdir()
        shutil.copy(result.volume.path, staging / "subject.nii.gz")
        # provenance as the README's `napari-latent demo --out demo/` would write it, not the temporary folder
        source = f"demo/{Path(result.volume.path).relative_to(Path(tmp) / 'demo').as_posix()}"
        dataclasses.replace(result.codes, source=source).save(staging / "codes.safetensors")
        result.supervised.save(staging / "directions.safetensors")
        eigen = result.eigen
        last = eigen.difference_indices[-1:]
        eigen = dataclasses.replace(eigen, differences=eigen.differences[-1:], difference_indices=last,
                                    source_info={**eigen.source_info, "source": source})
        eigen.save(staging / "eigen")
        traversal = result.traversal
        summary = {"demo": {k: v for k, v in result.summary.items() if k in ("cohort", "model", "traversed_subject",
                                                                            "supervised", "alphas", "units")},
                   "subject_name": result.volume.name,
                   "alphas": [float(a) for a in traversal.alphas], "units": traversal.units,
                   "direction_index": 0}
        (staging / "sample.json").write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(staging, TARGET)
    size = sum(p.stat().st_size for p in TARGET.rglob("*") if p.is_file())
    print(f"wrote {TARGET} ({size / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
