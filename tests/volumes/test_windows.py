"""Fixed intensity windows: the CT presets and the LOW:HIGH / preset / auto text form."""

from __future__ import annotations

import pytest

from napari_latent.errors import UserInputError, VolumeError
from napari_latent.volumes.windows import AUTO, PRESETS, format_window, parse_window


@pytest.mark.parametrize("name, width, level, low, high", [
    ("lung", 1500, -600, -1350, 150),
    ("mediastinum", 350, 50, -125, 225),
    ("soft_tissue", 400, 40, -160, 240),
    ("bone", 1800, 400, -500, 1300),
    ("brain", 80, 40, 0, 80),
])
def test_every_preset_is_level_minus_and_plus_half_the_width(name: str, width: float, level: float,
                                                             low: float, high: float) -> None:
    preset = PRESETS[name]
    assert (preset.width, preset.level) == (width, level)
    assert preset.values == (low, high)
    assert parse_window(name) == (name, (low, high))
    assert parse_window(name.upper()) == (name, (low, high))
    assert format_window(name, (low, high)) == name


def test_all_presets_are_tested() -> None:
    assert set(PRESETS) == {"lung", "mediastinum", "soft_tissue", "bone", "brain"}


@pytest.mark.parametrize("text", ["soft_tissue", "soft-tissue", "Soft Tissue", " SOFT-TISSUE "])
def test_soft_tissue_spellings(text: str) -> None:
    assert parse_window(text) == ("soft_tissue", (-160.0, 240.0))


@pytest.mark.parametrize("text, values", [
    ("-1000:400", (-1000.0, 400.0)),
    ("-160:240", (-160.0, 240.0)),
    ("0:80", (0.0, 80.0)),
    (" -1.5e3 : 150.5 ", (-1500.0, 150.5)),
    ("-2000:-500", (-2000.0, -500.0)),
])
def test_custom_low_high(text: str, values: tuple[float, float]) -> None:
    name, parsed = parse_window(text)
    assert name is None and parsed == values
    assert parse_window(format_window(None, parsed)) == (None, values)


def test_auto_is_the_per_volume_percentile_mode() -> None:
    assert parse_window("auto") == (None, None)
    assert parse_window("AUTO") == (None, None)
    assert format_window(None, None) == AUTO


@pytest.mark.parametrize("text, message", [
    ("400:-1000", "low < high"),
    ("40:40", "low < high"),
    ("nan:400", "finite"),
    ("-inf:400", "finite"),
    ("liver", "unknown intensity window 'liver'"),
    ("-1000", "unknown intensity window"),
    ("-1000:400:5", "unknown intensity window"),
    ("a:b", "unknown intensity window"),
    ("", "unknown intensity window"),
])
def test_bad_windows_are_one_line_naming_the_forms(text: str, message: str) -> None:
    with pytest.raises(VolumeError, match=message) as info:
        parse_window(text)
    assert isinstance(info.value, UserInputError)
    assert "\n" not in str(info.value)
    if "unknown" in message:
        for preset in PRESETS:
            assert preset in str(info.value)
        assert "LOW:HIGH" in str(info.value) and "auto" in str(info.value)
