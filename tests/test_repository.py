"""The repository's own promises: layout, the README's commands, CI, the manifest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUI_ONLY = {"napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy"}


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert match, f"README.md has no block after <!-- {marker} -->"
    return match.group(1).strip()


def test_top_level_layout() -> None:
    names = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci"}
    names -= {"build", "dist", "scratch"}
    names = {n for n in names if not n.endswith(".egg-info") and n != "__pycache__"}
    assert names == {"napari_latent", "tests", "pyproject.toml", "setup.cfg", "README.md", "docs", ".ci", "benchmarks"}


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = readme_command("test-command")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci]
    assert "torch==2.13.0" in command


def test_the_main_command_installs_and_runs_the_demo_in_one_line() -> None:
    command = readme_command("main-command")
    assert "\n" not in command
    steps = [step.strip() for step in command.split("&&")]
    assert steps[0] == "pip install torch==2.13.0"  # the CPU wheel first, or pip picks a multi-GB CUDA build
    assert steps[1].startswith("pip install -e") and "[all]" in steps[1]
    assert steps[-1] == "napari-latent demo --out demo/"


def test_no_gui_imports_outside_the_gui_package() -> None:
    offenders = []
    for path in (ROOT / "napari_latent").rglob("*.py"):
        if "gui" in path.relative_to(ROOT / "napari_latent").parts[:1]:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in GUI_ONLY]
    assert offenders == []


def test_manifest_is_valid() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari_latent" / "napari.yaml")
    assert manifest.name == "napari-latent"
    assert manifest.contributions.readers
    assert {s.key for s in manifest.contributions.sample_data} >= {"healthy_phantom", "disease_phantom", "demo_result"}


def test_the_public_contract_is_importable_without_napari() -> None:
    import subprocess
    import sys

    names = ["open_volume", "save_volume", "make_phantom_cohort", "load_model", "train_model", "invert", "discover",
             "traverse", "eigencomponents", "evaluate_model", "evaluate_directions", "Directions", "LatentCodes",
             "Traversal", "EigenResult"]
    code = ("import sys, napari_latent as nl\n"
            f"missing = [n for n in {names!r} if not callable(getattr(nl, n, None))]\n"
            "assert not missing, missing\n"
            "assert 'napari' not in sys.modules and 'qtpy' not in sys.modules, 'the library imported napari'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_widgets_are_docked_in_workflow_order_and_in_menus() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari_latent" / "napari.yaml")
    names = [w.display_name for w in manifest.contributions.widgets]
    assert names == ["1 Model", "2 Invert", "3 Discover", "4 Traverse", "5 Eigen", "6 Explore", "7 Export", "8 Plots",
                     "9 Views"]
    widget_commands = {w.command for w in manifest.contributions.widgets}
    in_menus = {item.command for items in manifest.contributions.menus.values() for item in items}
    assert in_menus == widget_commands - {"napari-latent.model_widget"}


def test_the_model_walkthrough_quotes_the_example_plugin() -> None:
    """Every line of the code blocks of docs/contributing.md's model walkthrough is in tests/plugin_example."""
    text = (ROOT / "docs" / "contributing.md").read_text()
    section = text[text.index("## Add a model family"):text.index("## Add a discovery method")]
    blocks = re.findall(r"```(python|toml)\n(.+?)\n```", section, re.S)
    assert len(blocks) >= 4
    example = ROOT / "tests" / "plugin_example"
    source = "\n".join(p.read_text() for p in sorted(example.rglob("*")) if p.suffix in (".py", ".toml"))
    source_lines = {line.strip() for line in source.splitlines()}
    missing = [line for _, block in blocks for line in block.splitlines() if line.strip()
               and line.strip() not in source_lines]
    assert missing == []


def test_the_contributing_guide_discovery_method_runs() -> None:
    """The discovery-method walkthrough's code registers a method that discover() runs (in a fresh process)."""
    import subprocess
    import sys

    text = (ROOT / "docs" / "contributing.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "iter_random" in b)
    code = (block + "\nfrom napari_latent import discover\nfrom napari_latent.models.base import build_model\n"
            "model = build_model('vae', image_size=32, latent_dim=8, base_channels=8, max_channels=32)\n"
            "found = discover(model, 'random', count=4, seed=1)\n"
            "assert tuple(found.vectors.shape) == (4, 8), found.vectors.shape\n"
            "import torch\nassert torch.allclose(found.vectors @ found.vectors.T, torch.eye(4), atol=1e-5)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
