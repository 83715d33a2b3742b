"""Train 2 CPU processes with DDP (gloo) for a few steps; each rank saves its weights.

Run as a script (``python tests/ddp_train.py DATA.jsonl OUT_DIR``): DDP re-launches this file once
per extra process, which it could not do from inside pytest.
"""

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from safetensors.torch import save_file

from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from textvae.schedules import KLSchedule, LRDecay


class Seen(pl.Callback):
    """The examples this rank trains on in the first epoch."""

    def __init__(self):
        self.indices: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 0:
            self.indices.extend(batch.index.tolist())


class Spoil(pl.Callback):
    """Overwrites the weights with N(0, 10^2) draws from one seed (the same on every rank) just before the
    validation of epoch ``epoch``: confidently wrong logits and a huge KL make that ELBO far worse than any
    the training reached, so the plateau rule decays there whatever the floating-point details of the steps
    before (and goes back to the best weights)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for parameter in pl_module.model.parameters():
                    parameter.copy_(10.0 * torch.randn(parameter.shape, generator=generator))


def main(data: str, out: str) -> None:
    pl.seed_everything(0, verbose=False)
    datamodule = TextDataModule(train=data, valid=data, batch_size=8, cache_dir=str(Path(out) / "cache"))
    model = SentenceVAE(vocab_size=datamodule.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=4, word_dropout=0.3)
    # lr_decay: each validation's ELBO is summed over the ranks, so they decay (and go back) together
    system = TextVAESystem(model, kl_schedule=KLSchedule(kind="linear", warmup_steps=10), lr=0.3,
                           lr_decay=LRDecay(patience=1, max_decays=10))
    seen = Seen()
    # the data module splits its length buckets across ranks itself (textvae-train sets the same)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=40, logger=False,
                         use_distributed_sampler=False, callbacks=[seen, Spoil(epoch=3)],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=2)
    trainer.fit(system, datamodule=datamodule)
    state = {k: v.detach().contiguous() for k, v in system.model.state_dict().items()}
    save_file(state, str(Path(out) / f"rank{trainer.global_rank}.safetensors"))
    (Path(out) / f"rank{trainer.global_rank}.seen").write_text(" ".join(map(str, seen.indices)))
    print(f"rank {trainer.global_rank} world {trainer.world_size} steps {trainer.global_step} "
          f"decays {system.plateau.decays}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
