"""One node of a 2-node DDP run (gloo, CPU): train a few steps, save this rank's weights and the examples it saw.

Run once per node, as a cluster launcher would (``tests/test_multinode.py`` starts both on this machine)::

    NODE_RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python tests/multinode_train.py DATA.jsonl OUT_DIR
    NODE_RANK=1 LOCAL_RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python tests/multinode_train.py DATA.jsonl OUT_DIR

``LOCAL_RANK`` tells Lightning's default environment that the processes were launched outside it (it starts
none itself); ``NODE_RANK`` and ``num_nodes=2`` with ``devices=1`` make the global ranks 0 and 1.
"""

import os
import sys
from pathlib import Path

import pytorch_lightning as pl
from ddp_train import Seen
from safetensors.torch import save_file

from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from textvae.schedules import KLSchedule


def main(data: str, out: str) -> None:
    pl.seed_everything(0, verbose=False)
    # each node builds its own cache: two nodes share no disk
    node = Path(out) / f"node{os.environ['NODE_RANK']}"
    datamodule = TextDataModule(train=data, valid=data, batch_size=8, cache_dir=str(node / "cache"))
    model = SentenceVAE(vocab_size=datamodule.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=4, word_dropout=0.3)
    system = TextVAESystem(model, kl_schedule=KLSchedule(kind="linear", warmup_steps=10))
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seen = Seen()
    trainer = pl.Trainer(accelerator="cpu", devices=1, num_nodes=2, strategy="ddp", max_steps=6, logger=False,
                         use_distributed_sampler=False, callbacks=[seen], default_root_dir=str(node),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=2)
    trainer.fit(system, datamodule=datamodule)
    rank = trainer.global_rank
    state = {k: v.detach().contiguous() for k, v in system.model.state_dict().items()}
    save_file(state, str(Path(out) / f"rank{rank}.safetensors"))
    save_file(initial, str(Path(out) / f"rank{rank}.initial.safetensors"))
    (Path(out) / f"rank{rank}.seen").write_text(" ".join(map(str, seen.indices)))
    print(f"global_rank {rank} node_rank {trainer.node_rank} world_size {trainer.world_size} "
          f"num_nodes {trainer.num_nodes} steps {trainer.global_step}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
