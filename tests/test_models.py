import json
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from textvae.data.batching import SentenceBatch, SentenceExample, collate_sentences
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.decoding import greedy
from textvae.inference import importance_samples
from textvae.models import LanguageModel, ModelOutput, SentenceVAE, TextModel
from textvae.objectives import gaussian_kl, importance_weighted_nll
from textvae.posteriors import BatchNormGaussian

VOCAB = 30

CONFIGS = {
    "lstm": dict(architecture="lstm"),
    "gru": dict(architecture="gru"),
    "bi-lstm": dict(architecture="lstm", bidirectional=True, num_layers=2, z_to_every_input=True),
    "gru-tied": dict(architecture="gru", bidirectional=True, z_to_every_input=True, tie_embeddings=True),
    "lstm-skip": dict(architecture="lstm", z_to_every_input=True, z_to_output=True),
    "transformer": dict(architecture="transformer", num_layers=2),
    "transformer-tied": dict(architecture="transformer", positions="sinusoidal", pooling="first",
                             tie_embeddings=True),
}


def sentences(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (n,), generator=g).tolist()
    return [torch.randint(4, VOCAB, (k,), generator=g).tolist() for k in lengths]


def make_batch(sents) -> SentenceBatch:
    return collate_sentences([SentenceExample(s, None, i) for i, s in enumerate(sents)])


def pad_columns(batch: SentenceBatch, extra: int) -> SentenceBatch:
    tokens = F.pad(batch.tokens, (0, extra), value=PAD_ID)
    return batch._replace(tokens=tokens)


def tiny_vae(config="lstm", seed=0, **kwargs) -> SentenceVAE:
    torch.manual_seed(seed)
    args = dict(vocab_size=VOCAB, embed_dim=16, hidden_dim=32, latent_dim=4, num_heads=2)
    return SentenceVAE(**{**args, **CONFIGS[config], **kwargs})


def train(model, batch, steps, lr=3e-3, beta=0.01):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        out = model(batch)
        loss = (out.reconstruction + beta * out.kl.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def manual_log_px(model, batch, z):
    """log p(x|z) one unpadded sentence at a time, from the teacher-forced logits: (B,)."""
    out = []
    for i in range(batch.tokens.shape[0]):
        ids = batch.tokens[i, : batch.lengths[i]].unsqueeze(0)  # (1, n + 2)
        logits = model.decoder(ids[:, :-1], None if z is None else z[i : i + 1])  # (1, n + 1, V)
        out.append(logits.log_softmax(-1).gather(-1, ids[:, 1:].unsqueeze(-1)).sum())
    return torch.stack(out)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_shapes(config):
    model = tiny_vae(config)
    batch = make_batch(sentences())
    out = model(batch)
    assert isinstance(out, ModelOutput) and isinstance(model, TextModel)
    assert out.reconstruction.shape == (8,) and out.aux_loss.shape == (8,)
    assert out.kl.shape == out.mu.shape == out.logvar.shape == (8, 4)
    assert torch.equal(out.aux_loss, torch.zeros(8))
    assert model.decoder(batch.inputs, out.mu).shape == (*batch.inputs.shape, VOCAB)
    assert model.sample_prior(5).shape == (5, 4)


def test_kl_is_the_closed_form_of_mu_and_logvar():
    out = tiny_vae("lstm")(make_batch(sentences()))
    assert torch.allclose(out.kl, gaussian_kl(out.mu, out.logvar))
    assert (out.kl >= 0).all()


@pytest.mark.parametrize("config", ["lstm", "bi-lstm", "transformer"])
def test_reconstruction_sums_words_and_eos_and_ignores_padding(config):
    model = tiny_vae(config).eval()
    batch = make_batch(sentences())
    padded = pad_columns(batch, 3)
    with torch.no_grad():
        torch.manual_seed(5)
        out = model(batch)
        torch.manual_seed(5)
        out_padded = model(padded)
        z = out.mu
        expected = manual_log_px(model, batch, z)
        assert torch.allclose(out.mu, out_padded.mu, atol=1e-5)
        assert torch.allclose(out.reconstruction, out_padded.reconstruction, atol=1e-4)
        assert torch.allclose(model.log_px_given_z(batch, z[None])[0], expected, atol=1e-4)
        assert torch.allclose(model.log_px_given_z(padded, z[None])[0], expected, atol=1e-4)


def capture_decoder_inputs(model):
    seen = []
    model.decoder.embedding.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    return seen


@pytest.mark.parametrize("model_class", [SentenceVAE, LanguageModel])
def test_word_dropout_only_in_training_and_never_on_bos_eos_pad(model_class):
    torch.manual_seed(0)
    model = model_class(vocab_size=VOCAB, embed_dim=16, hidden_dim=32, word_dropout=0.5)
    seen = capture_decoder_inputs(model)
    batch = make_batch(sentences(64))
    model.train()
    model(batch)
    dropped = seen[-1]
    inputs = batch.inputs
    assert dropped.shape == inputs.shape
    special = torch.isin(inputs, torch.tensor([PAD_ID, BOS_ID, EOS_ID]))
    assert torch.equal(dropped[special], inputs[special])
    assert (dropped[:, 0] == BOS_ID).all()
    changed = dropped != inputs
    assert (dropped[changed] == UNK_ID).all()
    rate = changed.sum() / (~special).sum()
    assert 0.4 < rate < 0.6
    model.eval()
    model(batch)
    assert torch.equal(seen[-1], inputs)


def test_eval_is_deterministic_given_z_and_training_is_not():
    model = tiny_vae("lstm", dropout=0.3, word_dropout=0.3)
    batch = make_batch(sentences())
    z = torch.randn(2, 8, 4)
    model.eval()
    first = model.log_px_given_z(batch, z)
    assert torch.equal(first, model.log_px_given_z(batch, z))
    torch.manual_seed(3)
    a = model(batch)
    torch.manual_seed(3)
    b = model(batch)
    assert torch.equal(a.reconstruction, b.reconstruction)
    model.train()
    assert not torch.equal(model.log_px_given_z(batch, z), model.log_px_given_z(batch, z))


@pytest.mark.parametrize("config", ["lstm", "bi-lstm", "transformer"])
def test_importance_samples_bound_and_chunking(config):
    batch = make_batch(sentences())
    model = train(tiny_vae(config), batch, steps=60, beta=0.02).eval()  # KL a few nats: q is informative
    k = 32
    with torch.no_grad():
        samples = importance_samples(model, batch, k, generator=torch.Generator().manual_seed(0))
        for term in samples:
            assert term.shape == (k, 8)
        iw_nll = importance_weighted_nll(*samples)  # (B,)
        out = model(batch)
        neg_elbo = -samples.log_px_given_z.mean(0) + out.kl.sum(-1)  # (B,) analytic KL
        assert iw_nll.mean() <= neg_elbo.mean()
        # with the same samples Jensen's inequality holds for every sentence
        assert (iw_nll <= -(samples.log_px_given_z + samples.log_pz - samples.log_qz).mean(0) + 1e-4).all()
        z = torch.randn(k, 8, 4)
        whole = model.log_px_given_z(batch, z, chunk=k)
        for chunk in (1, 5, None):
            assert torch.allclose(model.log_px_given_z(batch, z, chunk=chunk), whole, atol=1e-5)
        assert torch.allclose(whole[3], manual_log_px(model, batch, z[3]), atol=1e-4)


def test_importance_samples_are_reproducible_with_a_generator():
    model = tiny_vae("gru").eval()
    batch = make_batch(sentences())
    with torch.no_grad():
        a = importance_samples(model, batch, 4, generator=torch.Generator().manual_seed(1))
        b = importance_samples(model, batch, 4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("architecture", ["lstm", "transformer"])
def test_overfits_eight_sentences(architecture):
    sents = sentences(8)
    batch = make_batch(sents)
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=VOCAB, architecture=architecture, embed_dim=32, hidden_dim=64, latent_dim=8,
                        num_heads=2)
    train(model, batch, steps=300, lr=3e-3, beta=0.01)
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(batch.tokens, batch.lengths)
        reconstruction = model.log_px_given_z(batch, mu[None])[0].neg()
    assert reconstruction.mean() < 1.0  # nats per sentence, from ~25 at initialisation
    assert greedy(model, mu, max_len=12) == sents


@pytest.mark.parametrize("config", ["lstm", "transformer"])
def test_training_step_changes_weights_and_eval_forward_does_not(config):
    model = tiny_vae(config)
    batch = make_batch(sentences())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        model(batch)
    importance_samples(model, batch, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    train(model, batch, steps=1)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert {"posterior.to_mu.weight", "decoder.output.weight", "encoder.embedding.weight"} <= changed


@pytest.mark.parametrize("config", list(CONFIGS))
def test_incremental_decoding_matches_teacher_forcing(config):
    model = tiny_vae(config).eval()
    batch = make_batch(sentences())
    z = torch.randn(8, 4)
    with torch.no_grad():
        full = model.decoder(batch.inputs, z)  # (B, T, V)
        state = model.decoder_start(z)
        for t in range(batch.inputs.shape[1]):
            logits, state = model.decoder_step(batch.inputs[:, t], state)
            assert torch.allclose(logits, full[:, t], atol=1e-5)


def test_z_to_output_adds_a_linear_map_of_z_to_every_output_state():
    """With the initial state cut off from z, the recurrence does not see z: two codes' output states then
    differ at every step by exactly the skip map of their difference, W (z1 - z2)."""
    model = tiny_vae("lstm", z_to_output=True).eval()
    decoder = model.decoder
    with torch.no_grad():
        decoder.latent_to_hidden.weight.zero_()
        batch = make_batch(sentences())
        z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
        difference = decoder.features(batch.inputs, z1) - decoder.features(batch.inputs, z2)  # (B, T, H)
        expected = (z1 - z2) @ decoder.latent_to_output.weight.T  # (B, H)
    torch.testing.assert_close(difference, expected.unsqueeze(1).expand_as(difference), atol=1e-5, rtol=0)
    without = tiny_vae("lstm").eval().decoder
    with torch.no_grad():
        without.latent_to_hidden.weight.zero_()
        assert torch.equal(without.features(batch.inputs, z1), without.features(batch.inputs, z2))


@pytest.mark.parametrize("config", ["bi-lstm", "transformer"])
def test_reorder_picks_state_rows(config):
    model = tiny_vae(config).eval()
    z = torch.randn(3, 4)
    tokens = torch.tensor([5, 6, 7])
    with torch.no_grad():
        _, state = model.decoder_step(tokens, model.decoder_start(z))
        index = torch.tensor([2, 0, 0, 1])
        logits, _ = model.decoder_step(tokens[index], model.decoder_reorder(state, index))
        expected, _ = model.decoder_step(tokens, state)
    assert torch.allclose(logits, expected[index], atol=1e-6)


@pytest.mark.parametrize("architecture", ["lstm", "gru", "transformer"])
def test_language_model(architecture):
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=VOCAB, architecture=architecture, embed_dim=16, hidden_dim=32, num_heads=2)
    batch = make_batch(sentences())
    out = model(batch)
    assert isinstance(model, TextModel) and model.latent_dim == 0
    assert out.kl is None and out.mu is None and out.logvar is None
    assert out.reconstruction.shape == out.aux_loss.shape == (8,)
    assert torch.allclose(-out.reconstruction, manual_log_px(model, batch, None), atol=1e-4)
    # untrained: close to the uniform distribution's NLL over the words and EOS
    uniform = (batch.lengths - 1).float() * math.log(VOCAB)
    assert torch.allclose(out.reconstruction, uniform, rtol=0.1)
    with pytest.raises(ValueError):
        model.decoder_start(torch.zeros(2, 4))
    with pytest.raises(ValueError):
        model.decoder_start(None)


def test_argument_errors():
    with pytest.raises(ValueError):
        tiny_vae("lstm").decoder_start(None, 3)
    with pytest.raises(ValueError):
        SentenceVAE(vocab_size=VOCAB, architecture="rnn")
    with pytest.raises(ValueError):
        SentenceVAE(vocab_size=VOCAB, architecture="transformer", z_to_every_input=True)
    with pytest.raises(ValueError):
        SentenceVAE(vocab_size=VOCAB, latent_dim=0)
    model = tiny_vae("transformer", max_len=6)
    with pytest.raises(ValueError, match="max_len"):
        model.decoder(torch.ones(2, 7, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        model.log_px_given_z(make_batch(sentences()), torch.zeros(2, 8, 4), chunk=0)


@pytest.mark.parametrize("model", [tiny_vae("gru-tied", word_dropout=0.1),
                                   LanguageModel(vocab_size=VOCAB, architecture="transformer", embed_dim=16)])
def test_init_args_rebuild_the_same_model(model):
    args = json.loads(json.dumps(model.init_args))  # what textvae.export writes to config.json
    assert args["vocab_size"] == VOCAB
    rebuilt = type(model)(**args)
    assert rebuilt.init_args == model.init_args
    rebuilt.load_state_dict(model.state_dict())  # same parameter names and shapes


def test_bn_vae_keeps_informative_kl_per_dimension_and_eval_is_batch_independent():
    gamma = 0.6
    model = tiny_vae("lstm", posterior=partial(BatchNormGaussian, gamma=gamma)).train()
    with torch.no_grad():  # a fresh tiny encoder's mu hardly varies (~1e-6), below BatchNorm's eps
        model.posterior.to_mu.weight.mul_(100.0)
    batch = make_batch(sentences(16))
    out = model(batch)
    # In training every dimension of mu has batch variance gamma^2, hence batch-mean KL >= gamma^2 / 2.
    assert torch.allclose(out.mu.var(0, unbiased=False), torch.full((4,), gamma**2), atol=2e-3)
    assert (out.kl.mean(0) >= gamma**2 / 2 - 1e-3).all()
    out.kl.sum().backward()
    assert model.posterior.mu_shift.grad is not None  # the shift is learned, the scale is fixed
    # In eval mode the running statistics are used: a sentence's posterior does not depend on its batch.
    model.eval()
    sents = sentences(16)
    with torch.no_grad():
        mu_all, _ = model.encode(make_batch(sents).tokens, make_batch(sents).lengths)
        first = make_batch(sents[:3])
        mu_few, _ = model.encode(first.tokens, first.lengths)
    assert torch.allclose(mu_all[:3], mu_few, atol=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        tiny_vae("lstm", posterior=partial(BatchNormGaussian, gamma=-1.0))
