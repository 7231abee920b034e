"""Declared settings: conversion of text and Python values, one clear error per bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from napari_latent.errors import UserInputError
from napari_latent.settings import Setting, convert_settings, parse_ints, settings_of_dataclass

OWNER = "method 'sefa'"


@pytest.mark.parametrize("setting, given, expected", [
    (Setting("count", "int", 10), "12", 12),
    (Setting("count", "int", 10), " 7 ", 7),
    (Setting("count", "int", 10), 4.0, 4),
    (Setting("lr", "float", 1e-4), "1e-3", 0.001),
    (Setting("lr", "float", 1e-4), 2, 2.0),
    (Setting("flag", "bool", False), "yes", True),
    (Setting("flag", "bool", True), "off", False),
    (Setting("flag", "bool", True), 0, False),
    (Setting("name", "str", None), "abc", "abc"),
    (Setting("band", "str", "auto", parse=lambda text: tuple(float(v) for v in text.split(":"))), "0.5:0.7",
     (0.5, 0.7)),
    (Setting("band", "str", "auto", parse=lambda text: text), (0.1, 0.2), (0.1, 0.2)),
    (Setting("kind", "choice", "a", choices=("a", "b")), "b", "b"),
    (Setting("layers", "ints", None), "0-3,6", [0, 1, 2, 3, 6]),
    (Setting("layers", "ints", None), 2, [2]),
    (Setting("layers", "ints", None), (4, 1), [4, 1]),
    (Setting("code", "floats", None), "0.5, -1 2", [0.5, -1.0, 2.0]),
    (Setting("state", "path", None), "run.safetensors", "run.safetensors"),
    (Setting("state", "path", None), Path("a/b"), Path("a/b")),
])
def test_values_are_converted_to_the_declared_kind(setting: Setting, given, expected) -> None:
    converted = setting.convert(given, OWNER)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize("setting, given, message", [
    (Setting("count", "int", 10), "abc", "method 'sefa': count must be a whole number, got 'abc'"),
    (Setting("count", "int", 10), 2.5, "method 'sefa': count must be a whole number, got 2.5"),
    (Setting("count", "int", 10), True, "method 'sefa': count must be a whole number, got True"),
    (Setting("count", "int", 10, minimum=1), "0", "method 'sefa': count must be at least 1, got 0"),
    (Setting("lr", "float", 0.1, maximum=1.0), 2, "method 'sefa': lr must be at most 1, got 2"),
    (Setting("lr", "float", 0.1), "fast", "method 'sefa': lr must be a number, got 'fast'"),
    (Setting("flag", "bool", False), "maybe", "method 'sefa': flag must be true or false, got 'maybe'"),
    (Setting("name", "str", None), 3, "method 'sefa': name must be text, got 3"),
    (Setting("kind", "choice", "a", choices=("a", "b")), "c", "method 'sefa': unknown kind 'c'; use one of a, b"),
    (Setting("layers", "ints", None), "0-x", "method 'sefa': layers must be whole numbers such as 0-3,6, got '0-x'"),
    (Setting("code", "floats", None), "1,a", "method 'sefa': code must be numbers separated by commas, got '1,a'"),
    (Setting("state", "path", None), 3, "method 'sefa': state must be a path, got 3"),
    (Setting("condition", "object", None), "x", "method 'sefa': condition can only be given from Python"),
])
def test_bad_values_are_one_clear_user_error(setting: Setting, given, message: str) -> None:
    with pytest.raises(UserInputError) as info:
        setting.convert(given, OWNER)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_none_keeps_the_default_and_unknown_names_are_listed() -> None:
    declared = {"count": Setting("count", "int", 10), "seed": Setting("seed", "int", 0)}
    assert convert_settings(declared, {"count": "3", "seed": None, "data": "x"}, OWNER, passthrough=("data",)) == {
        "count": 3, "data": "x"}
    with pytest.raises(UserInputError, match=r"^method 'sefa' has no setting\(s\) bogus, other; it accepts count, "
                       r"data, seed$"):
        convert_settings(declared, {"bogus": 1, "other": 2}, OWNER, passthrough=("data",))


def test_declarations_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown kind"):
        Setting("x", "number", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="choices that include its default"):
        Setting("x", "choice", "c", choices=("a", "b"))
    assert Setting("batch_size", "int", 32).option == "--batch-size"
    assert Setting("batch_size", "int", 32).title == "batch size"
    assert Setting("k", "choice", "a", choices=("a", "b")).value_name == "{a,b}"
    assert parse_ints("1 3-4") == [1, 3, 4]


def test_settings_of_a_dataclass_follow_its_field_types() -> None:
    @dataclasses.dataclass
    class Config:
        size: int = 64
        beta: float = 1.0
        name: str = "x"
        fast: bool = False
        mode: Literal["a", "b"] = "a"
        layers: tuple[int, ...] = (1, 2)
        scale: float | None = None
        derived_value: int = 0

    found = settings_of_dataclass(Config, skip=("derived_value",))
    assert {k: (s.kind, s.default) for k, s in found.items()} == {
        "size": ("int", 64), "beta": ("float", 1.0), "name": ("str", "x"), "fast": ("bool", False),
        "mode": ("choice", "a"), "layers": ("ints", (1, 2)), "scale": ("float", None)}
    assert found["mode"].choices == ("a", "b")
    assert convert_settings(found, {"size": "32", "scale": "0.5"}, "model 'x'") == {"size": 32, "scale": 0.5}
