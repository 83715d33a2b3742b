"""CPU step overhead: the training step and the IW-NLL loop against the arithmetic they must do.

    textvae-corpus prepare yelp10k --source ../shared/corpora --out data/yelp10k
    python benchmarks/step_flops.py --threads 2 --json benchmarks/step_flops.json

Builds the data and the model of ``recipes/yelp10k_lstm_vae.yaml`` (LSTM, embedding 128, hidden 512, z 32 at
the initial state and every input, batch 32) and measures, in one run on ``--threads`` threads:

* the fp32 matmul peak (2048 x 2048, before and after the timings; the higher of the two is the yardstick);
* training sentences/s: ``--train-steps`` steps of a real Lightning fit (the recipe's training system: its
  training step, logging to a CSV logger, gradient clipping, the optimiser step), timed after ``--warmup``;
* IW-NLL sentences/s with K = ``--samples`` on the first ``--sentences`` test sentences, by
  :func:`textvae.evaluation.evaluate` (what ``textvae-eval`` runs; its clock covers the bound alone);
* for each, the GFLOP/s achieved by the count of :func:`rnn_vae_flops` and its ratio to the peak;
* the model's own matmuls alone (:func:`shape_rates`): the output layer over a training batch's mean number of
  target positions, padded and unpadded, and the LSTM's recurrent matmul at the batch size;
* the same arithmetic in plain PyTorch, with no textvae code (:class:`PlainLSTMVAE`, :func:`plain_step`): a
  yardstick of what torch's kernels give at these shapes, whatever the framework around them.

Prints a Markdown table for BENCHMARKS.md and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from textvae.data.tokenizers import PAD_ID
from textvae.evaluation import evaluate
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latent_families import gflops, matmul_peak_gflops, system_arguments  # noqa: E402

RECIPE = "recipes/yelp10k_lstm_vae.yaml"


def rnn_vae_flops(*, encoder_tokens: int, decoder_tokens: int, sentences: int, vocab_size: int, embed_dim: int,
                  hidden_dim: int, latent_dim: int, cell: str = "lstm", z_to_every_input: bool = True,
                  samples: int = 1, training: bool = False) -> int:
    """The arithmetic of an RNN sentence VAE (one layer, unidirectional, Gaussian posterior), counting each
    linear map and RNN gate matmul as 2 * in * out FLOPs per row it is applied to:

    * per encoder token (BOS .. EOS): the gates, ``gates * H * (E + H)``;
    * per sentence: the posterior heads (mu and logvar), ``2 * H * Z``;
    * per decoder position (BOS .. last word, one per target) and sample: the gates, ``gates * H * (E [+ Z] + H)``,
      and the output layer, ``H * V``;
    * per sentence and sample: z to the initial state, ``Z * parts * H`` (an LSTM sets h_0 and c_0).

    ``gates`` is 4 for an LSTM, 3 for a GRU. ``samples``: K decoder passes per sentence (the IW bound; the
    encoder runs once). ``training``: x3 (the backward pass costs twice the forward). Elementwise work
    (activations, the softmax, the optimiser) is not counted."""
    gates, parts = {"lstm": (4, 2), "gru": (3, 1)}[cell]
    decoder_in = embed_dim + (latent_dim if z_to_every_input else 0)
    encoder = encoder_tokens * gates * hidden_dim * (embed_dim + hidden_dim) + sentences * 2 * hidden_dim * latent_dim
    decoder = (decoder_tokens * (gates * hidden_dim * (decoder_in + hidden_dim) + hidden_dim * vocab_size)
               + sentences * latent_dim * parts * hidden_dim)
    return 2 * (encoder + samples * decoder) * (3 if training else 1)


def shape_rates(size: dict, batch_size: int, rows: int, repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of the model's own matmuls, each alone, at the current thread count: the output layer over
    ``rows`` positions (a training batch's targets), padded as :class:`textvae.models.modules.VocabularyProjection`
    runs it and at the odd vocabulary it replaced; and an LSTM's recurrent matmul at the batch size. What the
    step can reach is bounded by these rates, not by the 2048^2 peak."""
    from textvae.models.modules import VocabularyProjection

    hidden, vocab = size["hidden_dim"], size["vocab_size"]
    h = torch.randn(rows, hidden)
    output = VocabularyProjection(hidden, vocab)
    gates = 4 if size["cell"] == "lstm" else 3
    state, recurrent = torch.randn(batch_size, hidden), torch.randn(gates * hidden, hidden)
    with torch.no_grad():
        return {
            f"output layer, {rows} x {hidden} -> {vocab} (padded)": gflops(
                lambda: output(h), 2 * rows * hidden * vocab, repeats),
            f"output layer, {rows} x {hidden} -> {vocab} (unpadded)": gflops(
                lambda: torch.nn.functional.linear(h, output.weight, output.bias), 2 * rows * hidden * vocab, repeats),
            f"recurrent matmul, {batch_size} x {hidden} -> {gates * hidden}": gflops(
                lambda: state @ recurrent.T, 2 * batch_size * hidden * gates * hidden, repeats),
        }


class StepClock(pl.Callback):
    """Seconds, sentences and FLOPs of the training batches after the first ``warmup``."""

    def __init__(self, warmup: int, flops_of):
        self.warmup, self.flops_of = warmup, flops_of
        self.start = self.seconds = None
        self.sentences = self.flops = self.batches = self.targets = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        step = trainer.global_step  # not batch_idx, which starts again at every epoch
        if step == self.warmup:
            self.start = time.perf_counter()
        if step >= self.warmup:
            self.sentences += batch.index.shape[0]
            self.flops += self.flops_of(batch)
            self.batches += 1
            self.targets += int(batch.lengths.sum()) - batch.lengths.shape[0]

    def on_train_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--samples", type=int, default=100, help="K of the IW-NLL")
    parser.add_argument("--sentences", type=int, default=200, help="test sentences of the IW-NLL")
    parser.add_argument("--json", default=None)
    parser.add_argument("--profile", action="store_true",
                        help="also time the step outside Lightning (objective, backward, clipping, fused Adam) and "
                             "print torch.profiler's table of where its time goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load(Path(RECIPE).read_text())
    cache = tempfile.TemporaryDirectory()  # the encoded splits, built afresh: nothing read from another run's cache
    data = TextDataModule(**recipe["data"], cache_dir=cache.name)
    init_args = recipe["model"]["model"]["init_args"]
    size = dict(vocab_size=data.vocab_size, embed_dim=init_args["embed_dim"], hidden_dim=init_args["hidden_dim"],
                latent_dim=init_args["latent_dim"], cell=init_args["architecture"],
                z_to_every_input=init_args["z_to_every_input"])
    peaks = [matmul_peak_gflops()]

    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=data.vocab_size, **init_args)
    system = TextVAESystem(model, **system_arguments(recipe))

    def train_flops(batch) -> int:
        sentences = batch.lengths.shape[0]
        targets = int(batch.lengths.sum()) - sentences
        return rnn_vae_flops(encoder_tokens=targets + sentences, decoder_tokens=targets, sentences=sentences,
                             training=True, **size)

    clock = StepClock(args.warmup, train_flops)
    with tempfile.TemporaryDirectory() as logs:
        trainer = pl.Trainer(max_steps=args.warmup + args.train_steps, limit_val_batches=0, accelerator="cpu",
                             logger=pl.loggers.CSVLogger(logs), enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
        trainer.fit(system, data)
    train_rate = clock.flops / clock.seconds / 1e9
    bare = bare_step(system, data, args.warmup, args.train_steps, train_flops) if args.profile else None

    test = data.dataset("test")
    subset = torch.utils.data.Subset(test, range(min(args.sentences, len(test))))
    subset.lengths = [test.lengths[i] for i in subset.indices]
    result = evaluate(model, subset, samples=args.samples, seed=0, bleu=False, batch_size=32, mi_group=2)
    iw_flops = rnn_vae_flops(encoder_tokens=result.tokens + result.sentences, decoder_tokens=result.tokens,
                             sentences=result.sentences, samples=args.samples, **size)
    iw_rate = iw_flops / result.seconds / 1e9
    plain = plain_step(data, size, args.warmup, args.train_steps, train_flops)
    shapes = shape_rates(size, data.batch_size, rows=round(clock.targets / max(clock.batches, 1)))
    peaks.append(matmul_peak_gflops())
    peak = max(peaks)

    rows = {
        "training step": {"sentences_per_s": clock.sentences / clock.seconds, "gflops": train_rate,
                          "ratio": train_rate / peak, "sentences": clock.sentences, "seconds": clock.seconds},
        f"IW-NLL, K = {args.samples}": {"sentences_per_s": result.sentences_per_second, "gflops": iw_rate,
                                        "ratio": iw_rate / peak, "sentences": result.sentences,
                                        "seconds": result.seconds, "iw_nll": result.iw_nll},
        "the same training arithmetic in plain PyTorch": {
            "sentences_per_s": plain["sentences_per_s"], "gflops": plain["gflops"], "ratio": plain["gflops"] / peak,
            "sentences": plain["sentences"], "seconds": plain["seconds"]},
    }
    print(f"\nfp32 matmul peak: {peaks[0]:.0f} GFLOP/s before, {peaks[1]:.0f} after ({args.threads} threads); "
          f"vocabulary {data.vocab_size}")
    print("\n| loop | sentences/s | GFLOP/s (counted) | of the matmul peak |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['sentences_per_s']:.1f} | {r['gflops']:.0f} | {100 * r['ratio']:.0f}% |")
    print("\n| the model's matmuls alone | GFLOP/s | of the matmul peak |\n|---|---|---|")
    for name, rate in shapes.items():
        print(f"| {name} | {rate:.0f} | {100 * rate / peak:.0f}% |")
    if bare is not None:
        print(f"\nthe same step outside Lightning: {bare['sentences_per_s']:.1f} sentences/s, {bare['gflops']:.0f} "
              f"GFLOP/s, {100 * bare['gflops'] / peak:.0f}% of the peak\n{bare['table']}")
        rows["training step outside Lightning"] = {key: bare[key] for key in ("sentences_per_s", "gflops")}
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "matmul_peak_gflops": peaks, "size": size,
                                               "results": rows, "matmuls": shapes, "args": vars(args)},
                                              indent=2) + "\n")


class PlainLSTMVAE(torch.nn.Module):
    """The recipe's LSTM-VAE arithmetic written directly in PyTorch, sharing no code with textvae: embeddings, an
    LSTM encoder read at its last step, mean and log-variance heads, z to the decoder's initial state and to
    every input, an LSTM decoder and the output layer; the negative ELBO (closed-form Gaussian KL, beta 1)
    summed over targets and averaged over sentences. No dropout."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        nn = torch.nn
        self.encoder_embedding, self.decoder_embedding = nn.Embedding(vocab_size, embed_dim), nn.Embedding(
            vocab_size, embed_dim)
        self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.posterior = nn.Linear(hidden_dim, 2 * latent_dim)
        self.initial = nn.Linear(latent_dim, 2 * hidden_dim)
        self.decoder = nn.LSTM(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) BOS ... EOS PAD ... and (B,) lengths -> the batch's mean negative ELBO."""
        states, _ = self.encoder(self.encoder_embedding(tokens))  # (B, T, H)
        last = states[torch.arange(tokens.shape[0]), lengths - 1]  # (B, H) at each sentence's EOS
        mu, logvar = self.posterior(last).chunk(2, dim=-1)  # (B, Z) each
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        h0, c0 = self.initial(z).unsqueeze(0).chunk(2, dim=-1)  # (1, B, H) each
        every = z.unsqueeze(1).expand(-1, inputs.shape[1], -1)  # (B, T - 1, Z)
        outputs, _ = self.decoder(torch.cat([self.decoder_embedding(inputs), every], dim=-1), (h0.contiguous(),
                                                                                            c0.contiguous()))
        logits = self.output(outputs)  # (B, T - 1, V)
        reconstruction = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                           ignore_index=PAD_ID, reduction="sum")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum()
        return (reconstruction + kl) / tokens.shape[0]


def bucketed_batches(data: TextDataModule, count: int) -> list:
    """The first ``count`` length-bucketed training batches (seed 1), collated once, outside any timing."""
    from textvae.data.batching import BucketBatchSampler, collate_sentences

    dataset = data.dataset("train")
    sampler = BucketBatchSampler(dataset.lengths, data.batch_size, seed=1)
    return [collate_sentences(dataset.__getitems__(b)) for b, _ in zip(sampler, range(count), strict=False)]


def timed_steps(step, batches: list, warmup: int, flops_of) -> dict:
    """``step`` on every batch; sentences, seconds, sentences/s and GFLOP/s of those after the first ``warmup``."""
    for batch in batches[:warmup]:
        step(batch)
    start, sentences, flops = time.perf_counter(), 0, 0
    for batch in batches[warmup:]:
        step(batch)
        sentences, flops = sentences + batch.index.shape[0], flops + flops_of(batch)
    seconds = time.perf_counter() - start
    return {"sentences_per_s": sentences / seconds, "gflops": flops / seconds / 1e9, "sentences": sentences,
            "seconds": seconds}


def plain_step(data: TextDataModule, size: dict, warmup: int, steps: int, flops_of, *, lr: float = 1.0) -> dict:
    """Sentences/s and GFLOP/s of :class:`PlainLSTMVAE`'s training step (forward, backward, clipping at 5, SGD as
    He et al. 2019) on the same bucketed batches as :func:`bare_step`'s."""
    batches = bucketed_batches(data, warmup + steps)
    torch.manual_seed(0)
    model = PlainLSTMVAE(size["vocab_size"], size["embed_dim"], size["hidden_dim"], size["latent_dim"]).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []

    def step(batch):
        loss = model(batch.tokens, batch.lengths)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss))

    return timed_steps(step, batches, warmup, flops_of) | {"losses": losses}


def bare_step(system: TextVAESystem, data: TextDataModule, warmup: int, steps: int, flops_of) -> dict:
    """Sentences/s of the training arithmetic alone (the system's objective, backward, clipping by global norm,
    fused Adam) on the same bucketed batches, and torch.profiler's table of 20 of those steps."""
    from torch.profiler import ProfilerActivity, profile

    batches = bucketed_batches(data, warmup + steps)
    model = system.model
    optimizer = torch.optim.Adam(model.parameters(), lr=system.lr, fused=True)

    def step(batch):
        loss = system.objective(model, batch, beta=1.0, svi=None).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), system.grad_clip_norm or float("inf"))
        optimizer.step()

    model.train()
    rates = timed_steps(step, batches, warmup, flops_of)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[warmup:warmup + 20]:
            step(batch)
    return rates | {"table": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)}

if __name__ == "__main__":
    main()
