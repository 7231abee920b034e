"""The Model widget: load a checkpoint or the bundled demo model, or train a new model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from ..device import available_devices
from ..errors import UserInputError
from ..models.base import SUPPORTED_IMAGE_SIZES, GenerativeModel, model_class, trainable_model_names
from ..models.checkpoint import load_model
from ..progress import Operation, ProgressEvent, StopFlag
from ..training.loop import TrainResult, iter_train
from ..training.presets import PRESET_NAMES, TrainingPreset, training_preset
from ..training.settings import TrainSettings
from ..volumes.slicing import SliceSpec
from ..volumes.windows import AUTO, PRESETS, parse_window
from .layout import schedule_arrange
from .runner import OperationRunner, ProgressPanel, format_metrics
from .session import get_session

#: The preset choice meaning "set the options yourself".
NO_PRESET = "none"

#: The window choice that reads the custom LOW:HIGH field.
CUSTOM_WINDOW = "custom"


def describe_model(model: GenerativeModel | None, source: str = "") -> str:
    """One or two lines about a model for the widgets."""
    if model is None:
        return "No model loaded. Load a model file, the demo model, or train one."
    info = model.describe()
    dims = ", ".join(f"{s}: {d}" for s, d in info["latent_dims"].items())
    spec = getattr(model, "slice_spec", None)
    plane = f", {spec.plane} slices, window {spec.describe_window()}" if spec is not None else ""
    where = f" from {source}" if source else ""
    return (f"{model.name} ({info['parameters'] / 1e6:.2f} M parameters){where}\n"
            f"{model.image_size} px{plane}; latent {dims}; fingerprint {model.fingerprint or '-'}")


class ModelWidget(Container):
    """Load or train the session's generative model.

    Scriptable: set the fields (``widget.data.value = "cohort/"``, ``widget.epochs.value = 5``)
    and call :meth:`train`, :meth:`load` or :meth:`load_demo`; ``widget.runner.wait()``
    blocks until a training run ends.
    """

    def __init__(self, napari_viewer: Any) -> None:
        schedule_arrange(napari_viewer)  # tab this dock with ours, fit the camera
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.info = Label(value=describe_model(None))
        self.checkpoint = FileEdit(label="model file", mode="r", filter="*.safetensors *.pkl")
        self.load_button = PushButton(text="Load model file")
        self.demo_button = PushButton(text="Load demo model")
        self.data = FileEdit(label="training data", mode="d", tooltip="A folder of NIfTI volumes (cohort.csv optional)")
        self.model_type = ComboBox(label="model", choices=trainable_model_names(), value="vae")
        self.image_size = ComboBox(label="image size", choices=list(SUPPORTED_IMAGE_SIZES), value=64)
        self.preset = ComboBox(label="preset", choices=[NO_PRESET, *PRESET_NAMES], value=NO_PRESET,
                               tooltip="a training recipe for the model and image size (64 or 128): fast, a first "
                               "model in minutes; quality, about 15 minutes on 2 cores for 40 volumes at 128 px. "
                               "It sets the epochs (and the latent dim where it has one); see docs/training.md")
        self.window = ComboBox(label="window", choices=[AUTO, *PRESETS, CUSTOM_WINDOW], value=AUTO,
                               tooltip="Intensities mapped to [-1, 1]: auto = per-volume percentiles (MR); "
                               "a CT preset or a custom LOW:HIGH in the volumes' units (Hounsfield units) "
                               "maps every subject the same way")
        self.custom_window = LineEdit(label="custom window", value="-1000:400", tooltip="LOW:HIGH, e.g. -160:240")
        self.custom_window.enabled = False
        self.epochs = SpinBox(label="epochs", min=1, max=100_000, value=20)
        self.time_limit = FloatSpinBox(label="time limit (min)", min=0.0, max=100_000.0, step=1.0, value=0.0,
                                       tooltip="a wall-clock budget for the training steps; when it is spent the "
                                       "epoch in progress ends early, is validated and saved (0: train all the "
                                       "epochs)")
        self.latent_dim = SpinBox(label="latent dim", min=1, max=4096, value=32)
        self.batch_size = SpinBox(label="batch size", min=2, max=4096, value=32)
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.output = FileEdit(label="save as", mode="w", filter="*.safetensors")
        self.overwrite = CheckBox(text="replace an existing file", value=False)
        self.train_button = PushButton(text="Train")
        self.panel = ProgressPanel()
        self.runner = OperationRunner(self.panel, self._set_busy)
        super().__init__(widgets=[
            self.info, self.checkpoint, self.load_button, self.demo_button,
            Label(value="<b>Train a new model</b>"), self.data, self.model_type, self.image_size, self.preset,
            self.window,
            self.custom_window, self.epochs, self.time_limit,
            self.latent_dim, self.batch_size, self.device, self.output, self.overwrite, self.train_button, self.panel,
        ])
        self.load_button.changed.connect(lambda: self.load())
        self.demo_button.changed.connect(lambda: self.load_demo())
        self.train_button.changed.connect(lambda: self.train())
        self.data.changed.connect(self._suggest_output)
        self.model_type.changed.connect(self._on_model_type)
        for choice in (self.preset, self.model_type, self.image_size):
            choice.changed.connect(lambda _value: self._apply_preset())
        self.window.changed.connect(self._on_window_choice)
        self.device.changed.connect(self._on_device_choice)
        self.session.events.model.connect(self._on_model)
        self.session.events.device.connect(self._on_device)

    # -- actions ---------------------------------------------------------------------------
    def load(self, path: str | Path | None = None) -> GenerativeModel | None:
        """Load a checkpoint file (the field's value by default) as the session's model."""
        path = Path(path) if path is not None else Path(str(self.checkpoint.value))
        if str(path) in ("", "."):
            self.runner._report_user_error(UserInputError("choose a model file first"), "Load model")
            return None
        return self._load(path, str(path))

    def load_demo(self) -> GenerativeModel | None:
        """Load the model bundled with napari-latent."""
        return self._load("demo", "demo")

    def _load(self, path: str | Path, source: str) -> GenerativeModel | None:
        try:
            model = load_model(path, device=self.session.device)
        except UserInputError as exc:
            self.runner._report_user_error(exc, "Load model")
            return None
        self.session.set_model(model, source)
        location = "demo" if source == "demo" else str(Path(path).resolve())
        self.session.script.record("model", [f"model = nl.load_model({location!r}, device={self.session.device!r})"],
                                   show={"model": "model"})
        self.panel.end(f"loaded {model.name} from {source}")
        return model

    def train(self) -> None:
        """Train a new model from the form's settings in a background thread."""
        self.runner.start(self._make_training, self._on_trained, "Training", on_event=self._on_training_event)

    def _make_training(self, stop: StopFlag) -> Operation[TrainResult]:
        data = str(self.data.value)
        if data in ("", "."):
            raise UserInputError("choose a folder of training volumes first")
        output = str(self.output.value)
        if output in ("", "."):
            raise UserInputError("choose where to save the model (a .safetensors file)")
        if Path(output).exists() and not self.overwrite.value:
            raise UserInputError(f"{output} exists: tick 'replace an existing file' or choose another name")
        settings = TrainSettings(epochs=int(self.epochs.value), batch_size=int(self.batch_size.value),
                                 device=str(self.device.value), time_limit=float(self.time_limit.value) or None)
        settings.validate()
        spec = self.slice_spec()
        preset = self.chosen_preset()
        model_settings = preset.model_settings() if preset is not None else {"image_size": int(self.image_size.value)}
        if self.latent_dim.enabled:
            model_settings["latent_dim"] = int(self.latent_dim.value)
        self.session.start_training()
        arguments = "".join(f", {k}={v!r}" for k, v in model_settings.items())
        spec_argument = ""
        if spec.fixed_window is not None:
            spec_argument = (f", spec=nl.SliceSpec(size={spec.size}, fixed_window={spec.fixed_window!r}, "
                             f"window_name={spec.window_name!r})")
        self._train_call = (f"nl.train_model({data!r}, {str(self.model_type.value)!r}, out={output!r}, "
                            f"settings=nl.TrainSettings(epochs={settings.epochs}, batch_size={settings.batch_size}, "
                            f"device={settings.device!r}"
                            + (f", time_limit={settings.time_limit!r}" if settings.time_limit else "")
                            + f"){spec_argument}{arguments})")
        return iter_train(data, str(self.model_type.value), out=output, settings=settings, spec=spec, stop=stop,
                          **model_settings)

    def chosen_preset(self) -> TrainingPreset | None:
        """The preset chosen for the chosen model and image size (None: no preset).

        Raises
        ------
        UserInputError
            The preset does not exist for that model or size.
        """
        name = str(self.preset.value)
        if name == NO_PRESET:
            return None
        return training_preset(str(self.model_type.value), name, int(self.image_size.value))

    def _apply_preset(self) -> None:
        """Put the chosen preset's epochs (and latent dim) in the form; say when there is none for the choice."""
        try:
            preset = self.chosen_preset()
        except UserInputError as exc:
            self.panel.status.value = str(exc)
            return
        if preset is None:
            return
        self.epochs.value = int(preset.train.get("epochs", self.epochs.value))
        if "latent_dim" in preset.model and self.latent_dim.enabled:
            self.latent_dim.value = int(preset.model["latent_dim"])
        self.panel.status.value = (f"Preset {preset.name} for {preset.family} at {preset.image_size} px: "
                                   f"{preset.summary}.")

    def slice_spec(self) -> SliceSpec:
        """The slicing of a new model from the form: its image size and intensity window.

        Raises
        ------
        UserInputError
            If the custom window is not ``LOW:HIGH`` with low < high.
        """
        choice = str(self.window.value)
        text = str(self.custom_window.value) if choice == CUSTOM_WINDOW else choice
        name, values = parse_window(text)
        return SliceSpec(size=int(self.image_size.value), fixed_window=values, window_name=name)

    def _on_trained(self, result: TrainResult) -> str:
        if result.model is None:
            return "Training cancelled before the first step; nothing was saved."
        self.session.set_model(result.model, str(result.path) if result.path else "trained")
        self.session.script.record("model", [
            "# Trained in napari with the call below (uncomment it to train again):",
            f"# {self._train_call}",
            f"model = nl.load_model({str(Path(result.path).resolve())!r}, device={self.session.device!r})"
            if result.path else "model = None  # the run stopped before its first checkpoint",
        ], show={"model": "model"})
        numbers = format_metrics(result.final_metrics)
        if result.stopped:
            return (f"Training cancelled after {result.steps} steps; the checkpoint is kept at {result.path}"
                    f" and loaded.\n{numbers}")
        limit = " (the time limit ended the last one)" if result.time_limited else ""
        return (f"Trained {result.model.name} for {result.epochs_completed} epochs{limit}; saved to {result.path}."
                f"\n{numbers}")

    def _on_training_event(self, event: ProgressEvent) -> None:
        if event.stage in ("", "train"):
            self.session.add_training_event(event.step, event.total, dict(event.metrics))

    # -- helpers ---------------------------------------------------------------------------
    def _suggest_output(self, value: Any) -> None:
        if str(self.output.value) in ("", ".") and str(value) not in ("", "."):
            folder = Path(str(value))
            self.output.value = folder.parent / f"{folder.name}_{self.model_type.value}.safetensors"

    def _on_model_type(self, name: str) -> None:
        # Some families derive the latent size from other settings (a VQ-VAE: its code dimension and map size).
        self.latent_dim.enabled = "latent_dim" not in model_class(str(name)).config_class.derived

    def _on_window_choice(self, value: Any) -> None:
        self.custom_window.enabled = str(value) == CUSTOM_WINDOW

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.train_button, self.load_button, self.demo_button):
            widget.enabled = not busy

    def _on_device_choice(self, value: Any) -> None:
        self.session.device = str(value)

    def _on_model(self) -> None:
        self.info.value = describe_model(self.session.model, self.session.model_source)

    def _on_device(self) -> None:
        if self.device.value != self.session.device:
            self.device.value = self.session.device
