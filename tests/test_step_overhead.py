"""The CPU fast paths compute what the straightforward computation does: the encoder over the padded batch equals
the packed RNN's final state; the evaluation's row-blocked NLL equals one cross-entropy over all logits; the
training system's single pass over the gradients guards and clips as the elementwise check and
torch.nn.utils.clip_grad_norm_ do; the output layer's padded matmul gives nn.Linear's logits and gradients."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.tokenizers import PAD_ID
from textvae.guards import NonFiniteError
from textvae.lightning import TextVAESystem
from textvae.models import SentenceVAE, modules
from textvae.models.modules import RNNDecoder, RNNEncoder, VocabularyProjection, chunked_log_likelihood


def padded(lengths, vocab=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    tokens = torch.randint(4, vocab, (len(lengths), int(lengths.max())), generator=generator)
    tokens[torch.arange(tokens.shape[1]) >= lengths.unsqueeze(1)] = PAD_ID
    return tokens, lengths


@pytest.mark.parametrize("rows", [3, 128, 300])
@pytest.mark.parametrize("vocab", [37, 64, 131])
def test_vocabulary_projection_is_a_linear_layer(rows, vocab):
    torch.manual_seed(0)
    projection = VocabularyProjection(16, vocab)
    x = torch.randn(rows, 16, requires_grad=True)
    logits = projection(x)
    assert logits.shape == (rows, vocab)
    targets = torch.randint(vocab, (rows,))
    F.cross_entropy(logits, targets).backward()
    grads = [t.grad.clone() for t in (x, projection.weight, projection.bias)]
    # the same parameters through F.linear, by hand
    x2 = x.detach().clone().requires_grad_()
    weight, bias = (projection.weight.detach().clone().requires_grad_(),
                    projection.bias.detach().clone().requires_grad_())
    expected = x2 @ weight.T + bias
    torch.testing.assert_close(logits, expected)
    F.cross_entropy(expected, targets).backward()
    for got, want in zip(grads, (x2.grad, weight.grad, bias.grad), strict=True):
        torch.testing.assert_close(got, want)
    # the padded rows (rows >= modules.PADDED_PROJECTION_ROWS) are a separate copy: no parameter grows
    assert projection.weight.shape == (vocab, 16) and projection.bias.shape == (vocab,)
    # an nn.Linear's state dict loads into it (exports from before it)
    plain = torch.nn.Linear(16, vocab)
    projection.load_state_dict(plain.state_dict())
    torch.testing.assert_close(projection(x.detach()), plain(x.detach()))


def test_tied_output_layer_trains_the_embedding_through_the_padding():
    torch.manual_seed(0)
    decoder = RNNDecoder(vocab_size=131, embed_dim=16, hidden_dim=16, latent_dim=4, tie_embeddings=True)
    assert decoder.output.weight is decoder.embedding.weight
    h = torch.randn(200, 16)  # enough rows for the padded matmul
    targets = torch.randint(4, 131, (200,))
    F.cross_entropy(decoder.project(h), targets).backward()
    expected = torch.autograd.grad(F.cross_entropy(h @ decoder.embedding.weight.T + decoder.output.bias, targets),
                                   decoder.embedding.weight)[0]
    torch.testing.assert_close(decoder.embedding.weight.grad, expected)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_encoder_over_the_padded_batch_is_the_packed_final_state(cell):
    torch.manual_seed(0)
    encoder = RNNEncoder(vocab_size=50, cell=cell, embed_dim=8, hidden_dim=16)
    tokens, lengths = padded([5, 2, 7, 7, 3])
    vector = encoder(tokens, lengths)  # (B, H)
    packed = pack_padded_sequence(encoder.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
    _, hidden = encoder.rnn(packed)
    final = (hidden[0] if cell == "lstm" else hidden)[-1]  # (B, H): torch's packed RNN, back in input order
    torch.testing.assert_close(vector, final)
    # and each sentence alone, without any padding
    for b, n in enumerate(lengths.tolist()):
        alone = encoder.rnn(encoder.embedding(tokens[b:b + 1, :n]))[0][0, -1]
        torch.testing.assert_close(vector[b], alone)


def test_encoder_gradients_match_the_packed_rnn():
    torch.manual_seed(0)
    encoder = RNNEncoder(vocab_size=50, embed_dim=8, hidden_dim=16)
    tokens, lengths = padded([4, 6, 1, 6])
    weights = torch.randn(4, 16)
    (encoder(tokens, lengths) * weights).sum().backward()
    fast = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    packed = pack_padded_sequence(encoder.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
    (encoder.rnn(packed)[1][0][-1] * weights).sum().backward()
    for got, want in zip(fast, [p.grad for p in encoder.parameters()], strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("rows", [1, 7, 1024])
def test_evaluation_nll_equals_one_cross_entropy_per_sample(rows, monkeypatch):
    monkeypatch.setattr(modules, "NLL_ROWS", rows)
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=40, embed_dim=8, hidden_dim=16, latent_dim=4, z_to_every_input=True).eval()
    batch = collate_sentences([SentenceExample(list(range(4, 4 + n)), None, i) for i, n in enumerate([3, 6, 1])])
    z = torch.randn(5, 3, 4)  # (K, B, Z)
    with torch.no_grad():
        got = chunked_log_likelihood(model.decoder, batch.inputs, batch.targets, z, chunk=2)  # (K, B)
    for k in range(5):  # one sample and one sentence at a time, the full logits, nothing shared
        for b, n in enumerate(batch.lengths.tolist()):
            inputs, targets = batch.inputs[b:b + 1, :n - 1], batch.targets[b:b + 1, :n - 1]
            with torch.no_grad():
                logits = model.decoder(inputs, z[k, b:b + 1])[0]  # (T, V)
            want = -F.cross_entropy(logits, targets[0], reduction="sum")
            torch.testing.assert_close(got[k, b], want)


def fitted_system(clip, scale, steps=1):
    """A system after ``steps`` training steps with its loss multiplied by ``scale``; and the gradients it stepped
    with, recorded before the optimiser step and after the clipping."""
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=30, embed_dim=8, hidden_dim=8, latent_dim=2)

    class Scaled(TextVAESystem):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx) * scale

    system = Scaled(model, grad_clip_norm=clip, optimizer="sgd", lr=1e-3)
    seen = []

    class Record(pl.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})

    examples = [SentenceExample([4 + i % 20, 5, 6 + i % 7], None, i) for i in range(8)]
    loader = torch.utils.data.DataLoader(examples, batch_size=8, collate_fn=collate_sentences)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", callbacks=[Record()])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit(system, loader)
    return system, seen[0], before


@pytest.mark.parametrize("clip", [None, 0.05, 1e6])
def test_clipping_with_the_guards_norm_is_clip_grad_norm(clip):
    system, grads, before = fitted_system(clip, scale=1.0)
    expected = {n: g.clone() for n, g in grads.items()}  # unclipped (the callback runs before the clipping)
    if clip is not None:
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in expected.values()]
        for p, g in zip(params, expected.values(), strict=True):
            p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(params, clip)
        expected = {n: p.grad for n, p in zip(expected, params, strict=True)}
    for name, p in system.model.named_parameters():  # SGD without momentum: p = p0 - lr * g
        if name in expected:
            torch.testing.assert_close(p.detach(), before[f"{name}"] - 1e-3 * expected[name])


def test_a_non_finite_gradient_still_stops_training():
    with pytest.raises(NonFiniteError, match="gradient became non-finite"):
        fitted_system(5.0, scale=float("inf"))


def test_training_metrics_reach_the_logger_on_its_steps_and_as_weighted_epoch_means(tmp_path):
    """The training step hands its metrics to Lightning only on the steps the loggers write; what reaches the CSV
    is what self.log(on_step=True, on_epoch=True) writes: train/K_step every log_every_n_steps, train/K_epoch
    the batch-size-weighted mean over the epoch's steps (recorded here from each step's returned loss)."""
    import csv

    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=30, embed_dim=8, hidden_dim=8, latent_dim=2)
    system = TextVAESystem(model, optimizer="sgd", lr=1e-3)
    steps = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            steps.append((trainer.current_epoch, float(loss), batch.index.shape[0]))

    sizes = [3, 8, 1, 5, 2]  # unequal batches: a weighted mean differs from the plain one
    examples = [SentenceExample([4 + i % 20, 5, 6 + i % 7], None, i) for i in range(sum(sizes))]
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    batches = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    loader = torch.utils.data.DataLoader(examples, batch_sampler=batches, collate_fn=collate_sentences)
    logger = pl.loggers.CSVLogger(tmp_path, name="logs")
    trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=2, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         callbacks=[Record()])
    trainer.fit(system, loader)
    with open(tmp_path / "logs" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    logged_steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert logged_steps == [1, 3, 5, 7, 9]  # global steps 2, 4, ... (the CSV counts from 0)
    by_step = {int(r["step"]): float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")}
    for step in logged_steps:
        assert by_step[step] == pytest.approx(steps[step][1], rel=1e-6)
    epochs = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    for epoch, logged in enumerate(epochs):
        mine = [(loss, n) for e, loss, n in steps if e == epoch]
        weighted = sum(loss * n for loss, n in mine) / sum(n for _, n in mine)
        assert logged == pytest.approx(weighted, rel=1e-6)
        assert logged != pytest.approx(sum(loss for loss, _ in mine) / len(mine), rel=1e-6)
    assert len(epochs) == 2
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(epochs[-1], rel=1e-6)
    assert {"train/kl_epoch", "train/beta"} <= set(trainer.logged_metrics) | {r for row in rows for r in row if row[r]}
