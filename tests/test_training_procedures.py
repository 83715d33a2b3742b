"""The training procedures of TextVAESystem: aggressive inference (He et al. 2019) as pure logic and in a real
Trainer, AE pretraining with a decoder reset (Li et al. 2019), semi-amortised steps (Kim et al. 2018) and
the IWAE objective, on a tiny SentenceVAE and a small synthetic corpus."""

import math

import pytest
import pytorch_lightning as pl
import torch
from test_models import make_batch, sentences, tiny_vae

from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.lightning import AggressiveInference, TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from textvae.priors import MixturePrior
from textvae.schedules import KLSchedule
from textvae.training_objectives import ELBO, IWAE, SVI


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("procedures")
    write_jsonl(folder / "sentences.jsonl", generate_sentences(32, seed=1))
    return folder


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny models: one torch thread is faster, and leaves the other core to whoever shares the machine."""


def datamodule(corpus) -> TextDataModule:
    path = str(corpus / "sentences.jsonl")
    return TextDataModule(train=path, valid=path, batch_size=8, cache_dir=str(corpus / "cache"))  # 4 batches


def small_vae(data: TextDataModule, seed: int = 0, **kwargs) -> SentenceVAE:
    torch.manual_seed(seed)
    return SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3, **kwargs)


def fit(system, data, tmp_path, callbacks=(), **trainer_args):
    args = dict(max_epochs=1, limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=list(callbacks), **(args | trainer_args))
    trainer.fit(system, datamodule=data)
    return trainer


def snapshot(parameters):
    return [p.detach().clone() for p in parameters]


def same(before, parameters):
    return all(torch.equal(a, b) for a, b in zip(before, parameters, strict=True))


def none_same(before, parameters):
    return all(not torch.equal(a, b) for a, b in zip(before, parameters, strict=True))


def encoder_and_decoder(model):
    inference = list(model.inference_parameters())
    ids = {id(p) for p in inference}
    return inference, [p for p in model.parameters() if id(p) not in ids]


# ---------------------------------------------------------------------------------------------------
# Aggressive inference: the stopping rules


def test_aggressive_phase_ends_once_validation_mi_decreases_and_never_restarts():
    rule = AggressiveInference()
    rule.after_validation(-2.0)  # the first validation never ends it, whatever the MI
    assert rule.active
    for mi in (0.5, 0.5, 0.9):  # rising or flat: keep going
        rule.after_validation(mi)
        assert rule.active
    rule.after_validation(0.8)  # below the last one: the phase ends
    assert not rule.active
    for mi in (1.5, 3.0, 0.1):
        rule.after_validation(mi)
        assert not rule.active and rule.last_mi == mi
    restored = AggressiveInference()
    restored.load_state_dict(rule.state_dict())
    assert not restored.active and restored.last_mi == 0.1


def run_inner_loop(rule: AggressiveInference, steps):
    """Send (summed loss, examples) per step; the step (1-based) at which the coroutine says stop, or None."""
    loop = rule.inner_losses()
    next(loop)
    for step, (loss, size) in enumerate(steps, start=1):
        if loop.send((loss * size, size)):
            return step
    return None


def test_inner_loop_stops_when_a_15_step_window_is_worse_than_the_last_or_at_max_steps():
    rule = AggressiveInference(max_inner_steps=100)
    falling = [(10.0 - 0.01 * i, 8) for i in range(200)]
    assert run_inner_loop(rule, falling) == 100  # never worse: the cap
    assert run_inner_loop(AggressiveInference(max_inner_steps=7), falling) == 7
    assert run_inner_loop(rule, [(1.0, 8)] * 15 + [(1.01, 8)] * 15 + [(0.5, 8)] * 100) == 30
    # equal windows do not stop it; the first window is compared with nothing
    assert run_inner_loop(rule, [(5.0, 8)] * 45 + [(5.5, 8)] * 15) == 60
    # a window's loss is per example: one large batch of low loss outweighs 14 small ones of a higher loss
    window = [(0.5, 100)] + [(1.2, 1)] * 14  # per example (50 + 16.8) / 114 = 0.586; per step 1.15
    assert run_inner_loop(rule, [(1.0, 8)] * 15 + window + [(2.0, 8)] * 15) == 45
    window = [(0.8, 1)] * 14 + [(1.5, 20)]  # per example (11.2 + 30) / 34 = 1.21; per step 0.85
    assert run_inner_loop(rule, [(1.0, 8)] * 15 + window + [(0.1, 8)] * 100) == 30


# ---------------------------------------------------------------------------------------------------
# Aggressive inference in a real Trainer


class OptimizerSteps(pl.Callback):
    """Counts the steps of the encoder's and the decoder's optimiser, and records whether an encoder step
    ever moved the decoder or a decoder step the encoder."""

    def __init__(self):
        self.steps = {"encoder": 0, "decoder": 0}
        self.per_epoch: list[dict[str, int]] = []
        self.decoder_moved_by_encoder_step = False
        self.encoder_moved_by_decoder_step = False

    def on_train_start(self, trainer, system):
        encoder, decoder = encoder_and_decoder(system.model)
        encoder_optimizer, decoder_optimizer = trainer.optimizers
        assert {id(p) for g in encoder_optimizer.param_groups for p in g["params"]} == {id(p) for p in encoder}

        def encoder_pre(*_):
            self._decoder = snapshot(decoder)

        def encoder_post(*_):
            self.steps["encoder"] += 1
            self.decoder_moved_by_encoder_step |= not same(self._decoder, decoder)

        def decoder_pre(*_):
            self._encoder = snapshot(encoder)

        def decoder_post(*_):
            self.steps["decoder"] += 1
            self.encoder_moved_by_decoder_step |= not same(self._encoder, encoder)

        encoder_optimizer.register_step_pre_hook(encoder_pre)
        encoder_optimizer.register_step_post_hook(encoder_post)
        decoder_optimizer.register_step_pre_hook(decoder_pre)
        decoder_optimizer.register_step_post_hook(decoder_post)

    def on_train_epoch_end(self, trainer, system):
        self.per_epoch.append(dict(self.steps))


def test_aggressive_training_updates_the_encoder_alone_while_active(corpus, tmp_path):
    data = datamodule(corpus)
    system = TextVAESystem(small_vae(data), aggressive=True, aggressive_max_inner_steps=5, lr=1e-2)
    encoder, decoder = encoder_and_decoder(system.model)
    before = snapshot(encoder), snapshot(decoder)
    counter = OptimizerSteps()
    fit(system, data, tmp_path, [counter])
    # 2 batches: each runs 5 encoder-only steps (the cap, below He et al.'s 15-step window), then 1 decoder step
    assert counter.steps == {"encoder": 10, "decoder": 2}
    assert not counter.decoder_moved_by_encoder_step and not counter.encoder_moved_by_decoder_step
    assert none_same(before[0], encoder) and none_same(before[1], decoder)


def test_aggressive_phase_ended_by_the_validation_mi_steps_both_networks_per_batch(corpus, tmp_path):
    data = datamodule(corpus)
    system = TextVAESystem(small_vae(data), aggressive=True, aggressive_max_inner_steps=5)
    system.aggressive.last_mi = math.inf  # as if the last validation's MI had been higher than any
    counter = OptimizerSteps()
    trainer = fit(system, data, tmp_path, [counter], max_epochs=2, limit_val_batches=2)
    assert not system.aggressive.active
    assert system.aggressive.last_mi == pytest.approx(float(trainer.callback_metrics["val/mi"]))
    # epoch 0 aggressive (5 + 1 per batch), epoch 1 after the validation that ended it: one step each per batch
    assert counter.per_epoch == [{"encoder": 10, "decoder": 2}, {"encoder": 12, "decoder": 4}]
    assert not counter.decoder_moved_by_encoder_step


# ---------------------------------------------------------------------------------------------------
# AE pretraining (Li et al. 2019)


class PretrainingProbe(pl.Callback):
    """Records beta at every training batch and, at the first batch after the pretraining epoch (before its
    step), how the parameters and the optimiser state compare with the end of that epoch."""

    def __init__(self):
        self.betas: list[tuple[int, float]] = []
        self.after_reset: dict[str, bool] = {}

    def on_train_epoch_end(self, trainer, system):
        if trainer.current_epoch == 0:
            self._encoder, self._decoder = (snapshot(p) for p in encoder_and_decoder(system.model))

    def on_train_batch_start(self, trainer, system, batch, batch_idx):
        self.betas.append((trainer.current_epoch, system.beta))
        if trainer.current_epoch == 1 and batch_idx == 0:
            encoder, decoder = encoder_and_decoder(system.model)
            state = trainer.optimizers[0].state
            self.after_reset = {
                "encoder_kept": same(self._encoder, encoder),
                "decoder_reinitialised": none_same(self._decoder, decoder),
                "encoder_adam_state_kept": all(p in state for p in encoder if p.requires_grad),
                "decoder_adam_state_dropped": not any(p in state for p in decoder),
            }


def test_ae_pretraining_trains_with_beta_0_then_resets_the_decoder_and_restarts_the_kl_schedule(corpus, tmp_path):
    data = datamodule(corpus)
    schedule = KLSchedule(kind="linear", min_beta=0.2, max_beta=1.0, warmup_steps=4)  # 0.2, 0.4, 0.6, 0.8, 1
    system = TextVAESystem(small_vae(data), ae_pretrain_epochs=1, kl_schedule=schedule, lr=1e-2)
    probe = PretrainingProbe()
    fit(system, data, tmp_path, [probe], max_epochs=3)
    assert probe.after_reset == {"encoder_kept": True, "decoder_reinitialised": True,
                                 "encoder_adam_state_kept": True, "decoder_adam_state_dropped": True}
    # epoch 0: the autoencoder (beta 0); then the schedule from its step 0, not from the 2 batches already seen
    assert probe.betas == [(0, 0.0), (0, 0.0), (1, pytest.approx(0.2)), (1, pytest.approx(0.4)),
                           (2, pytest.approx(0.6)), (2, pytest.approx(0.8))]


# ---------------------------------------------------------------------------------------------------
# Semi-amortised steps (Kim et al. 2018) and IWAE


@pytest.mark.parametrize("architecture", ["gru", "lstm", "transformer"])
def test_semi_amortised_loss_trains_the_encoder_through_the_steps(architecture):
    """The SA-VAE loss is the ELBO at the posterior after 2 differentiable refinement steps from the encoder's
    output: finite, and its gradient reaches every part of the encoder (through the steps) and the decoder."""
    model = tiny_vae(architecture, latent_dim=3)
    batch = make_batch(sentences(4))
    torch.manual_seed(0)
    terms = ELBO()(model, batch, beta=1.0, svi=SVI(steps=2, lr=0.5))
    assert torch.isfinite(terms.loss) and terms.posterior is not None
    terms.loss.backward()
    encoder, decoder = encoder_and_decoder(model)
    for parameters in (encoder, decoder):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
    for head in (model.posterior.to_mu, model.posterior.to_logvar, model.encoder):
        assert sum(float(p.grad.abs().sum()) for p in head.parameters()) > 0


def test_svi_steps_train_through_the_system(corpus, tmp_path):
    data = datamodule(corpus)
    system = TextVAESystem(small_vae(data), svi_steps=2, svi_lr=0.5, lr=1e-2)
    encoder, decoder = encoder_and_decoder(system.model)
    before = snapshot(encoder), snapshot(decoder)
    trainer = fit(system, data, tmp_path)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert all(torch.isfinite(p).all() for p in system.model.parameters())
    assert none_same(before[0], encoder) and none_same(before[1], decoder)
    with pytest.raises(ValueError, match="ELBO"):  # SA-VAE refines the ELBO, not the IW bound
        IWAE(k=2)(system.model, make_batch([[5, 6, 7]]), beta=1.0, svi=SVI(2, 0.5))


def test_iwae_objective_trains_through_the_system(corpus, tmp_path):
    data = datamodule(corpus)
    model = small_vae(data, prior=MixturePrior)
    system = TextVAESystem(model, objective=IWAE(k=4), lr=1e-2)
    before = snapshot(model.parameters())
    trainer = fit(system, data, tmp_path)
    metrics = trainer.callback_metrics
    assert all(math.isfinite(float(metrics[f"train/{name}"])) for name in ("loss", "iw_bound", "elbo", "kl"))
    assert none_same(before, model.parameters())  # every parameter moved (the mixture's weights too)
    # with a Monte-Carlo KL the reported ELBO is the mean log-weight of the same samples: below the IW bound
    batch = next(iter(data.train_dataloader()))
    torch.manual_seed(0)
    terms = IWAE(k=4)(model, batch, beta=1.0)
    assert float(terms.metrics["iw_bound"]) > float(terms.metrics["elbo"])
    assert float(terms.loss) == pytest.approx(-float(terms.metrics["iw_bound"]))  # beta 1: the bound itself


def test_objectives_say_whether_the_kl_is_closed_form_and_free_bits_per_dim_needs_it():
    """A Gaussian posterior and prior: closed form; a flow posterior: a Monte-Carlo estimate, which free bits
    per dimension cannot act on (one number per sentence) but free bits per sentence can."""
    from textvae.posteriors import IAFPosterior

    batch = make_batch(sentences())
    gaussian, flow = tiny_vae("gru"), tiny_vae("gru", posterior=IAFPosterior)
    for objective in (ELBO(), IWAE(k=3)):
        assert objective(gaussian, batch, beta=1.0).kl_closed_form is True
        assert objective(flow, batch, beta=1.0).kl_closed_form is False
    assert ELBO(free_bits_per_sentence=2.0)(flow, batch, beta=1.0).loss.isfinite()
    with pytest.raises(ValueError, match="free_bits_per_dim needs a KL per dimension"):
        ELBO(free_bits_per_dim=0.5)(flow, batch, beta=1.0)
