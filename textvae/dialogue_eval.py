"""Evaluating a dialogue response model p(x | c) (HRED, VHRED, CVAE, kgCVAE) as the papers report it.

* **NLL / PPL**: -log p(x | c) of each reference response, summed over its words *and* EOS; PPL =
  exp(total NLL / (words + EOS)), as for sentences. HRED's NLL is exact. A latent model's is the bound
  -ELBO = reconstruction + KL(q(z|c,x) || p(z|c)) with the **recognition network** (one z per response,
  from ``model(batch)``), so its PPL is an upper bound on the true perplexity; the table says so.
  kgCVAE's decoder reads the gold act y, so its bound also counts -log p(y | c, z) (``act NLL``): it
  bounds -log p(x, y | c) >= -log p(x | c), never a response's likelihood given its true act.
* **Zhao et al. (2017)'s protocol**: N responses sampled per context (default 10, each decoded as
  :mod:`textvae.dialogue` says: greedy per z for latent models, sampled words for HRED). BLEU-n recall is
  the max and precision the mean over the N samples of sentence BLEU-n (n = 1..4, see
  :func:`textvae.metrics.sentence_bleu_n` for the smoothing), averaged over contexts; F1 = 2PR/(P+R) of
  those averages (Gu et al. 2019). Scores are 0-1, as in those papers. Text is compared as the tokenizer
  decodes it (the reference too, so both sides see the same vocabulary and <unk>), split on whitespace.
* **distinct-1/2** (Li et al. 2016) within each context's N samples, averaged over contexts, and over
  all generated responses together.
* **act accuracy** (kgCVAE): how often the act the decoder was conditioned on (predicted from (c, z))
  is the reference response's gold act; responses whose gold act is unknown are left out.
* With an **act tagger** (:mod:`textvae.act_tagger`, trained on the corpus' gold acts), the acts of the
  generated *text*: **act match** recall (max) and precision (mean) over the N samples of
  [tag(response) == the reference's gold act] (Zhao et al.'s dialog-act match), for any model; and for
  kgCVAE **act control**: context i also gets N responses decoded for the requested act
  acts[i mod A] (so the requests are balanced over the A acts), scored by how often the tagger finds the
  requested act in them, against how often it finds that same act in the context's N unconditioned
  responses (the model choosing its act from (c, z)). The tagger's own accuracy on the references is
  reported with them. Act control draws from its own generator, so it leaves every other number as it is.
* With a **domain classifier** (:mod:`textvae.fidelity`, trained by ``textvae-classifier --label-key topic``
  on the corpus' dialogues) and records that carry goals: **context fidelity**, the share of responses in
  the context's domain (or domain-free) and the share of the slot values they name that match the
  dialogue's goal so far, with the same figures for the references.
* **embedding average / extrema / greedy** (Liu et al. 2016) with user-supplied word vectors, recall
  (max) and precision (mean) over the N samples like BLEU (Zhao et al.'s A-bow and E-bow). A pair where
  one side has no word with a vector scores 0 and is counted.

Everything is batched: B contexts per ``model(batch)`` pass, and their N x B responses decoded in one call.
Reproducibility: batches come in a fixed order and one seeded generator draws every latent and sampled
word, so the same seed *and batch size* give the same numbers.

Notation: B contexts, N samples per context.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from textvae.act_tagger import ActTagger
from textvae.data.batching import BucketBatchSampler, batch_to, collate_dialogues
from textvae.data.datasets import DialogueDataset
from textvae.data.tokenizers import Tokenizer
from textvae.data.word_vectors import WordVectors
from textvae.decoding import Decoding
from textvae.dialogue import default_decoding, describe_method, generate_responses
from textvae.evaluation import JSONResult
from textvae.fidelity import Fidelity, FidelityTotals
from textvae.metrics import (
    bleu_recall_precision,
    distinct_n,
    embedding_average,
    embedding_extrema,
    embedding_greedy,
    f1_score,
    perplexity,
)
from textvae.models import DialogueModel

BLEU_ORDERS = 4
EXAMPLES = 3  # contexts whose responses the result keeps, to look at


@dataclass
class EmbeddingScores:
    """Liu et al. (2016)'s metrics, cosines in [-1, 1]: recall = max, precision = mean over the N samples."""

    vectors: str  # where the word vectors came from
    coverage: float  # fraction of the compared tokens (generated and reference) that have a vector
    unscored: int  # (response, reference) pairs where one side has no word with a vector: scored 0
    average_recall: float
    average_precision: float
    extrema_recall: float
    extrema_precision: float
    greedy_recall: float
    greedy_precision: float


@dataclass
class ActControl:
    """kgCVAE's responses decoded for a requested act, as the act tagger reads them (fractions of responses)."""

    conditioned: float  # tagged with the requested act, decoded for it
    unconditioned: float  # tagged with that same act, decoded for the act the model chose
    per_act: dict[str, dict[str, float]]  # act -> {conditioned, unconditioned, responses}


@dataclass
class TaggedActs:
    """The acts of the generated text, by an act tagger (see the module doc)."""

    tagger: str  # where the tagger came from
    tagger_accuracy: float  # on the evaluated references with a gold act
    scored: int  # contexts whose reference has a gold act
    match_recall: float  # max over the N samples of [tag == gold act of the reference], mean over contexts
    match_precision: float  # mean over the N samples
    control: ActControl | None  # kgCVAE only


@dataclass
class DialogueEvalResult(JSONResult):
    """Per-response averages are in nats; generation fields are None when responses were not generated."""

    model: str  # class name
    latent_dim: int
    num_acts: int
    contexts: int  # (context, reference response) pairs
    tokens: int  # reference words + one EOS each
    nll: float  # per response: exact (HRED) or the -ELBO bound (latent models)
    nll_is_bound: bool
    ppl: float  # exp(total NLL / tokens)
    reconstruction: float | None  # -E_q[log p(x|z,c)] per response (one z), latent models
    act_nll: float | None  # kgCVAE: -log p(gold act | c, z) per response, included in nll
    kl: float | None  # KL(q(z|c,x) || p(z|c)) per response, latent models
    responses: int  # N sampled per context (0: none generated)
    decoding: str | None
    bleu_recall: list[float] | None  # BLEU-1..4, max over the samples, mean over contexts
    bleu_precision: list[float] | None  # BLEU-1..4, mean over the samples
    bleu_f1: list[float] | None
    distinct_1_within: float | None  # within each context's samples, mean over contexts
    distinct_2_within: float | None
    distinct_1: float | None  # over all generated responses
    distinct_2: float | None
    act_accuracy: float | None  # kgCVAE: conditioned-on act == gold act of the reference
    acts_scored: int | None  # responses whose reference has a gold act
    embedding: EmbeddingScores | None
    tagged: TaggedActs | None
    fidelity: Fidelity | None  # context fidelity, with a domain classifier
    batch_size: int
    seconds: float
    contexts_per_second: float
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def table(self) -> str:
        """Aligned, human-readable lines."""
        na = "n/a (no latent)"
        described = self.model + (f", z {self.latent_dim}" if self.latent_dim else "")
        described += f", {self.num_acts} acts" if self.num_acts else ""
        nll_note = ("upper bound: -ELBO with the recognition network, one z per response" if self.nll_is_bound
                    else "exact")
        rows = [
            ("model", described),
            ("contexts", f"{self.contexts:,}"),
            ("tokens", f"{self.tokens:,} (response words + EOS)"),
            ("NLL", f"{self.nll:.2f} nats/response ({nll_note})"),
            ("  reconstruction", na if self.reconstruction is None else f"{self.reconstruction:.2f}"),
            ("  KL", na if self.kl is None else f"{self.kl:.2f}"),
            *([("  act NLL", f"{self.act_nll:.2f} (-log p(gold act | c, z))")] if self.act_nll is not None else []),
            ("PPL", f"{self.ppl:.2f} (exp(NLL / tokens), EOS counted" + ("; a bound)" if self.nll_is_bound else ")")),
        ]
        if self.responses:
            def four(values: list[float]) -> str:
                return " / ".join(f"{v:.3f}" for v in values)

            rows += [
                ("responses", f"{self.responses} per context, {self.decoding}"),
                ("BLEU-1..4 recall", four(self.bleu_recall) + " (max over samples)"),
                ("BLEU-1..4 precision", four(self.bleu_precision) + " (mean over samples)"),
                ("BLEU-1..4 F1", four(self.bleu_f1)),
                ("distinct-1 / -2 within", f"{self.distinct_1_within:.3f} / {self.distinct_2_within:.3f} "
                                           "(each context's samples, mean)"),
                ("distinct-1 / -2 overall", f"{self.distinct_1:.3f} / {self.distinct_2:.3f} (all responses)"),
            ]
            if self.act_accuracy is not None:
                rows.append(("act accuracy", f"{self.act_accuracy:.3f} (conditioned-on act vs the reference's "
                                             f"gold act, {self.acts_scored:,} responses)"))
            elif self.num_acts:
                rows.append(("act accuracy", "n/a (no gold act in the data)"))
            e = self.embedding
            if e is not None:
                rows += [
                    ("embedding average", f"{e.average_recall:.3f} recall / {e.average_precision:.3f} precision"),
                    ("embedding extrema", f"{e.extrema_recall:.3f} recall / {e.extrema_precision:.3f} precision"),
                    ("embedding greedy", f"{e.greedy_recall:.3f} recall / {e.greedy_precision:.3f} precision"),
                    ("  word vectors", f"{e.vectors}: {e.coverage:.1%} of tokens covered, {e.unscored:,} pairs unscored"),
                ]
            t = self.tagged
            if t is not None:
                rows += [
                    ("act match (tagger)", f"{t.match_recall:.3f} recall / {t.match_precision:.3f} precision "
                                           f"({t.scored:,} contexts with a gold act)"),
                    ("  tagger", f"{t.tagger}: {t.tagger_accuracy:.3f} accuracy on these references"),
                ]
                if t.control is not None:
                    rows.append(("act control (tagger)", f"{t.control.conditioned:.3f} decoded for the requested act "
                                                         f"vs {t.control.unconditioned:.3f} unconditioned"))
                    rows += [(f"  {act}", f"{v['conditioned']:.3f} vs {v['unconditioned']:.3f} "
                                          f"({int(v['responses']):,} responses each)")
                             for act, v in t.control.per_act.items()]
            f = self.fidelity
            if f is not None:
                match = "n/a (no slot value named)" if f.slot_match is None else f"{f.slot_match:.3f}"
                reference = "n/a" if f.reference_slot_match is None else f"{f.reference_slot_match:.3f}"
                rows += [
                    ("in the context's domain", f"{f.domain_share:.3f} ({f.general_share:.3f} domain-free; "
                                                f"references {f.reference_domain_share:.3f})"),
                    ("slot values match goal", f"{match} of {f.slot_values:,} named (references {reference} "
                                               f"of {f.reference_slot_values:,})"),
                ]
                for speaker, o in f.by_speaker.items():
                    match = "n/a" if o["slot_match"] is None else f"{o['slot_match']:.3f}"
                    rows.append((f"  {speaker}'s turns", f"{o['domain_share']:.3f} in domain, slot values "
                                                         f"{match} of {o['slot_values']:,}"))
                rows.append(("  domain classifier", f.classifier))
        rows.append(("speed", f"{self.contexts_per_second:,.1f} contexts/s ({self.seconds:.2f} s, batch {self.batch_size})"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class _EmbeddingTotals:
    """Sums of the per-context recall/precision of the three embedding metrics."""

    METRICS = {"average": embedding_average, "extrema": embedding_extrema, "greedy": embedding_greedy}

    def __init__(self, vectors: WordVectors, source: str):
        self.vectors, self.source = vectors, source
        self.recall = dict.fromkeys(self.METRICS, 0.0)
        self.precision = dict.fromkeys(self.METRICS, 0.0)
        self.contexts = self.tokens = self.covered = self.unscored = 0

    def add(self, hypotheses: list[str], reference: str) -> None:
        ref_words = reference.split()
        ref = self.vectors.lookup(ref_words)  # (M, D)
        self.tokens += len(ref_words)
        self.covered += len(ref)
        scores = {name: [] for name in self.METRICS}
        for hypothesis in hypotheses:
            words = hypothesis.split()
            hyp = self.vectors.lookup(words)  # (n, D)
            self.tokens += len(words)
            self.covered += len(hyp)
            for name, metric in self.METRICS.items():
                scores[name].append(metric(hyp, ref) if len(hyp) and len(ref) else 0.0)
            self.unscored += not (len(hyp) and len(ref))
        for name, values in scores.items():
            self.recall[name] += max(values)
            self.precision[name] += sum(values) / len(values)
        self.contexts += 1

    def result(self) -> EmbeddingScores:
        n = max(self.contexts, 1)
        return EmbeddingScores(vectors=self.source, coverage=self.covered / max(self.tokens, 1), unscored=self.unscored,
                               **{f"{name}_{kind}": totals[name] / n for name in self.METRICS
                                  for kind, totals in (("recall", self.recall), ("precision", self.precision))})


class _TagTotals:
    """Counts behind :class:`TaggedActs`. ``acts``: the evaluation's act names by id (the model's)."""

    def __init__(self, tagger: ActTagger, source: str, acts: list[str], control: bool):
        if missing := [a for a in acts if a not in tagger.acts]:
            raise ValueError(f"the act tagger {source} does not know the act(s) {', '.join(missing)} of this "
                             f"model/data (it knows {', '.join(tagger.acts)}); train it on the same corpus")
        self.tagger, self.source, self.acts = tagger, source, acts
        self.reference_correct = self.scored = 0
        self.recall = self.precision = 0.0
        self.control = control
        self.requested = {a: [0, 0, 0] for a in acts}  # act -> [conditioned hits, unconditioned hits, responses]

    def add(self, hypotheses: list[str], reference: str, gold: int | None, *, requested: int | None = None,
            conditioned: list[str] = ()) -> None:
        """One context: its N (unconditioned) responses, reference and gold act id; with ``requested``, the
        act id its ``conditioned`` responses were decoded for. Every text is tagged once, in one call."""
        tags = [self.tagger.acts[t] for t in self.tagger.tag([*hypotheses, *conditioned, reference])]
        unconditioned, forced, reference_tag = tags[:len(hypotheses)], tags[len(hypotheses):-1], tags[-1]
        if requested is not None:
            act = self.acts[requested]
            counts = self.requested[act]
            counts[0] += sum(t == act for t in forced)
            counts[1] += sum(t == act for t in unconditioned)
            counts[2] += len(forced)
        if gold is None or gold < 0:
            return
        gold_name = self.acts[gold]
        hits = [t == gold_name for t in unconditioned]
        self.recall += max(hits)
        self.precision += sum(hits) / len(hits)
        self.reference_correct += reference_tag == gold_name
        self.scored += 1

    def result(self) -> TaggedActs | None:
        if not self.scored:
            return None
        control = None
        if self.control:
            n = sum(c[2] for c in self.requested.values())
            control = ActControl(
                conditioned=sum(c[0] for c in self.requested.values()) / n,
                unconditioned=sum(c[1] for c in self.requested.values()) / n,
                per_act={a: {"conditioned": c[0] / c[2], "unconditioned": c[1] / c[2], "responses": c[2]}
                         for a, c in self.requested.items() if c[2]})
        return TaggedActs(tagger=self.source, tagger_accuracy=self.reference_correct / self.scored, scored=self.scored,
                          match_recall=self.recall / self.scored, match_precision=self.precision / self.scored,
                          control=control)


@torch.inference_mode()
def evaluate_dialogues(model: DialogueModel, dataset: DialogueDataset, tokenizer: Tokenizer, *,
                       responses: int = 10, batch_size: int = 32, seed: int = 0, decoding: Decoding | None = None,
                       embeddings: WordVectors | None = None, embeddings_source: str = "",
                       device: str | torch.device | None = None, max_contexts: int | None = None,
                       act_tagger: ActTagger | None = None, act_tagger_source: str = "",
                       fidelity: FidelityTotals | None = None,
                       progress: Callable[[int], None] | None = None) -> DialogueEvalResult:
    """Evaluate ``model`` on a :class:`~textvae.data.datasets.DialogueDataset` (see the module doc).

    ``responses``: N per context (0: only NLL/PPL/KL), decoded with ``decoding`` (None: the model's default,
    :func:`textvae.dialogue.default_decoding`). ``embeddings``: word vectors for Liu et al.'s metrics
    (None: skipped). ``max_contexts``: evaluate only the first that many (context, response) pairs.
    ``act_tagger``: scores the acts of the generated text (None: skipped); the act names are ``dataset.acts``.
    ``fidelity``: counts the context fidelity of the responses (:class:`~textvae.fidelity.FidelityTotals`
    built on the records ``dataset`` was built from; None: skipped).
    ``progress``: called after each batch with the number of contexts done (a tool's progress line).
    """
    if responses < 0:
        raise ValueError(f"responses must be >= 0, got {responses}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ValueError("the evaluation data set is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    if decoding is None:
        decoding = default_decoding(model)
    has_latent = model.latent_dim > 0
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()

    total_nll = total_rec = total_kl = total_act = 0.0
    contexts = tokens = 0
    recall_sum, precision_sum = [0.0] * BLEU_ORDERS, [0.0] * BLEU_ORDERS
    within_1 = within_2 = 0.0
    generated: list[str] = []
    acts_correct = acts_scored = 0
    embedding = _EmbeddingTotals(embeddings, embeddings_source) if embeddings is not None and responses else None
    tagged = None
    if act_tagger is not None and responses:
        tagged = _TagTotals(act_tagger, act_tagger_source, dataset.acts.names, control=model.num_acts > 0)
    control_generator = torch.Generator(device=device).manual_seed(seed + 1)
    examples: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # the recognition network's z in model(batch)
            for indices in BucketBatchSampler(dataset.lengths[:max_contexts], batch_size, shuffle=False):
                items = [dataset[i] for i in indices]
                batch = batch_to(collate_dialogues(items), device)
                out = model(batch)
                reconstruction = out.reconstruction.double()  # (B,)
                kl = out.kl.double().sum(-1) if out.kl is not None else torch.zeros_like(reconstruction)  # (B,)
                act_nll = out.act_nll.double() if out.act_nll is not None else torch.zeros_like(reconstruction)  # (B,)
                total_nll += float((reconstruction + kl + act_nll).sum())
                total_act += float(act_nll.sum())
                total_rec += float(reconstruction.sum())
                total_kl += float(kl.sum())
                contexts += len(items)
                tokens += batch.num_targets
                if not responses:
                    if progress is not None:
                        progress(contexts)
                    continue
                result = generate_responses(model, batch, num_samples=responses, decoding=decoding,
                                            generator=generator)
                requested = control = None
                if tagged is not None and tagged.control:
                    requested = torch.tensor([item.index % model.num_acts for item in items], device=device)  # (B,)
                    control = generate_responses(model, batch, num_samples=responses, decoding=decoding,
                                                 acts=requested, generator=control_generator)
                for b, item in enumerate(items):
                    hypotheses = [tokenizer.decode(ids) for ids in result.ids[b]]
                    reference = tokenizer.decode(item.response)
                    recall, precision = bleu_recall_precision(hypotheses, reference, BLEU_ORDERS)
                    recall_sum = [s + v for s, v in zip(recall_sum, recall, strict=True)]
                    precision_sum = [s + v for s, v in zip(precision_sum, precision, strict=True)]
                    within_1 += distinct_n(hypotheses, 1)
                    within_2 += distinct_n(hypotheses, 2)
                    generated += hypotheses
                    if result.acts is not None and item.act is not None and item.act >= 0:
                        acts_correct += sum(a == item.act for a in result.acts[b])
                        acts_scored += len(result.acts[b])
                    if embedding is not None:
                        embedding.add(hypotheses, reference)
                    if tagged is not None:
                        if control is None:
                            tagged.add(hypotheses, reference, item.act)
                        else:
                            tagged.add(hypotheses, reference, item.act, requested=int(requested[b]),
                                       conditioned=[tokenizer.decode(ids) for ids in control.ids[b]])
                    if fidelity is not None:
                        dialogue, turn = dataset.examples[item.index]
                        topic = dataset.topics.names[item.topic] if item.topic is not None and item.topic >= 0 else None
                        fidelity.add(hypotheses, reference, topic, dialogue, turn, dataset.speakers[dialogue][turn])
                    if len(examples) < EXAMPLES:
                        examples.append({"context": [tokenizer.decode(t) for t in item.context],
                                         "reference": reference, "responses": hypotheses})
                if progress is not None:
                    progress(contexts)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start

    bleu_recall = bleu_precision = bleu_f1 = None
    d1w = d2w = d1 = d2 = None
    if responses:
        bleu_recall = [s / contexts for s in recall_sum]
        bleu_precision = [s / contexts for s in precision_sum]
        bleu_f1 = [f1_score(p, r) for p, r in zip(bleu_precision, bleu_recall, strict=True)]
        d1w, d2w = within_1 / contexts, within_2 / contexts
        d1, d2 = distinct_n(generated, 1), distinct_n(generated, 2)
    return DialogueEvalResult(
        model=type(model).__name__, latent_dim=model.latent_dim, num_acts=model.num_acts, contexts=contexts,
        tokens=tokens, nll=total_nll / contexts, nll_is_bound=has_latent, ppl=perplexity(total_nll, tokens),
        reconstruction=total_rec / contexts if has_latent else None,
        act_nll=total_act / contexts if model.num_acts else None, kl=total_kl / contexts if has_latent else None,
        responses=responses, decoding=describe_method(model, decoding) if responses else None,
        bleu_recall=bleu_recall, bleu_precision=bleu_precision, bleu_f1=bleu_f1,
        distinct_1_within=d1w, distinct_2_within=d2w, distinct_1=d1, distinct_2=d2,
        act_accuracy=acts_correct / acts_scored if acts_scored else None,
        acts_scored=acts_scored if model.num_acts and responses else None,
        embedding=embedding.result() if embedding is not None else None,
        tagged=tagged.result() if tagged is not None else None,
        fidelity=fidelity.result() if fidelity is not None and responses else None, batch_size=batch_size, seconds=seconds,
        contexts_per_second=contexts / seconds if seconds > 0 else math.inf, examples=examples,
    )
