"""The direction gallery: thumbnails along each direction, their order, the PNG and the CLI option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_latent import discover, invert, load_model
from napari_latent.analysis.direction_evaluation import DirectionEvaluation
from napari_latent.analysis.gallery import Gallery, direction_gallery, iter_direction_gallery
from napari_latent.cli import main
from napari_latent.errors import MismatchError, UserInputError
from napari_latent.progress import StopFlag

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def sefa(demo):
    return discover(demo, "sefa", count=3)


@pytest.fixture(scope="module")
def gallery(demo, sefa) -> Gallery:
    return direction_gallery(demo, sefa, amount=2.0)


@pytest.fixture(scope="module")
def phantom_codes(demo, phantom_volume):
    return invert(demo, phantom_volume, method="encoder")


def decode(model, codes: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.eval().decode(codes, "z")[:, 0].float().numpy()


def test_gallery_shape_alphas_and_start(demo, sefa, gallery):
    size = demo.image_size
    assert gallery.images.shape == (3, 3, size, size)
    assert gallery.names == sefa.names and gallery.indices == [0, 1, 2]
    expected = 2.0 * np.asarray(sefa.code_std)
    np.testing.assert_allclose(gallery.alphas, np.stack([-expected, 0 * expected, expected], 1))
    start = demo.mean_latent("z", seed=0)
    np.testing.assert_allclose(gallery.images[:, 1], np.broadcast_to(decode(demo, start), (3, size, size)), atol=1e-5)
    plus = decode(demo, start + 2.0 * sefa.code_std[1] * sefa.vectors[1][None])
    np.testing.assert_allclose(gallery.images[1, 2], plus[0], atol=1e-5)
    for row in range(3):
        for c in (0, 2):
            assert np.abs(gallery.images[row, c] - gallery.images[row, 1]).mean() > 0.02
    assert (gallery.differences > 0.05).all()
    assert gallery.to_json()["rows"][0]["difference"] == pytest.approx(gallery.differences[0])


def test_gallery_from_codes_and_slice(demo, sefa, phantom_codes):
    codes = phantom_codes
    middle = len(codes) // 2
    result = direction_gallery(demo, sefa, codes, amount=1.0, batch_size=2)  # several decoder calls
    assert result.start == f"slice {int(codes.indices[middle])} of phantom"
    np.testing.assert_allclose(result.images[0, 1], decode(demo, codes.codes[middle:middle + 1])[0], atol=1e-5)
    position = int(codes.indices[1])
    other = direction_gallery(demo, sefa, codes, slice_index=position, amount=1.0)
    np.testing.assert_allclose(other.images[2, 1], decode(demo, codes.codes[1:2])[0], atol=1e-5)
    with pytest.raises(UserInputError, match="has no code"):
        direction_gallery(demo, sefa, codes, slice_index=10_000)
    with pytest.raises(UserInputError, match="positive"):
        direction_gallery(demo, sefa, amount=0.0)
    with pytest.raises(MismatchError):
        direction_gallery(demo, sefa, torch.zeros(5))


def test_operation_reports_batches_and_stops(demo, sefa, gallery):
    events = []
    result = direction_gallery(demo, sefa, batch_size=3, progress=events.append)  # 7 codes: 3 decoder calls
    assert [(e.step, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]
    np.testing.assert_allclose(result.images, gallery.images, atol=1e-5)
    stop = StopFlag()
    operation = iter_direction_gallery(demo, sefa, batch_size=3, stop=stop)
    next(operation)
    stop.request()
    with pytest.raises(UserInputError, match="cancelled"):
        next(operation)


def test_order(gallery):
    by_diff = gallery.order()
    assert list(by_diff.differences) == sorted(gallery.differences, reverse=True)
    by_score = gallery.order("eigenvalue", descending=False)
    assert by_score.scores["eigenvalue"] == sorted(gallery.scores["eigenvalue"])
    row = by_score.indices[0]
    np.testing.assert_array_equal(by_score.images[0], gallery.images[row])
    assert by_score.names[0] == gallery.names[row]
    assert by_score.order("index").indices == [0, 1, 2]
    evaluation = DirectionEvaluation(gallery.names, ["size"], np.array([[0.1], [-0.9], [0.5]]), {}, {}, {})
    assert gallery.order("size", evaluation=evaluation).indices == [1, 2, 0]
    with pytest.raises(UserInputError, match="cannot order"):
        gallery.order("size")


def test_png(gallery, tmp_path: Path):
    path = gallery.to_png(tmp_path / "sub" / "gallery.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 0.8 < height / width < 1.4  # three rows of three thumbnails
    assert [p.name for p in path.parent.iterdir()] == ["gallery.png"]  # no temporary left behind
    with pytest.raises(UserInputError, match=r"\.png"):
        gallery.to_png(tmp_path / "gallery.jpg")


def test_cli_discover_writes_gallery(tmp_path: Path, capsys):
    out, png, report = tmp_path / "d.safetensors", tmp_path / "g.png", tmp_path / "r.json"
    code = main(["discover", "demo", "--method", "sefa", "--count", "2", "--out", str(out), "--gallery", str(png),
                 "--gallery-amount", "1.5", "--report", str(report), "--quiet", "--device", "cpu"])
    assert code == 0
    assert "gallery (2 directions" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG"
    entry = json.loads(report.read_text())["gallery"]
    assert entry["path"] == str(png) and entry["amount"] == 1.5 and len(entry["rows"]) == 2
    assert all(row["difference"] > 0 for row in entry["rows"])


@pytest.mark.parametrize("gallery", ["g.jpg", "file.txt/g.png"])
def test_cli_bad_gallery_path(tmp_path: Path, capsys, gallery: str):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "d.safetensors"
    code = main(["discover", "demo", "--method", "sefa", "--count", "2", "--out", str(out), "--gallery",
                 str(tmp_path / gallery), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "error:" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_cli_gallery_codes(tmp_path: Path, capsys, phantom_codes):
    codes = phantom_codes.save(tmp_path / "codes.safetensors")
    png = tmp_path / "g.png"
    argv = ["discover", "demo", "--method", "sefa", "--count", "2", "--out", str(tmp_path / "d.safetensors"),
            "--gallery", str(png), "--gallery-codes", str(codes), "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    assert f"from slice {int(phantom_codes.indices[len(phantom_codes) // 2])} of phantom" in capsys.readouterr().out
    assert png.is_file()
    png.unlink()
    argv[argv.index(str(codes))] = str(tmp_path / "missing.safetensors")
    assert main(argv) == 2 and "no such codes file" in capsys.readouterr().err
    assert not png.exists()
