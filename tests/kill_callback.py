"""A callback that kills its own process with SIGKILL after a given training step, as a power cut would
(``tests/test_resume.py`` runs ``textvae-train`` with it in a subprocess)."""

import os
import signal

import pytorch_lightning as pl


class KillAt(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
