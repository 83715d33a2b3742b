"""Dialogue models (HRED, VHRED, CVAE, kgCVAE): shapes, the context encoder, closed-form KL, the
bag-of-words and act losses, which network gives z when, act conditioning, decoding, an overfit, and
export -> load. The bag-of-words loss itself is checked by hand in test_objectives."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from textvae.data.batching import collate_dialogues
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.decoding import beam_search, greedy, sample
from textvae.export import load_export, save_export
from textvae.models import CVAE, HRED, VHRED, DialogueModel, ModelOutput, ResponseCondition
from textvae.models.modules import RNNDecoder
from textvae.objectives import bag_of_words_nll, reparameterize

# Tiny models: one thread is faster, and the overfit test then follows the same trajectory on any machine
# (with 2 threads the summation order changes and HRED's 220 steps land above the threshold).
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(embed_dim=16, utterance_dim=12, context_dim=20, decoder_dim=18)


@pytest.fixture(scope="module")
def data(six_dialogues):
    _, tokenizer, dataset = six_dialogues
    return tokenizer, dataset


@pytest.fixture(scope="module")
def batch(data):
    _, dataset = data
    return collate_dialogues([dataset[i] for i in range(7)])


def build(name: str, data) -> torch.nn.Module:
    tokenizer, dataset = data
    v = tokenizer.vocab_size
    torch.manual_seed(0)
    if name == "hred":
        return HRED(vocab_size=v, **SMALL)
    if name == "hred-lstm":
        return HRED(vocab_size=v, cell="lstm", num_layers=2, condition_every_input=False, share_embeddings=False,
                    **SMALL)
    if name == "vhred":
        return VHRED(vocab_size=v, latent_dim=6, network_dim=10, **SMALL)
    if name == "cvae":
        return CVAE(vocab_size=v, latent_dim=6, prior_dim=10, mlp_dim=10, **SMALL)
    if name == "cvae-topics-no-bow":
        return CVAE(vocab_size=v, latent_dim=6, prior_dim=10, num_topics=len(dataset.topics), topic_dim=4,
                    bow_weight=0.0, **SMALL)
    if name == "cvae-every-input":
        return CVAE(vocab_size=v, latent_dim=6, prior_dim=10, mlp_dim=10, condition_every_input=True, **SMALL)
    if name in ("kgcvae", "kgcvae-copy"):
        return CVAE(vocab_size=v, latent_dim=6, prior_dim=10, mlp_dim=10, knowledge=True,
                    num_acts=len(dataset.acts), act_dim=5, num_topics=len(dataset.topics), topic_dim=4,
                    attention=name == "kgcvae-copy", copy=name == "kgcvae-copy", **SMALL)
    if name == "hred-attention":
        return HRED(vocab_size=v, attention=True, **SMALL)
    if name == "vhred-copy":
        return VHRED(vocab_size=v, latent_dim=6, network_dim=10, attention=True, copy=True, **SMALL)
    raise KeyError(name)


# the *-attention / *-copy models: the decoder attends to the context's words (and copies them)
ALL = ["hred", "hred-lstm", "hred-attention", "vhred", "vhred-copy", "cvae", "cvae-topics-no-bow",
       "cvae-every-input", "kgcvae", "kgcvae-copy"]
LATENT = ["vhred", "vhred-copy", "cvae", "cvae-topics-no-bow", "cvae-every-input", "kgcvae", "kgcvae-copy"]


def vector(condition):
    """The condition's vector: a decoder that attends reads it together with the context's words."""
    return getattr(condition, "vector", condition)


def gaussians(model, batch):
    """(c, prior (mu, logvar), posterior (mu, logvar)) as the model computes them."""
    inference = model.infer(batch)
    return inference.condition, inference.p.params, inference.q.params


@pytest.mark.parametrize("name", ALL)
def test_forward_shapes_and_contract(name, data, batch):
    model = build(name, data)
    assert isinstance(model, DialogueModel)
    out = model(batch)
    b = batch.response.shape[0]
    assert isinstance(out, ModelOutput)
    assert out.reconstruction.shape == (b,) and (out.reconstruction > 0).all()
    assert out.aux_loss.shape == (b,)
    if name.startswith("hred"):
        assert model.latent_dim == 0 and out.kl is None and out.mu is None and out.logvar is None
    else:
        z = model.latent_dim
        assert out.kl.shape == out.mu.shape == out.logvar.shape == (b, z)
        assert (out.kl >= -1e-6).all()
    assert model.num_acts == (len(data[1].acts) if name.startswith("kgcvae") else 0)
    # aux: zeros without a bag-of-words or act loss, positive with one
    has_aux = name in ("cvae", "cvae-every-input", "kgcvae", "kgcvae-copy")
    assert bool((out.aux_loss > 0).all()) == has_aux and bool((out.aux_loss == 0).all()) != has_aux
    loss = out.reconstruction.mean() + out.aux_loss.mean() + (0 if out.kl is None else out.kl.sum(-1).mean())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # every parameter is used (DDP needs it)


@pytest.mark.parametrize("name", LATENT)
def test_kl_is_the_closed_form_kl_between_recognition_and_prior(name, data, batch):
    model = build(name, data).eval()
    with torch.no_grad():
        out = model(batch)
        _, (mu_p, logvar_p), (mu_q, logvar_q) = gaussians(model, batch)
    expected = kl_divergence(Normal(mu_q, torch.exp(0.5 * logvar_q)), Normal(mu_p, torch.exp(0.5 * logvar_p)))
    assert torch.allclose(out.kl, expected, atol=1e-5)
    assert torch.equal(out.mu, mu_q) and torch.equal(out.logvar, logvar_q)
    assert not torch.allclose(mu_p, mu_q)  # two different networks


def test_aux_loss_is_bag_of_words_plus_act_cross_entropy_on_known_acts(data, batch):
    model = build("kgcvae", data).eval()
    gold = batch.acts.clone()
    gold[1] = -1  # an example without an act: no act loss
    b = batch._replace(acts=gold)
    with torch.no_grad():
        torch.manual_seed(5)
        out = model(b)
        torch.manual_seed(5)  # the same z: in eval mode reparameterisation is the only randomness
        c, _, (mu, logvar) = gaussians(model, b)
        generation = torch.cat([c, reparameterize(mu, logvar)], dim=-1)
        bow = bag_of_words_nll(model.bow_network(generation), b.targets, pad_id=PAD_ID)
        act = F.cross_entropy(model.act_network(generation), gold, ignore_index=-1, reduction="none")
    assert act[1] == 0 and (act[gold >= 0] > 0).all()
    assert torch.allclose(out.aux_loss, bow + act, atol=1e-5)
    assert torch.allclose(out.act_nll, act, atol=1e-5)  # the act's share of the likelihood bound, unweighted
    assert model.decoder.rnn.input_size == SMALL["embed_dim"] + 5  # the act embedding at every step


@pytest.mark.parametrize("name", LATENT)
def test_training_uses_the_recognition_network_and_generation_the_prior(name, data, batch):
    model = build(name, data).eval()

    def run():
        with torch.no_grad():
            torch.manual_seed(1)
            out = model(batch)
            prior = model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(2))
            post = model.response_condition(batch, num_samples=2, z_source="posterior",
                                            generator=torch.Generator().manual_seed(2))
        return out, prior, post

    out0, prior0, post0 = run()
    with torch.no_grad():
        model.prior.to_mu.weight.add_(0.5)
    out1, prior1, post1 = run()
    assert torch.equal(out0.reconstruction, out1.reconstruction)  # forward's z is not the prior's
    assert not torch.allclose(out0.kl, out1.kl)  # ... but its KL is measured against it
    assert not torch.allclose(prior0.z, prior1.z)  # generation draws z from the prior network
    assert torch.equal(post0.z, post1.z)
    with torch.no_grad():
        model.posterior.to_mu.weight.add_(0.5)
    out2, prior2, post2 = run()
    assert not torch.allclose(out1.reconstruction, out2.reconstruction)
    assert not torch.allclose(post1.z, post2.z)
    assert torch.equal(prior1.z, prior2.z) and torch.equal(vector(prior1.condition), vector(prior2.condition))


def test_context_encoding_ignores_padding_and_batch_neighbours(data):
    _, dataset = data
    model = build("hred", data).eval()
    examples = [dataset[i] for i in range(7)]
    assert len({len(e.context) for e in examples}) > 1  # contexts of different lengths: padded turns
    with torch.no_grad():
        together = model.encode_context(collate_dialogues(examples))
        alone = torch.cat([model.encode_context(collate_dialogues([e])) for e in examples])
        floor_flipped = collate_dialogues(examples)
        floor_flipped = floor_flipped._replace(context_floor=1 - floor_flipped.context_floor)
        flipped = model.encode_context(floor_flipped)
    assert torch.allclose(together, alone, atol=1e-6)
    assert not torch.allclose(together, flipped)  # the floor (speaker) feature is read


@pytest.mark.parametrize("name", ALL)
def test_response_condition_rows_are_sample_major(name, data, batch):
    model = build(name, data).eval()
    b, n = batch.response.shape[0], 3
    with torch.no_grad():
        rc = model.response_condition(batch, num_samples=n, generator=torch.Generator().manual_seed(0))
        again = model.response_condition(batch, num_samples=n, generator=torch.Generator().manual_seed(0))
        c = model.encode_context(batch)
    assert isinstance(rc, ResponseCondition) and rc.condition.shape[0] == n * b
    if model.attention:  # the context's words come with the condition, repeated sample-major like it
        words = model.context_and_words(batch)[1]
        assert torch.equal(rc.condition.words.ids, words.ids.repeat(n, 1))
        assert torch.allclose(rc.condition.words.states, words.states.repeat(n, 1, 1))
    rc, again = rc._replace(condition=vector(rc.condition)), again._replace(condition=vector(again.condition))
    assert torch.equal(rc.condition, again.condition)  # the generator makes it deterministic
    context = rc.condition[:, : c.shape[1]].view(n, b, -1)
    assert torch.allclose(context, c.expand(n, b, -1))  # row s * B + b is context b
    if name.startswith("hred"):
        assert rc.z is None and rc.acts is None and rc.condition.shape == (n * b, c.shape[1])
    else:
        assert rc.z.shape == (n * b, model.latent_dim)
        assert torch.equal(rc.condition[:, c.shape[1]: c.shape[1] + model.latent_dim], rc.z)
        assert not torch.allclose(rc.z[:b], rc.z[b: 2 * b])  # different samples per context
        assert (rc.acts is not None) == name.startswith("kgcvae")


@pytest.mark.parametrize("name", ALL)
def test_bad_requests_raise_clear_errors(name, data, batch):
    model = build(name, data)
    with pytest.raises(ValueError, match="z_source"):
        model.response_condition(batch, z_source="likelihood")
    with pytest.raises(ValueError, match="num_samples"):
        model.response_condition(batch, num_samples=0)
    b = batch.response.shape[0]
    if name.startswith("kgcvae"):
        with pytest.raises(ValueError, match="act ids must be in"):
            model.response_condition(batch, acts=torch.full((b,), model.num_acts))
        with pytest.raises(ValueError, match="one act id per context"):
            model.response_condition(batch, acts=torch.zeros(b + 1, dtype=torch.long))
    else:
        with pytest.raises(ValueError, match="not conditioned on dialog acts"):
            model.response_condition(batch, acts=torch.zeros(b, dtype=torch.long))
    if not name.startswith("hred"):
        with pytest.raises(ValueError, match="needs the response"):
            model.response_condition(batch._replace(response=None, response_lengths=None), z_source="posterior")
    with pytest.raises(ValueError, match="response_condition"):
        model.decoder_start(None)


def test_prior_generation_needs_no_response(data, batch):
    model = build("kgcvae", data).eval()
    contexts_only = batch._replace(response=None, response_lengths=None, acts=None, emotions=None)
    with torch.no_grad():
        rc = model.response_condition(contexts_only, num_samples=2)
    assert rc.condition.shape[0] == 2 * batch.context.shape[0]
    assert len(greedy(model, rc.condition, 6)) == rc.condition.shape[0]


def test_kgcvae_act_conditioning_changes_the_decoder_condition(data, batch):
    model = build("kgcvae", data).eval()
    b = batch.response.shape[0]
    with torch.no_grad():
        runs = {a: model.response_condition(batch, num_samples=2, acts=torch.full((b,), a),
                                            generator=torch.Generator().manual_seed(0)) for a in (0, 1)}
        free = model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        logits = {a: model.decoder_step(torch.full((2 * b,), BOS_ID), model.decoder_start(rc.condition))[0]
                  for a, rc in runs.items()}
        c = model.encode_context(batch).repeat(2, 1)
        predicted = model.act_network(torch.cat([c, free.z], dim=-1)).argmax(-1)
    assert torch.equal(runs[0].z, runs[1].z)  # the same latent ...
    assert (runs[0].acts == 0).all() and (runs[1].acts == 1).all()
    assert not torch.allclose(runs[0].condition, runs[1].condition)  # ... conditioned on another act
    assert not torch.allclose(logits[0], logits[1])
    assert torch.equal(free.acts, predicted)  # without acts: the act predicted from (c, z)


@pytest.mark.parametrize("knowledge", [False, True])
def test_cvae_condition_every_input_feeds_the_whole_condition_to_every_step(data, knowledge):
    tokenizer, dataset = data
    acts = dict(knowledge=True, num_acts=len(dataset.acts), act_dim=5) if knowledge else {}
    paper = CVAE(vocab_size=tokenizer.vocab_size, latent_dim=6, **acts, **SMALL)
    every = CVAE(vocab_size=tokenizer.vocab_size, latent_dim=6, condition_every_input=True, **acts, **SMALL)
    condition_dim = every.decoder.latent_dim  # [c, z(, act)]
    assert every.decoder.rnn.input_size == SMALL["embed_dim"] + condition_dim
    # the paper's decoder reads only the act embedding at every step (kgCVAE), nothing more for CVAE
    assert paper.decoder.rnn.input_size == SMALL["embed_dim"] + (5 if knowledge else 0)
    # with the initial state held fixed, a different z still changes the next step's logits
    every.eval()
    tokens = torch.full((2,), BOS_ID)
    condition = torch.randn(2, condition_dim, generator=torch.Generator().manual_seed(0))
    state = every.decoder_start(condition)
    other = condition.clone()
    other[:, -6 - (5 if knowledge else 0):] += 1.0  # another z, the same c (and act)
    state_other = every.decoder_start(other)._replace(hidden=state.hidden)  # only the every-step input differs
    with torch.no_grad():
        a, _ = every.decoder_step(tokens, state)
        b, _ = every.decoder_step(tokens, state_other)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", ALL)
def test_stepwise_decoding_matches_teacher_forcing_and_decoders_run(name, data, batch):
    model = build(name, data).eval()
    with torch.no_grad():
        rc = model.response_condition(batch, z_source="posterior", generator=torch.Generator().manual_seed(0))
        forced = model.decoder(batch.inputs, rc.condition)  # (B, T, V)
        state = model.decoder_start(rc.condition)
        for t in range(batch.inputs.shape[1]):
            step_logits, state = model.decoder_step(batch.inputs[:, t], state)
            assert torch.allclose(step_logits, forced[:, t], atol=1e-5)
    b = rc.condition.shape[0]
    assert len(greedy(model, rc.condition, 8)) == b
    assert len(beam_search(model, rc.condition, 8, beam_size=3)) == b
    assert len(sample(model, rc.condition, 8, generator=torch.Generator().manual_seed(0))) == b


@pytest.mark.parametrize("name", ["hred", "vhred", "kgcvae"])
def test_word_dropout_only_in_training(name, data, batch):
    model = build(name, data)
    model.word_dropout = 1.0
    dropped = model.decoder_inputs(batch.inputs)
    protected = torch.isin(batch.inputs, torch.tensor([PAD_ID, BOS_ID, EOS_ID]))
    assert torch.equal(dropped[protected], batch.inputs[protected]) and (dropped[~protected] == UNK_ID).all()
    assert torch.equal(model.eval().decoder_inputs(batch.inputs), batch.inputs)


@pytest.mark.parametrize("name", ["hred", "vhred", "cvae", "kgcvae", "kgcvae-copy"])
def test_overfits_a_few_dialogues(name, data, batch):
    model = build(name, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    first = None
    # 800 steps memorise with a margin: at 500, CVAE's greedy decoding got 4 or 5 of 7 right, by the CPU's kernels
    for _ in range(800):
        out = model(batch)
        loss = out.reconstruction.mean() + out.aux_loss.mean() + (0 if out.kl is None else out.kl.sum(-1).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else out.reconstruction.mean().item()
    model.eval()
    with torch.no_grad():
        if model.latent_dim:  # at the posterior mean: memorisation, not the luck of one draw of z
            inference = model.infer(batch)
            reconstruction = -model.log_px_given_z(batch, inference.q.mu[None], condition=inference.condition)[0]
            if model.num_acts:  # kgCVAE's likelihood also scores the act; keep the words' share
                reconstruction = reconstruction - model(batch).act_nll
        else:
            reconstruction = model(batch).reconstruction
        rc = model.response_condition(batch, z_source="posterior", generator=torch.Generator().manual_seed(0),
                                      acts=batch.acts if model.num_acts else None)  # kgCVAE: the gold acts
    assert reconstruction.mean().item() < 0.05 * first
    # the memorised responses come back by greedy decoding (context + posterior z)
    decoded = greedy(model, rc.condition, 30)
    expected = [row[1: n - 1].tolist() for row, n in zip(batch.response, batch.response_lengths, strict=True)]
    assert sum(d == e for d, e in zip(decoded, expected, strict=True)) >= len(expected) - 2


@pytest.mark.parametrize("name", ALL)
def test_export_load_gives_identical_logits(name, data, batch, tmp_path):
    tokenizer, dataset = data
    model = build(name, data).eval()
    save_export(tmp_path / "export", model, tokenizer, categories={"acts": dataset.acts.names})
    loaded = load_export(tmp_path / "export").model
    assert type(loaded) is type(model) and loaded.init_args == model.init_args
    with torch.no_grad():
        a = model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        b = loaded.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(vector(a.condition), vector(b.condition))
        inputs = batch.inputs.repeat(2, 1)
        assert torch.equal(model.decoder(inputs, a.condition), loaded.decoder(inputs, b.condition))
        torch.manual_seed(3)
        out_a = model(batch)
        torch.manual_seed(3)
        out_b = loaded(batch)
    assert torch.equal(out_a.reconstruction, out_b.reconstruction) and torch.equal(out_a.aux_loss, out_b.aux_loss)


def test_invalid_constructions():
    with pytest.raises(ValueError, match="num_acts >= 1"):
        CVAE(vocab_size=20, knowledge=True, num_acts=0)
    with pytest.raises(ValueError, match="latent_dim"):
        VHRED(vocab_size=20, latent_dim=0)
    with pytest.raises(ValueError, match="word_dropout"):
        HRED(vocab_size=20, word_dropout=1.5)
    with pytest.raises(ValueError, match="every_input_dim"):
        RNNDecoder(vocab_size=20, latent_dim=4, every_input_dim=5)


@pytest.mark.parametrize("prior_name", ["mixture", "conditional_mixture"])
@pytest.mark.parametrize("name", ["vhred", "cvae", "kgcvae"])
def test_dialogue_models_take_any_posterior_and_prior_component(name, prior_name, data, batch):
    """The components are the sentence VAE's: an IAF posterior and a mixture prior (one learned mixture, or a
    prior network's mixture given c) in VHRED/CVAE/kgCVAE give a Monte-Carlo KL, the shared inference code (IW
    bound) runs on them, generation draws z from the mixture, and the spec in init_args rebuilds the same model."""
    from functools import partial

    from textvae.inference import importance_samples
    from textvae.posteriors import IAFPosterior
    from textvae.priors import ConditionalMixturePrior, MixturePrior

    tokenizer, dataset = data
    torch.manual_seed(0)
    prior = (partial(MixturePrior, num_components=3) if prior_name == "mixture"
             else partial(ConditionalMixturePrior, num_components=3, hidden_dim=8))
    kwargs = dict(vocab_size=tokenizer.vocab_size, latent_dim=6, posterior=partial(IAFPosterior, hidden_dim=16),
                  prior=prior, **SMALL)
    if name == "vhred":
        model = VHRED(network_dim=10, **kwargs)
    else:
        model = CVAE(prior_dim=10, mlp_dim=10, knowledge=name == "kgcvae",
                     num_acts=len(dataset.acts) if name == "kgcvae" else 0, act_dim=5, **kwargs)
    out = model(batch)
    b = batch.response.shape[0]
    assert out.kl.shape == (b, 1) and not out.kl_closed_form and torch.isfinite(out.kl).all()
    (out.reconstruction.mean() + out.kl.mean()).backward()
    assert all(p.grad is not None for p in model.prior.parameters() if p.requires_grad)
    assert model.posterior.flows[0].made.output.weight.grad is not None
    model.eval()
    with torch.no_grad():
        terms = importance_samples(model, batch, 4, generator=torch.Generator().manual_seed(0))
        assert all(t.shape == (4, b) and torch.isfinite(t).all() for t in terms)
        condition = model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(1))
        assert condition.z.shape == (2 * b, 6)
        rebuilt = type(model)(**json.loads(json.dumps(model.init_args)))
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.eval()
        again = rebuilt.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(condition.z, again.z)
