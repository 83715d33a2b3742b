"""Learning-rate decay on a validation plateau (He et al. 2019, Li et al. 2019): the rule by hand, and in a real
Trainer against the validation ELBO Lightning logs, the best weights it went back to, and a resumed run."""

import math

import pytest
import pytorch_lightning as pl
import torch
from test_resume import arguments, assert_same_weights, final_weights
from test_training_procedures import corpus, datamodule, small_vae  # noqa: F401  (the corpus fixture)

from textvae.lightning import TextVAESystem
from textvae.schedules import LRDecay, PlateauDecay
from tools import train


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny models: one torch thread is faster."""


def test_the_rule_decays_after_patience_epochs_worse_than_the_reference_and_stops_at_the_last_decay():
    rule = PlateauDecay(LRDecay(patience=2, max_decays=3))
    said = [rule.after_validation(score, epoch) for epoch, score in enumerate(
        [-10, -9, -9, -9.5, -8, -8.5, float("nan"), -8.1, -8.2, -7, -7.5, -7.5], start=1)]
    assert said == ["improved", "improved", None,  # -9 again is no better, and no worse: the count restarts
                    None, "improved", None, "decay",  # a NaN is worse than anything
                    None, "decay",  # the reference stayed -8 (not the NaN): -8.1 and -8.2 are 2 worse epochs
                    "improved", None, "stop"]  # the 3rd decay ends training
    assert rule.best == -7 and rule.decays == 3


def test_after_a_decay_the_reference_is_that_epoch_not_the_best():
    """He et al.'s code: ``opt_dict["best_loss"] = loss`` at a decay, so an epoch better than that one (though
    not the best) restarts the count."""
    rule = PlateauDecay(LRDecay(patience=1, max_decays=5))
    assert [rule.after_validation(score, 1) for score in (-5, -6, -5.5, -5.8, -4)] == [
        "improved", "decay", None, "decay", "improved"]


def test_the_rule_waits_for_min_epochs_then_decays_at_once():
    """He et al.: ``not_improved >= decay_epoch and epoch >= 15``: the epochs without improvement before the
    15th still count."""
    rule = PlateauDecay(LRDecay(patience=2, min_epochs=5))
    assert [rule.after_validation(-1.0 if epoch == 1 else -2.0, epoch) for epoch in range(1, 7)] == [
        "improved", None, None, None, "decay", None]


@pytest.mark.parametrize("settings", [dict(factor=1.0), dict(factor=0.0), dict(patience=0), dict(max_decays=0),
                                      dict(min_epochs=-1)])
def test_nonsense_settings_are_refused(settings):
    with pytest.raises(ValueError, match="lr_decay"):
        LRDecay(**settings)


class Record(pl.Callback):
    """After each validation (and the system's decision): Lightning's logged validation ELBO, the weights and
    the learning rate the next epoch trains with."""

    def __init__(self):
        self.seen = []

    def on_validation_end(self, trainer, system):
        if trainer.sanity_checking:
            return
        self.seen.append((float(trainer.callback_metrics["val/elbo"]),
                          {k: v.detach().clone() for k, v in system.model.state_dict().items()},
                          trainer.optimizers[0].param_groups[0]["lr"]))


def test_a_trainer_decays_the_rate_goes_back_to_the_best_weights_and_stops(corpus, tmp_path):  # noqa: F811
    data = datamodule(corpus)
    data.setup("fit")
    lr, decay = 0.3, LRDecay(factor=0.5, patience=1, max_decays=2)
    system = TextVAESystem(small_vae(data), lr=lr, lr_decay=decay)
    record = Record()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[record], max_epochs=40, num_sanity_val_steps=0)
    trainer.fit(system, datamodule=data)

    best, best_weights, reference, wait, decays = -math.inf, None, -math.inf, 0, 0
    for epoch, (elbo, weights, rate) in enumerate(record.seen):
        if elbo > best:
            best, best_weights = elbo, weights
        if elbo >= reference:
            reference, wait = elbo, 0
        else:
            wait += 1
            if wait == decay.patience:
                reference, wait, decays = elbo, 0, decays + 1
                assert_same_weights(weights, best_weights)  # back to the best validation's weights
                assert decays < decay.max_decays or epoch == len(record.seen) - 1  # the last decay ends it
        assert rate == pytest.approx(lr * decay.factor ** min(decays, decay.max_decays - 1))
    assert decays == decay.max_decays and len(record.seen) < 40
    assert_same_weights(system.model.state_dict(), best_weights)


def test_a_run_with_lr_decay_resumes_to_the_uninterrupted_weights(corpus, tmp_path):  # noqa: F811
    """The rule's counts and the best weights travel in the checkpoint: stopped after 4 epochs and resumed, the
    run ends with the weights of the same run uninterrupted."""
    data = corpus / "sentences.jsonl"
    decay = ["--model.lr_decay.factor", "0.5", "--model.lr_decay.patience", "1", "--model.lr_decay.max_decays",
             "10", "--model.lr", "0.1"]
    whole = tmp_path / "whole"
    train.main(arguments(data, whole, "--trainer.max_epochs", "8", *decay))
    part = tmp_path / "part"
    train.main(arguments(data, part, "--trainer.max_epochs", "4", *decay))
    checkpoint = next((part / "checkpoints").glob("*.ckpt"))
    train.main(arguments(data, part, "--trainer.max_epochs", "8", "--ckpt_path", str(checkpoint), *decay))
    assert_same_weights(final_weights(part), final_weights(whole))
    decays = [torch.load(path, map_location="cpu", weights_only=True)["textvae"]["lr_decay"]["decays"]
              for path in (checkpoint, max((whole / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime))]
    assert 0 < decays[0] < decays[1]  # decays before the interruption and after it
