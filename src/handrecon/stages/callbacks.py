"""Callbacks of a training run (conf/callbacks)."""

from __future__ import annotations

import os
from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, the resumable state: every ``every_n_train_steps`` optimiser steps (mid-epoch),
    at the end of every ``every_n_epochs``-th epoch and when training ends (so the final last.ckpt
    holds the final weights, not those of the last multiple of N).

    Lightning's ModelCheckpoint takes ``every_n_train_steps`` and ``every_n_epochs`` as mutually
    exclusive triggers (and two callbacks writing one ``last.ckpt`` would be renamed
    ``last-v1.ckpt``); this one keeps the step trigger and adds the epoch and end saves.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 50, every_n_epochs: int = 1, **kwargs) -> None:
        if int(every_n_train_steps) < 0 or int(every_n_epochs) < 0:
            raise ValueError(f"callbacks.last: every_n_train_steps={every_n_train_steps} and every_n_epochs="
                             f"{every_n_epochs} must be >= 0 (0: off)")
        kwargs.setdefault("enable_version_counter", False)  # always the one last.ckpt
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0,
                         every_n_train_steps=int(every_n_train_steps), **kwargs)
        self.last_every_n_epochs = int(every_n_epochs)

    def _save_last_now(self, trainer) -> None:
        from pytorch_lightning.trainer.states import TrainerFn

        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # the epoch-end state (after its validation) even when the step trigger saved this step mid-epoch
        n = self.last_every_n_epochs
        if n >= 1 and (trainer.current_epoch + 1) % n == 0:
            self._save_last_now(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        pass  # no monitored metric: nothing to save after validation

    def on_train_end(self, trainer, pl_module) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_now(trainer)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: the checkpoint is written to ``<path>.part`` and
    moved over ``<path>`` only once complete, so a run killed while saving keeps the previous
    ``last.ckpt`` (a resumable state) instead of a truncated file. conf/trainer passes it as a plugin."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        part = path.with_name(path.name + ".part")
        try:
            super().save_checkpoint(checkpoint, part, storage_options)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, path)
