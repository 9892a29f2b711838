"""Keras callbacks shared by distance training and pose recovery: epoch-seeded batches, progress.

Distance training draws its batches from a :class:`keras.utils.PyDataset` whose draws are seeded
by the epoch number (:class:`EpochSync`), so that a run resumed by
``keras.callbacks.BackupAndRestore`` draws exactly what an uninterrupted one would (recovery
draws its pairs inside the compiled step instead, from a stream saved with its weights). Both
fits show one tqdm bar (:class:`ProgressBar`).
"""

from __future__ import annotations

from cryoposes.backend import keras

__all__ = ["EpochSync", "ProgressBar"]


class EpochSync(keras.callbacks.Callback):
    """Sets ``batches.epoch`` to the epoch that starts.

    The epoch number Keras passes counts from where ``BackupAndRestore`` resumed, so batches
    seeded by it are the same in a resumed run as in an uninterrupted one.

    Parameters
    ----------
    batches : object with an ``epoch`` attribute
        The dataset whose draws depend on the epoch.
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


class ProgressBar(keras.callbacks.Callback):
    """One tqdm bar over a fit, moved at the end of each epoch and showing the latest losses.

    Parameters
    ----------
    epochs : int
        Planned epochs.
    description : str
        The bar's label.
    steps_per_epoch : int, optional
        Count steps instead of epochs when above 1 (the bar then reads in ``unit``).
    unit : str, optional
        What the bar counts.
    shown : tuple of str, optional
        Log entries shown beside the bar.
    """

    def __init__(self, epochs: int, description: str, steps_per_epoch: int = 1, unit: str = "epoch",
                 shown=("loss", "val_loss")):
        super().__init__()
        self.total = int(epochs) * int(steps_per_epoch)
        self.steps_per_epoch = int(steps_per_epoch)
        self.description = description
        self.unit = unit
        self.shown = tuple(shown)
        self.bar = None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.description, unit=self.unit)

    def on_epoch_end(self, epoch, logs=None):
        # Set, not incremented: a resumed fit starts at a later epoch.
        self.bar.n = (epoch + 1) * self.steps_per_epoch
        self.bar.set_postfix({key: f"{value:.4g}" for key, value in (logs or {}).items() if key in self.shown})
        self.bar.refresh()

    def on_train_end(self, logs=None):
        self.bar.close()
