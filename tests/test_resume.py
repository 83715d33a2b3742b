"""Resuming: a run interrupted and resumed from its checkpoint ends with exactly the weights and the final
validation figure of the same run uninterrupted (the random draws and the batch order are part of the
checkpoint); every epoch is a new shuffle."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_sentences
from tools import train

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 8  # 128 sentences in batches of 16


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "sentences.jsonl"
    write_jsonl(path, generate_sentences(128, seed=1))
    return path


def arguments(data: Path, run: Path, *extra: str) -> list[str]:
    """The quickstart recipe, shrunk: word dropout, the reparameterisation noise and BN-VAE all draw at random."""
    return ["fit", "--config", str(ROOT / "recipes" / "quickstart.yaml"), "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false", "--trainer.default_root_dir", str(run), "--data.train", str(data),
            "--data.valid", str(data), "--data.test", str(data), "--data.cache_dir", str(run.parent / "cache"),
            "--data.batch_size", "16", "--model.model.init_args.embed_dim", "16",
            "--model.model.init_args.hidden_dim", "16", "--export", str(run / "export"), *extra]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    last = max((run / "checkpoints").glob("*.ckpt"), key=lambda p: int(p.stem.rpartition("step=")[2]))
    return torch.load(last, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def uninterrupted(sentences, tmp_path_factory, one_thread) -> dict[str, torch.Tensor]:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    train.main(arguments(sentences, run, "--trainer.max_epochs", "3"))
    return final_weights(run)


def test_resuming_from_an_epoch_end_checkpoint_gives_the_uninterrupted_weights(sentences, uninterrupted, tmp_path):
    run = tmp_path / "run"
    train.main(arguments(sentences, run, "--trainer.max_epochs", "1"))
    checkpoint = next((run / "checkpoints").glob("*.ckpt"))
    train.main(arguments(sentences, run, "--trainer.max_epochs", "3", "--ckpt_path", str(checkpoint)))
    assert_same_weights(final_weights(run), uninterrupted)


@pytest.mark.parametrize("step", [3, STEPS_PER_EPOCH + 1], ids=["first-epoch", "second-epoch"])
def test_resuming_mid_epoch_gives_the_uninterrupted_weights(sentences, uninterrupted, tmp_path, step):
    """A checkpoint written every step stops in the middle of an epoch: the resumed epoch goes on with the
    batches not yet trained, in their order, with the random state of that moment."""
    run = tmp_path / "run"
    train.main(arguments(sentences, run, "--trainer.max_steps", str(step), "--trainer.callbacks+=ModelCheckpoint",
                         "--trainer.callbacks.every_n_train_steps", "1", "--trainer.callbacks.save_top_k", "-1"))
    checkpoint = run / "checkpoints" / f"epoch={(step - 1) // STEPS_PER_EPOCH}-step={step}.ckpt"
    assert checkpoint.is_file()
    resumed = tmp_path / "resumed"
    train.main(arguments(sentences, resumed, "--trainer.max_epochs", "3", "--ckpt_path", str(checkpoint)))
    assert_same_weights(final_weights(resumed), uninterrupted)


def validation_elbo(run: Path) -> list[float]:
    with open(run / "logs" / "version_0" / "metrics.csv", newline="") as f:
        return [float(row["val/elbo"]) for row in csv.DictReader(f) if row.get("val/elbo")]


def test_a_killed_run_resumes_to_the_final_validation_figure_of_an_uninterrupted_one(sentences, tmp_path):
    """SIGKILL in the middle of the second epoch, then ``--ckpt_path`` the epoch-end checkpoint it left."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}

    def run(folder: Path, *extra: str) -> subprocess.CompletedProcess:
        args = arguments(sentences, folder, "--trainer.max_epochs", "2", "--trainer.logger=CSVLogger",
                         "--trainer.logger.save_dir", str(folder), "--trainer.logger.name", "logs", *extra)
        return subprocess.run([sys.executable, "-m", "tools.train", *args], capture_output=True, text=True,
                              timeout=600, env=env, cwd=tmp_path)

    whole = run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run(tmp_path / "killed", "--trainer.callbacks+=kill_callback.KillAt",
                 "--trainer.callbacks.step", str(STEPS_PER_EPOCH + 3))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "export").exists()
    checkpoints = list((tmp_path / "killed" / "logs" / "version_0" / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in checkpoints] == [f"epoch=0-step={STEPS_PER_EPOCH}.ckpt"]
    resumed = run(tmp_path / "resumed", "--ckpt_path", str(checkpoints[0]))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the resumed run validates epoch 1; the whole run epochs 0 and 1
    assert validation_elbo(tmp_path / "resumed") == validation_elbo(tmp_path / "whole")[1:]
    assert len(validation_elbo(tmp_path / "whole")) == 2


class RecordBatches(pl.Callback):
    def __init__(self):
        self.epochs: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs.setdefault(trainer.current_epoch, []).append(sorted(batch.index.tolist()))


def test_every_epoch_is_a_new_shuffle_of_all_examples(sentences, tmp_path, one_thread):
    from textvae.lightning import TextDataModule, TextVAESystem
    from textvae.models import SentenceVAE

    data = TextDataModule(train=str(sentences), batch_size=16, cache_dir=str(tmp_path / "cache"))
    system = TextVAESystem(SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=8, latent_dim=2))
    record = RecordBatches()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[record])
    trainer.fit(system, datamodule=data)
    first, second = record.epochs[0], record.epochs[1]
    assert sorted(i for b in first for i in b) == sorted(i for b in second for i in b) == list(range(128))
    assert first != second
