"""Evaluating a sentence model on a data set, as the text-VAE papers report it.

* **IW-NLL**: -log p(x) by the importance-weighted bound with K samples z_k ~ q(z|x) (Burda et al. 2016;
  K = 500 in He et al. 2019 and Li et al. 2019), nats per sentence; for a language model, the exact NLL.
  Sentences *and* samples are decoded together (K x B sequences per pass, chunked to a memory budget by
  ``SentenceVAE.log_px_given_z``), which is where the speed comes from.
* **PPL** = exp(total NLL / total target tokens), the targets being each sentence's words *and* its EOS
  (Bowman et al. 2016; He et al. 2019). ``ppl_words`` divides by the words alone (EOS predicted, not counted).
* **ELBO** = -(reconstruction + KL): reconstruction -E_q[log p(x|z)] averaged over the same K samples,
  KL(q(z|x) || p(z)) in closed form for a Gaussian posterior and prior, else the Monte-Carlo estimate over
  the same K samples (the table says which), both nats per sentence.
* **MI** I(x; z) under q with the aggregate posterior of random groups of ``mi_group`` sentences
  (:func:`textvae.inference.mutual_information`: He et al. 2019's estimator, valid for flow posteriors
  too; at most log(group) nats); **AU** (Burda et al. 2016): dimensions whose posterior mean (a flow's
  code) varies across the data by more than 0.01.
* **recon BLEU**: greedy decoding of the posterior mean against the input (sacrebleu corpus BLEU,
  ``tokenize="none"``: both sides are the tokenizer's tokens).
* With ``svi_steps`` N: the ELBO after N semi-amortised refinement steps of each sentence's posterior
  (Kim et al. 2018), the IW-NLL with the refined posteriors as the proposal, and Cremer et al. (2018)'s
  gaps: amortisation gap = ELBO after SVI - ELBO of q; approximation gap = log p(x) - ELBO after SVI,
  log p(x) estimated by the better (lower) of the two IW-NLLs (an amortised proposal can be looser than
  the refined ELBO).
* **Clustering** (a mixture prior, and labels under a key): each sentence's component argmax_c p(c | z) at
  its posterior code (the mean; a flow's code), scored against its label by the accuracy of the best
  one-to-one map of components to labels and by NMI: VaDE's protocol (Jiang et al. 2017).

Reproducibility: sentence i's K samples come from a generator seeded by ``(seed, i)``, so its estimate
depends neither on the batch size nor on which sentences share its batch; the same seed gives the same
numbers. Any posterior and prior component works (:mod:`textvae.inference`).

Notation: B batch, T tokens, Z latent, K importance samples.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
from textvae.decoding import Decoding, greedy
from textvae.distributions import GaussianMixture
from textvae.inference import concatenate, mutual_information, refine, sampled_kl
from textvae.inference import importance_samples as model_importance_samples
from textvae.latent import decode_texts, encode_texts, num_labels, prior_draws
from textvae.metrics import (
    active_units,
    clustering_accuracy,
    corpus_bleu,
    distinct_n,
    normalized_mutual_information,
    perplexity,
    self_bleu,
)
from textvae.models import ImportanceSamples, Inference, TextModel
from textvae.objectives import importance_weighted_nll
from textvae.priors import Prior

AU_THRESHOLD = 0.01
PRIOR_SAMPLING = Decoding("sample", allow_unk=True)
# noise draws per refinement step: with one, the gradient and the best-so-far choice of a Monte-Carlo ELBO
# (a flow posterior, a mixture prior) are so noisy that an IAF's refined ELBO ended 0.37 nats below its
# start on yelp10k (with 8: 0.46 above)
SVI_SAMPLES = 8  # prior samples' words drawn from p(x|z), <unk> included
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


@dataclass
class ClusteringMetrics:
    """The components of a mixture prior as clusters of the sentences, against their labels (VaDE's protocol)."""

    label_key: str  # where the labels were read: label or attributes.NAME
    sentences: int  # with a label under label_key
    unlabelled: int  # without one: left out
    components: int  # of the mixture
    used: int  # components that are the most likely of at least one sentence
    classes: int  # distinct labels
    accuracy: float  # of the best one-to-one map of components to labels (Hungarian algorithm)
    nmi: float  # normalised mutual information, arithmetic mean of the entropies


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
    kl: float | None  # KL(q(z|x) || p(z)) per sentence, closed form or Monte Carlo (kl_estimate)
    mi: float | None  # I(x; z) under q, aggregate posterior over groups of mi_group sentences
    active_units: int | None  # of latent_dim, at threshold 0.01
    recon_bleu: float | None  # greedy reconstruction from the posterior mean vs the input, 0-100
    batch_size: int
    seconds: float  # wall time of the NLL computation (encoding + K x B decoder passes)
    sentences_per_second: float
    prior: PriorSampleMetrics | None = None
    kl_estimate: str | None = None  # "closed form" or "Monte Carlo (K samples)"
    mi_group: int | None = None  # sentences per aggregate posterior of the MI estimate
    svi_steps: int = 0  # semi-amortised refinement steps (0: none)
    svi_lr: float | None = None
    elbo_svi: float | None = None  # ELBO after the refinement, per sentence
    iw_nll_svi: float | None = None  # IW-NLL with the refined posteriors as the proposal (K samples)
    kl_svi: float | None = None  # KL of the refined posteriors (estimated as kl_estimate says)
    mi_svi: float | None = None  # MI under the refined posteriors (same estimator and groups as mi)
    recon_bleu_svi: float | None = None  # greedy reconstruction from the refined posterior means
    amortization_gap: float | None = None  # elbo_svi - elbo (Cremer et al. 2018)
    approximation_gap: float | None = None  # log p(x) estimate - elbo_svi, log p(x) ~ -min(iw_nll, iw_nll_svi)
    clustering: ClusteringMetrics | None = None

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
            ("  KL", na if self.kl is None else f"{self.kl:.2f} ({self.kl_estimate})"),
            ("MI", na if self.mi is None else f"{self.mi:.3f} nats (aggregate posterior of {self.mi_group} sentences, "
                                              f"at most {math.log(self.mi_group):.2f})"),
            ("active units", na if self.active_units is None else f"{self.active_units} / {self.latent_dim}"),
            ("recon BLEU", (na if not self.latent_dim else "not measured (no generation)") if self.recon_bleu is None
             else f"{self.recon_bleu:.2f} (greedy from the mean)"),
            ("speed", f"{self.sentences_per_second:,.1f} sentences/s ({self.seconds:.2f} s, batch {self.batch_size})"),
        ]
        if self.svi_steps:
            rows += [
                (f"ELBO after SVI ({self.svi_steps} steps, lr {self.svi_lr:g})", f"{self.elbo_svi:.2f} nats/sentence"),
                ("  IW-NLL, refined proposal", f"{self.iw_nll_svi:.2f} nats/sentence"),
                ("  KL, MI of the refined posteriors", f"{self.kl_svi:.2f}, {self.mi_svi:.3f} nats"
                                                       if self.mi_svi is not None else f"{self.kl_svi:.2f}, n/a"),
                ("  recon BLEU, refined means", "not measured" if self.recon_bleu_svi is None
                 else f"{self.recon_bleu_svi:.2f}"),
                ("  amortisation gap", f"{self.amortization_gap:.2f} (ELBO after SVI - ELBO)"),
                ("  approximation gap", f"{self.approximation_gap:.2f} (log p(x) - ELBO after SVI; log p(x) from the "
                                        "better IW estimate)"),
            ]
        if self.prior is not None:
            p = self.prior
            rows += [
                (f"prior samples ({p.method})", f"{p.n:,}"),
                ("  distinct-1 / -2", f"{p.distinct_1:.3f} / {p.distinct_2:.3f}"),
                ("  self-BLEU", f"{p.self_bleu:.2f}"),
            ]
        if self.clustering is not None:
            c = self.clustering
            left_out = f", {c.unlabelled:,} without a label left out" if c.unlabelled else ""
            rows += [
                (f"clustering ({c.label_key})", f"accuracy {c.accuracy:.3f}, NMI {c.nmi:.3f} (argmax_c p(c | z) at "
                                                "the posterior code)"),
                ("  components", f"{c.used} of {c.components} used; {c.classes} labels, {c.sentences:,} sentences"
                                 f"{left_out}"),
            ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# ---------------------------------------------------------------------------------------------------


def _sentence_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2**63)


def sentence_noise(index: Tensor, k: int, latent_dim: int, seed: int) -> Tensor:
    """Standard-normal noise for K samples per sentence, sentence ``index[b]`` drawing from its own CPU
    generator seeded by ``(seed, index[b])``: index (B,) -> (K, B, Z) on the CPU. The first K' < K are the
    draws a run with K' would make, and a GPU run uses the same noise as a CPU run (one copy to the device
    per batch, not B small launches)."""
    generator = torch.Generator()
    eps = []
    for i in index.tolist():
        generator.manual_seed(_sentence_seed(seed, i))
        eps.append(torch.randn(k, latent_dim, generator=generator))  # (K, Z)
    return torch.stack(eps, dim=1)  # (K, B, Z)


def importance_samples(model: TextModel, batch: SentenceBatch, k: int, *, seed: int,
                       chunk: int | None = None) -> tuple[ImportanceSamples, Inference]:
    """The three (K, B) terms of the IW bound with per-sentence seeded samples (see the module doc), and
    what the model inferred (q, p). Any :class:`~textvae.models.LatentModel`."""
    inference = model.infer(batch)
    mu = inference.q.params[0]
    noise = sentence_noise(batch.index, k, mu.shape[-1], seed).to(device=mu.device, dtype=mu.dtype)  # (K, B, Z)
    return model_importance_samples(model, batch, k, inference=inference, noise=noise, chunk=chunk), inference


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


def _reconstructions(model: TextModel, code: Tensor, label: Tensor | None, max_len: int,
                     tokenizer: Tokenizer | None) -> list[str]:
    """Greedy decodes from the codes (B, Z), each with its label's condition appended when there is one."""
    start = code if label is None else torch.cat([code, label], -1)
    return [_text(ids, tokenizer) for ids in greedy(model, start, max_len)]


@torch.no_grad()  # not inference mode: semi-amortised steps take gradients inside
def evaluate(model: TextModel, dataset: torch.utils.data.Dataset, *, samples: int = 500, batch_size: int = 32,
             seed: int = 0, bleu: bool = True, tokenizer: Tokenizer | None = None,
             device: str | torch.device | None = None, chunk: int | None = None, mi_group: int = 1000,
             svi_steps: int = 0, svi_lr: float = 0.25, progress: Callable[[int], None] | None = None) -> EvalResult:
    """Evaluate ``model`` on a :class:`~textvae.data.datasets.SentenceDataset` (see the module doc).

    Batches are length-bucketed, in a fixed order (no shuffle); the model is in eval mode for the call.
    ``samples``: K per sentence. ``seed``: the importance samples' and MI's randomness, drawn per sentence
    rather than from one shared generator, so results do not change with ``batch_size``. ``tokenizer``:
    decode reconstructions and inputs to text for BLEU (without it, BLEU compares token ids, which is the
    same for a word tokenizer). ``device``: where to run (default: where the model is; the model is moved).
    ``chunk``: importance samples per decoder pass (None: as many as fit the model's logits budget).
    ``mi_group``: sentences per aggregate posterior of the MI (all of them if fewer). ``svi_steps``,
    ``svi_lr``: semi-amortised refinement of each posterior, for the ELBO after it, the two gaps, and the KL,
    MI and reconstruction BLEU of the refined posteriors (how much of the latent the decoder actually uses:
    a posterior kept informative by a constraint on the encoder falls back towards the prior).
    ``progress``: called after each batch with the number of sentences done (a tool's progress line).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if mi_group < 2 or svi_steps < 0 or svi_lr <= 0:
        raise ValueError(f"need mi_group >= 2, svi_steps >= 0, svi_lr > 0, got {mi_group}, {svi_steps}, {svi_lr}")
    if len(dataset) == 0:
        raise ValueError("the evaluation data set is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    has_latent = model.latent_dim > 0
    was_training = model.training
    model.eval()

    total_nll = total_rec = total_kl = total_svi = total_nll_svi = total_kl_svi = 0.0
    sentences = tokens = 0
    seconds = 0.0
    closed_form = True
    posteriors: list = []  # q(z|x) per batch, on the CPU
    codes: list[Tensor] = []
    order: list[Tensor] = []  # the sentences' indices, batch by batch
    hypotheses: list[str] = []
    references: list[str] = []
    refined_posteriors: list = []  # q(z|x) after the semi-amortised steps, per batch, on the CPU
    refined_hypotheses: list[str] = []
    svi_generator = torch.Generator(device).manual_seed(seed)
    try:
        for indices in BucketBatchSampler(dataset.lengths, batch_size, shuffle=False):
            examples: list[SentenceExample] = [dataset[i] for i in indices]
            batch = batch_to(collate_sentences(examples), device)
            start = time.perf_counter()
            if has_latent:
                terms, inference = importance_samples(model, batch, samples, seed=seed, chunk=chunk)
                nll = importance_weighted_nll(*terms)  # (B,)
                total_rec += float(-terms.log_px_given_z.mean(0).sum())
                kl = sampled_kl(inference, terms)  # (B,)
                closed_form = closed_form and kl.closed_form
                total_kl += float(kl.value.sum())
                q = inference.q
            else:
                nll = model(batch).reconstruction  # (B,) exact -log p(x)
            total_nll += float(nll.sum())
            synchronize(device)
            seconds += time.perf_counter() - start
            sentences += len(examples)
            tokens += batch.num_targets
            if has_latent:
                code = q.code
                posteriors.append(q.to("cpu"))
                order.append(batch.index.cpu())
                codes.append(code.float().cpu())
                if svi_steps:
                    refined = refine(model, batch, inference, steps=svi_steps, lr=svi_lr, generator=svi_generator,
                                     samples=SVI_SAMPLES, keep_best=True)
                    noise = sentence_noise(batch.index, samples, code.shape[-1], seed).to(code)  # (K, B, Z)
                    refined_terms = model_importance_samples(model, batch, samples, inference=refined, noise=noise,
                                                             chunk=chunk)  # (K, B) x3, the same draws as above
                    refined_kl = sampled_kl(refined, refined_terms).value  # (B,)
                    total_svi += float((refined_terms.log_px_given_z.mean(0) - refined_kl).sum())
                    total_kl_svi += float(refined_kl.sum())
                    total_nll_svi += float(importance_weighted_nll(*refined_terms).sum())
                    refined_posteriors.append(refined.q.to("cpu"))
                if bleu:
                    max_len = int(batch.lengths.max()) - 1 + RECONSTRUCTION_SLACK
                    # a labelled model decodes [z; e(y)] at the label it was encoded with (its infer's condition)
                    label = inference.condition if num_labels(model) else None
                    hypotheses += _reconstructions(model, code, label, max_len, tokenizer)
                    references += [_text(e.ids, tokenizer) for e in examples]
                    if svi_steps:
                        refined_hypotheses += _reconstructions(model, refined.q.code, label, max_len, tokenizer)
            if progress is not None:
                progress(sentences)
    finally:
        model.train(was_training)

    words = tokens - sentences
    result = EvalResult(
        model=type(model).__name__, latent_dim=model.latent_dim, sentences=sentences, tokens=tokens,
        samples=samples if has_latent else None, iw_nll=total_nll / sentences, ppl=perplexity(total_nll, tokens),
        ppl_words=perplexity(total_nll, words) if words else math.inf, elbo=None, reconstruction=None, kl=None,
        mi=None, active_units=None, recon_bleu=None, batch_size=batch_size, seconds=seconds,
        sentences_per_second=sentences / seconds if seconds > 0 else math.inf,
    )
    if not has_latent:
        return result
    result.reconstruction, result.kl = total_rec / sentences, total_kl / sentences
    result.elbo = -(result.reconstruction + result.kl)
    result.kl_estimate = "closed form" if closed_form else f"Monte Carlo, {samples} samples"
    if sentences >= 2:
        result.mi_group = min(mi_group, sentences)
        data_order = torch.cat(order).argsort()  # the data set's order: no batch effect
        result.mi, result.mi_svi = (
            mutual_information(concatenate(qs).rows(data_order), group_size=result.mi_group,
                               generator=torch.Generator().manual_seed(seed)) if qs else None
            for qs in (posteriors, refined_posteriors))
        result.active_units, _ = active_units(torch.cat(codes), threshold=AU_THRESHOLD)
    if bleu:
        with _quiet_sacrebleu():
            result.recon_bleu = corpus_bleu(hypotheses, references, tokenize="none")
    if svi_steps:
        result.svi_steps, result.svi_lr = svi_steps, svi_lr
        result.elbo_svi, result.iw_nll_svi = total_svi / sentences, total_nll_svi / sentences
        result.kl_svi = total_kl_svi / sentences
        if bleu:
            with _quiet_sacrebleu():
                result.recon_bleu_svi = corpus_bleu(refined_hypotheses, references, tokenize="none")
        result.amortization_gap = result.elbo_svi - result.elbo
        result.approximation_gap = -min(result.iw_nll, result.iw_nll_svi) - result.elbo_svi
    return result


@torch.inference_mode()
def prior_sample_metrics(model: TextModel, tokenizer: Tokenizer, n: int, *,
                         decoding: Decoding = PRIOR_SAMPLING, batch_size: int = 256,
                         generator: torch.Generator | None = None,
                         progress: Callable[[int], None] | None = None) -> PriorSampleMetrics:
    """Decode ``n`` sentences from prior draws z ~ p(z) (a language model: from nothing; a labelled model:
    each for a label drawn uniformly, z ~ p(z | y)) and measure their
    diversity: distinct-1/2 and self-BLEU. Sampling (default) draws from the model's own p(x|z), which is
    what a language model must be compared on; greedy decoding shows what z alone encodes. ``generator``
    on the model's device; ``progress`` is called after each batch with the number of sentences decoded."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (self-BLEU compares the samples with each other), got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts: list[str] = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z, labels = prior_draws(model, m, generator=generator)  # a labelled model: labels drawn uniformly
        texts += decode_texts(model, tokenizer, z, decoding, count=m, chunk=batch_size, generator=generator,
                              labels=labels)
        if progress is not None:
            progress(len(texts))
    return PriorSampleMetrics(n=n, method=decoding.method, distinct_1=distinct_n(texts, 1),
                              distinct_2=distinct_n(texts, 2), self_bleu=self_bleu(texts), samples=texts)


# ---------------------------------------------------------------------------------------------------
# Clustering by a mixture prior


def mixture_prior(model: TextModel) -> GaussianMixture:
    """The model's prior p(z) when it is a mixture of Gaussians, whose components cluster the data; a
    ValueError (one line for the user) for any other model."""
    prior = getattr(model, "prior", None)
    mixture = prior(None, 1) if isinstance(prior, Prior) and prior.condition_dim == 0 else None
    if not isinstance(mixture, GaussianMixture):
        has = f"its prior is a {type(prior).__name__}" if isinstance(prior, Prior) else "it has no prior p(z)"
        raise ValueError(f"clustering needs a sentence model whose prior is a mixture (textvae.priors.MixturePrior); "
                         f"{has}")
    return mixture


@torch.inference_mode()
def cluster_assignments(model: TextModel, tokenizer: Tokenizer, texts: Sequence[str], *,
                        batch_size: int = 64) -> Tensor:
    """Each text's cluster: the component argmax_c p(c | z) of the mixture prior at the text's posterior code
    (:func:`textvae.latent.encode_texts`), (N,) on the CPU."""
    mixture = mixture_prior(model)
    codes = encode_texts(model, tokenizer, texts, batch_size=batch_size).mu  # (N, Z)
    return mixture.responsibilities(codes).argmax(-1).cpu()  # (N,)


def clustering_metrics(model: TextModel, tokenizer: Tokenizer, texts: Sequence[str], labels: Sequence[str | None],
                       *, label_key: str, batch_size: int = 64) -> ClusteringMetrics:
    """:func:`cluster_assignments` scored against ``labels`` (read under ``label_key``); texts whose label is
    None are left out and counted."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    mixture = mixture_prior(model)
    keep = [i for i, label in enumerate(labels) if label is not None]
    if not keep:
        raise ValueError(f"no sentence has a label under {label_key!r}; choose a key the data has (label or "
                         "attributes.NAME)")
    clusters = cluster_assignments(model, tokenizer, [texts[i] for i in keep], batch_size=batch_size).tolist()
    gold = [labels[i] for i in keep]
    return ClusteringMetrics(label_key=label_key, sentences=len(keep), unlabelled=len(labels) - len(keep),
                             components=mixture.mu.shape[0], used=len(set(clusters)), classes=len(set(gold)),
                             accuracy=clustering_accuracy(clusters, gold),
                             nmi=normalized_mutual_information(clusters, gold))
