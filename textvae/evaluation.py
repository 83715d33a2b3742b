"""Evaluating a sentence model on a data set, as the text-VAE papers report it.

* **IW-NLL**: -log p(x) by the importance-weighted bound with K samples z_k ~ q(z|x) (Burda et al. 2016;
  K = 500 in He et al. 2019 and Li et al. 2019), nats per sentence; for a language model, the exact NLL.
  Sentences *and* samples are decoded together (K x B sequences per pass, chunked to a memory budget by
  ``SentenceVAE.log_px_given_z``), which is where the speed comes from.
* **PPL** = exp(total NLL / total target tokens), the targets being each sentence's words *and* its EOS
  (Bowman et al. 2016; He et al. 2019). ``ppl_words`` divides by the words alone (EOS predicted, not counted).
* **ELBO** = -(reconstruction + KL): reconstruction -E_q[log p(x|z)] averaged over the same K samples,
  KL(q(z|x) || N(0, I)) in closed form, both nats per sentence.
* **MI** (He et al. 2019, ``calc_mi``) per batch, averaged with batch-size weights; **AU** (Burda et al.
  2016): dimensions whose posterior mean varies across the data by more than 0.01.
* **recon BLEU**: greedy decoding of the posterior mean against the input (sacrebleu corpus BLEU,
  ``tokenize="none"``: both sides are the tokenizer's tokens).

Reproducibility: sentence i's K samples come from a generator seeded by ``(seed, i)``, so its estimate
depends neither on the batch size nor on which sentences share its batch; the same seed gives the same
numbers. The prior is N(0, I), as in every sentence model here.

Notation: B batch, T tokens, Z latent, K importance samples.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from textvae.data.batching import (
    BucketBatchSampler,
    SentenceBatch,
    SentenceExample,
    batch_to,
    collate_sentences,
)
from textvae.data.tokenizers import Tokenizer
from textvae.decoding import greedy
from textvae.latent import decode_latents
from textvae.metrics import (
    active_units,
    corpus_bleu,
    dataset_mutual_information,
    distinct_n,
    perplexity,
    self_bleu,
)
from textvae.models import ImportanceSamples, TextModel
from textvae.objectives import (
    gaussian_kl,
    importance_weighted_nll,
    log_normal,
    log_standard_normal,
)

AU_THRESHOLD = 0.01
RECONSTRUCTION_SLACK = 10  # reconstructions may run this many tokens past the longest input of their batch


@dataclass
class PriorSampleMetrics:
    """Diversity of sentences decoded from prior draws z ~ N(0, I) (a language model: its own samples)."""

    n: int
    method: str  # greedy, beam or sample
    distinct_1: float  # distinct unigrams / unigrams (Li et al. 2016)
    distinct_2: float  # distinct bigrams / bigrams
    self_bleu: float  # 0-100, higher = less diverse (Zhu et al. 2018)
    samples: list[str]


class JSONResult:
    """``to_dict``/``to_json`` for the evaluation result dataclasses (sentences and dialogues)."""

    def to_dict(self) -> dict[str, Any]:
        def finite(value):
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {key: finite(value) for key, value in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        """Strict JSON (a non-finite number, e.g. an overflowed perplexity, becomes null)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


@dataclass
class EvalResult(JSONResult):
    """Per-sentence averages are in nats. Fields that need a latent are None for a language model."""

    model: str  # class name
    latent_dim: int
    sentences: int
    tokens: int  # target tokens: words (the tokenizer's tokens) + one EOS per sentence
    samples: int | None  # K importance samples; None: the NLL is exact (a language model)
    iw_nll: float  # -log p(x) per sentence (IW bound with K samples, or exact)
    ppl: float  # exp(total NLL / tokens), EOS counted: the papers' definition
    ppl_words: float  # exp(total NLL / words), EOS predicted but not counted
    elbo: float | None  # per sentence, = -(reconstruction + kl)
    reconstruction: float | None  # -E_q[log p(x|z)] per sentence, over the K samples
    kl: float | None  # KL(q(z|x) || p(z)) per sentence, closed form
    mi: float | None  # I(x; z) under q (He et al. 2019), batch-size weighted mean over the batches
    active_units: int | None  # of latent_dim, at threshold 0.01
    recon_bleu: float | None  # greedy reconstruction from the posterior mean vs the input, 0-100
    batch_size: int
    seconds: float  # wall time of the NLL computation (encoding + K x B decoder passes)
    sentences_per_second: float
    prior: PriorSampleMetrics | None = None

    def table(self) -> str:
        """Aligned, human-readable lines."""
        na = "n/a (no latent)"
        nll_name = f"IW-NLL (K={self.samples})" if self.samples is not None else "NLL (exact)"
        rows = [
            ("model", f"{self.model}" + (f", z {self.latent_dim}" if self.latent_dim else "")),
            ("sentences", f"{self.sentences:,}"),
            ("tokens", f"{self.tokens:,} (words + EOS)"),
            (nll_name, f"{self.iw_nll:.2f} nats/sentence"),
            ("PPL", f"{self.ppl:.2f} (exp(NLL / tokens), EOS counted)"),
            ("PPL (words only)", f"{self.ppl_words:.2f} (exp(NLL / words))"),
            ("ELBO", na if self.elbo is None else f"{self.elbo:.2f} nats/sentence"),
            ("  reconstruction", na if self.reconstruction is None else f"{self.reconstruction:.2f}"),
            ("  KL", na if self.kl is None else f"{self.kl:.2f}"),
            ("MI", na if self.mi is None else f"{self.mi:.3f} nats (per batch of {self.batch_size}, as He et al.)"),
            ("active units", na if self.active_units is None else f"{self.active_units} / {self.latent_dim}"),
            ("recon BLEU", na if self.recon_bleu is None else f"{self.recon_bleu:.2f} (greedy from the mean)"),
            ("speed", f"{self.sentences_per_second:,.1f} sentences/s ({self.seconds:.2f} s, batch {self.batch_size})"),
        ]
        if self.prior is not None:
            p = self.prior
            rows += [
                (f"prior samples ({p.method})", f"{p.n:,}"),
                ("  distinct-1 / -2", f"{p.distinct_1:.3f} / {p.distinct_2:.3f}"),
                ("  self-BLEU", f"{p.self_bleu:.2f}"),
            ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# ---------------------------------------------------------------------------------------------------


def _sentence_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2**63)


def posterior_samples(mu: Tensor, logvar: Tensor, index: Tensor, k: int, seed: int) -> Tensor:
    """K samples from q(z|x) per sentence, sentence ``index[b]`` drawing its noise from its own CPU generator
    seeded by ``(seed, index[b])``: mu, logvar (B, Z), index (B,) -> z (K, B, Z). The first K' < K of them
    are the samples a run with K' would draw, and a GPU run draws the same noise as a CPU run (one copy
    to the device per batch, not B small launches)."""
    generator = torch.Generator()
    eps = []
    for i in index.tolist():
        generator.manual_seed(_sentence_seed(seed, i))
        eps.append(torch.randn(k, mu.shape[-1], generator=generator))  # (K, Z)
    eps = torch.stack(eps, dim=1).to(device=mu.device, dtype=mu.dtype)  # (K, B, Z)
    return mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * eps


def importance_samples(model: TextModel, batch: SentenceBatch, k: int, *, seed: int,
                       chunk: int | None = None) -> tuple[ImportanceSamples, Tensor, Tensor]:
    """The three (K, B) terms of the IW bound with per-sentence seeded samples (see the module doc), and
    the posterior (mu, logvar), each (B, Z). Needs ``encode`` and ``log_px_given_z`` (a SentenceVAE)."""
    mu, logvar = model.encode(batch.tokens, batch.lengths)  # (B, Z) x2
    z = posterior_samples(mu, logvar, batch.index, k, seed)  # (K, B, Z)
    terms = ImportanceSamples(log_px_given_z=model.log_px_given_z(batch, z, chunk=chunk),
                              log_pz=log_standard_normal(z), log_qz=log_normal(z, mu, logvar))  # (K, B) x3
    return terms, mu, logvar


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (before reading a clock around GPU work); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """What a timing ran on, for a benchmark's record: the GPU's name, or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@contextmanager
def _quiet_sacrebleu() -> Iterator[None]:
    """sacrebleu warns that lines ending in " ." look tokenised: ours are, on purpose (tokenize="none")."""
    logger = logging.getLogger("sacrebleu")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _text(ids: Sequence[int], tokenizer: Tokenizer | None) -> str:
    return tokenizer.decode(ids) if tokenizer is not None else " ".join(map(str, ids))


@torch.inference_mode()
def evaluate(model: TextModel, dataset: torch.utils.data.Dataset, *, samples: int = 500, batch_size: int = 32,
             seed: int = 0, bleu: bool = True, tokenizer: Tokenizer | None = None,
             device: str | torch.device | None = None, chunk: int | None = None) -> EvalResult:
    """Evaluate ``model`` on a :class:`~textvae.data.datasets.SentenceDataset` (see the module doc).

    Batches are length-bucketed, in a fixed order (no shuffle); the model is in eval mode for the call.
    ``samples``: K per sentence. ``seed``: the importance samples' and MI's randomness, drawn per sentence
    rather than from one shared generator, so results do not change with ``batch_size``. ``tokenizer``:
    decode reconstructions and inputs to text for BLEU (without it, BLEU compares token ids, which is the
    same for a word tokenizer). ``device``: where to run (default: where the model is; the model is moved).
    ``chunk``: importance samples per decoder pass (None: as many as fit the model's logits budget).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ValueError("the evaluation data set is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    has_latent = model.latent_dim > 0
    was_training = model.training
    model.eval()

    total_nll = total_rec = total_kl = 0.0
    sentences = tokens = 0
    seconds = 0.0
    posteriors: list[tuple[Tensor, Tensor]] = []  # (mu, logvar) per batch, each (B, Z), on the CPU
    hypotheses: list[str] = []
    references: list[str] = []
    try:
        for indices in BucketBatchSampler(dataset.lengths, batch_size, shuffle=False):
            examples: list[SentenceExample] = [dataset[i] for i in indices]
            batch = batch_to(collate_sentences(examples), device)
            start = time.perf_counter()
            if has_latent:
                terms, mu, logvar = importance_samples(model, batch, samples, seed=seed, chunk=chunk)
                nll = importance_weighted_nll(*terms)  # (B,)
                total_rec += float(-terms.log_px_given_z.mean(0).sum())
                total_kl += float(gaussian_kl(mu, logvar).sum())
            else:
                nll = model(batch).reconstruction  # (B,) exact -log p(x)
            total_nll += float(nll.sum())
            synchronize(device)
            seconds += time.perf_counter() - start
            sentences += len(examples)
            tokens += batch.num_targets
            if has_latent:
                posteriors.append((mu.float().cpu(), logvar.float().cpu()))
                if bleu:
                    max_len = int(batch.lengths.max()) - 1 + RECONSTRUCTION_SLACK
                    hypotheses += [_text(ids, tokenizer) for ids in greedy(model, mu, max_len)]
                    references += [_text(e.ids, tokenizer) for e in examples]
    finally:
        model.train(was_training)

    words = tokens - sentences
    mi = au = elbo = rec = kl = recon_bleu = None
    if has_latent:
        rec, kl = total_rec / sentences, total_kl / sentences
        elbo = -(rec + kl)
        mi = dataset_mutual_information(posteriors, generator=torch.Generator().manual_seed(seed))
        if sentences >= 2:
            au, _ = active_units(torch.cat([mu for mu, _ in posteriors]), threshold=AU_THRESHOLD)
        if bleu:
            with _quiet_sacrebleu():
                recon_bleu = corpus_bleu(hypotheses, references, tokenize="none")
    return EvalResult(
        model=type(model).__name__, latent_dim=model.latent_dim, sentences=sentences, tokens=tokens,
        samples=samples if has_latent else None, iw_nll=total_nll / sentences, ppl=perplexity(total_nll, tokens),
        ppl_words=perplexity(total_nll, words) if words else math.inf, elbo=elbo, reconstruction=rec, kl=kl, mi=mi,
        active_units=au, recon_bleu=recon_bleu, batch_size=batch_size, seconds=seconds,
        sentences_per_second=sentences / seconds if seconds > 0 else math.inf,
    )


@torch.inference_mode()
def prior_sample_metrics(model: TextModel, tokenizer: Tokenizer, n: int, *,
                         method: Literal["greedy", "beam", "sample"] = "sample", max_len: int = 50,
                         batch_size: int = 256, generator: torch.Generator | None = None,
                         **options: Any) -> PriorSampleMetrics:
    """Decode ``n`` sentences from prior draws z ~ N(0, I) (a language model: from nothing) and measure
    their diversity: distinct-1/2 and self-BLEU. ``method="sample"`` (default) draws from the model's own
    p(x|z), which is what a language model must be compared on; ``"greedy"`` shows what z alone encodes.
    ``options``: decoding options of :func:`textvae.decoding.generate`. ``generator`` on the model's device."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (self-BLEU compares the samples with each other), got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts: list[str] = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = model.sample_prior(m, generator=generator) if model.latent_dim > 0 else None  # (m, Z) or None
        texts += decode_latents(model, tokenizer, z, method, count=m, max_len=max_len, chunk=batch_size,
                                generator=generator, **options)
    return PriorSampleMetrics(n=n, method=method, distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
                              self_bleu=self_bleu(texts), samples=texts)
