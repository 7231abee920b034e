"""The training engine: data, objectives per model family, the loop, checkpoints, DDP."""

from .data import Augmentation, SliceSet, TrainingData, iter_prepare_data, split_subjects
from .loop import TrainResult, iter_train, train_model
from .settings import TrainSettings
from .slice_cache import SliceCache

__all__ = [
    "Augmentation",
    "SliceCache",
    "SliceSet",
    "TrainResult",
    "TrainSettings",
    "TrainingData",
    "iter_prepare_data",
    "iter_train",
    "split_subjects",
    "train_model",
]
