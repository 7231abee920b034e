""""Copy as script": the Python that repeats a napari session's steps.

Each widget records the library call behind its step (:meth:`SessionScript.record`) with the
exact settings it used; :meth:`SessionScript.text` joins them into a script that imports
``napari_latent``, repeats every step in order and, optionally, shows the results in napari
with :func:`napari_latent.gui.show`. A step recorded again under the same key (inverting
the same layer twice, discovering again) replaces the earlier one; a new model starts a
new script, since every later result depends on it.

This module builds text only; it imports neither napari nor Qt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER = '''"""napari-latent session, written by "Copy as script".

Run it with: python {name}
"""

import napari_latent as nl
'''


def variable(prefix: str, name: str) -> str:
    """A Python identifier ``<prefix>_<name>`` made from a layer name."""
    slug = re.sub(r"\W+", "_", name).strip("_").lower() or "layer"
    if slug[0].isdigit():
        slug = f"_{slug}"
    return f"{prefix}_{slug}"


@dataclass
class ScriptStep:
    """One recorded step: a key (for replacement), Python lines, and what it shows in napari."""

    key: str
    lines: list[str]
    show: dict[str, str] = field(default_factory=dict)


class SessionScript:
    """The steps of one session, in order."""

    def __init__(self) -> None:
        self.steps: list[ScriptStep] = []

    def clear(self) -> None:
        """Forget every step."""
        self.steps = []

    def record(self, key: str, lines: list[str], show: dict[str, str] | None = None) -> None:
        """Record a step; a step of the same key is replaced (and moved to the end).

        Parameters
        ----------
        key : str
            Identity of the step (``"model"``, ``"invert:sub-001"``, ...). Recording
            ``"model"`` starts a new script.
        lines : list of str
            The Python lines of the step.
        show : dict, optional
            Keyword arguments of :func:`napari_latent.gui.show` this step provides (for
            example ``{"volume": "volume_sub_001"}``), to show the results at the end.
        """
        if key == "model":
            self.steps = []
        self.steps = [step for step in self.steps if step.key != key]
        self.steps.append(ScriptStep(key, list(lines), dict(show or {})))

    def text(self, show: bool = True, name: str = "session.py") -> str:
        """The script.

        Parameters
        ----------
        show : bool
            End with a call of ``napari_latent.gui.show`` that opens the results in napari.
        name : str
            File name mentioned in the script's docstring.
        """
        parts = [HEADER.format(name=name)]
        if not self.steps:
            parts.append("# No steps yet: load a model and run a step in the napari-latent widgets.\n")
        shown: dict[str, str] = {}
        for step in self.steps:
            parts.append(f"# {step.key}\n" + "\n".join(step.lines) + "\n")
            shown.update(step.show)
        if show and shown:
            arguments = ", ".join(f"{k}={v}" for k, v in shown.items())
            parts.append("# Show the results in napari (blocks until the window is closed)\n"
                         "import napari_latent.gui\n\n"
                         f"napari_latent.gui.show({arguments})\n")
        return "\n".join(parts)
