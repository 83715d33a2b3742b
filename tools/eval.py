"""textvae-eval: evaluate an exported model: NLL, perplexity, KL and more for sentence and dialogue models.

Sentence models (VAE or language-model baseline) on a prepared sentence JSONL split: importance-weighted
NLL, PPL, ELBO, KL, mutual information, active units, reconstruction BLEU and prior-sample diversity,
for any posterior and prior (flows and mixtures: a Monte-Carlo KL); with --svi-steps, the ELBO after
semi-amortised refinement, the amortisation and approximation gaps, and the KL, MI and reconstruction BLEU
of the refined posteriors (how much of z the decoder actually reads); with --label-key KEY, for a model
whose prior is a mixture, how its components cluster the sentences against their labels under KEY
(clustering accuracy and NMI, VaDE's protocol).
PPL = exp(total NLL / (words + EOS)), the papers' definition.

Dialogue models (HRED, VHRED, CVAE, kgCVAE) on a prepared dialogue JSONL split, one (context, response)
pair per turn after the first: PPL of the reference responses (exact for HRED; for latent models the
bound -ELBO with the recognition network, as the table says), KL, and Zhao et al. (2017)'s protocol with
N sampled responses per context: BLEU-1..4 recall (max over samples), precision (mean) and F1,
distinct-1/2 within each context's samples and overall, kgCVAE's act accuracy, and with --embeddings the
embedding average/extrema/greedy of Liu et al. (2016). With --act-tagger (a tagger saved by
textvae-act-tagger on the same corpus), the dialog acts of the generated text: act match with the
reference's gold act, and for kgCVAE how often responses decoded for a requested act carry it. With
--domain-classifier (saved by textvae-classifier --label-key topic on the same corpus), context fidelity:
the share of responses in the context's domain and, for records that carry a goal (meta.goal), the share
of the slot values the responses name that match the dialogue's goal so far (textvae.fidelity). Latent
models decode each sampled z greedily, HRED samples its words (the decoding options change that);
responses never contain <unk> unless --allow-unk.

--json also writes the numbers. With stderr a terminal, an evaluation that takes more than a few seconds
shows its progress there. Ctrl-C stops with "interrupted" and exit code 130, and never leaves half a --json
file.

Examples:
  textvae-eval --model runs/yelp/export --data data/yelp/test.jsonl
  textvae-eval --model runs/yelp/export --data data/yelp/test.jsonl --samples 100 --json eval.json
  textvae-eval --model runs/yelp/export --data data/yelp/test.jsonl --samples 100 --svi-steps 20
  textvae-eval --model runs/synthetic_vade/export --data data/synthetic-sentences/test.jsonl --label-key attributes.topic
  textvae-eval --model runs/switchboard_kgcvae/export --data data/switchboard/test.jsonl --responses 10 --embeddings glove.txt
  textvae-eval --model runs/dailydialog_lite_kgcvae/export --data data/dailydialog-lite/test.jsonl --act-tagger runs/dailydialog_lite_act_tagger
  textvae-eval --model runs/synthetic_dialogue_quickstart/export --data data/synthetic-dialogues/test.jsonl --domain-classifier runs/synthetic_domain_classifier
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from textvae.act_tagger import load_act_tagger
from textvae.classifier import load_classifier
from textvae.data.datasets import (
    DEFAULT_MAX_CONTEXT,
    DialogueDataset,
    SentenceDataset,
    Vocab,
    label_values,
)
from textvae.data.records import DataError, atomic_output, detect_kind
from textvae.data.word_vectors import load_word_vectors
from textvae.dialogue_eval import evaluate_dialogues
from textvae.evaluation import clustering_metrics, evaluate, mixture_prior, prior_sample_metrics
from textvae.export import Export
from textvae.fidelity import GENERAL, FidelityTotals, GoalTracker
from textvae.latent import GREEDY
from textvae.models.modules import LOGITS_BUDGET
from tools._cli import (
    MAX_BATCH,
    MAX_CONTEXT,
    MAX_IMPORTANCE_SAMPLES,
    MAX_MI_GROUP,
    MAX_RESPONSES,
    MAX_SAMPLES,
    MAX_SVI_STEPS,
    Progress,
    add_cache_argument,
    add_device_argument,
    add_model_argument,
    add_response_decoding_arguments,
    add_seed_argument,
    check_decoding_memory,
    check_memory,
    count,
    is_dialogue,
    load_model,
    load_split,
    number,
    output_file,
    parser_from_doc,
    require_dialogue_contract,
    require_label_key,
    response_decoding,
    run,
    span,
)

PROG = "textvae-eval"
SENTENCE_ONLY = ("--samples", "--prior-samples", "--mi-group", "--svi-steps", "--svi-lr", "--label-key")
DIALOGUE_ONLY = ("--responses", "--embeddings", "--act-tagger", "--domain-classifier", "--max-context", "--decode", "--temperature", "--top-k", "--top-p",
                 "--beam", "--allow-unk", "--prior-scale")


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    add_model_argument(parser)
    parser.add_argument("--data", required=True, type=Path, metavar="FILE",
                        help="prepared JSONL split: sentences for a sentence model, dialogues for a dialogue model")
    parser.add_argument("--batch-size", type=count(1, MAX_BATCH), default=32, metavar="N",
                        help=f"sentences (dialogues: contexts) per batch, {span(1, MAX_BATCH)}; K x N sequences "
                             "(N x responses) are decoded together (default 32); the figures do not depend on it")
    parser.add_argument("--max-sentences", type=count(1), metavar="N",
                        help="evaluate only the first N sentences (dialogues: context-response pairs), at least 1")
    parser.add_argument("--no-bleu", action="store_true",
                        help="skip generating: sentences, the reconstruction BLEU; dialogues, every metric of the "
                             "sampled responses (only NLL, PPL and KL remain)")
    add_seed_argument(parser, "every random draw")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    add_cache_argument(parser)
    add_device_argument(parser)
    sentences = parser.add_argument_group("sentence models")
    sentences.add_argument("--samples", type=count(1, MAX_IMPORTANCE_SAMPLES), metavar="K",
                           help=f"importance samples per sentence, {span(1, MAX_IMPORTANCE_SAMPLES)} (default 500, as "
                                "He et al. 2019)")
    sentences.add_argument("--prior-samples", type=count(0, MAX_SAMPLES), metavar="N",
                           help=f"sentences sampled from the prior for distinct-n and self-BLEU, 0 (none) or 2 to "
                                f"{MAX_SAMPLES:,} (default 100)")
    sentences.add_argument("--mi-group", type=count(2, MAX_MI_GROUP), metavar="G",
                           help=f"sentences per aggregate posterior of the mutual information, {span(2, MAX_MI_GROUP)} "
                                "(default 1000; the estimate is at most log G: compare models at one G)")
    sentences.add_argument("--svi-steps", type=count(0, MAX_SVI_STEPS), metavar="N",
                           help="also refine each posterior by N semi-amortised gradient steps (Kim et al. 2018) and "
                                "report the ELBO after them, the IW-NLL with them as the proposal, the amortisation "
                                "and approximation gaps (Cremer et al. 2018), and the refined posteriors' KL, MI and "
                                f"reconstruction BLEU; {span(0, MAX_SVI_STEPS)} (default 0)")
    sentences.add_argument("--svi-lr", type=number(0.0, 100.0, include_low=False), metavar="LR",
                           help="step size of --svi-steps, in (0, 100] (default 0.25)")
    sentences.add_argument("--label-key", metavar="KEY",
                           help="a model whose prior is a mixture: also score its components as clusters, "
                                "argmax_c p(c | z) at each posterior code, against the labels under KEY (label or "
                                "attributes.NAME): clustering accuracy and NMI (VaDE, Jiang et al. 2017)")
    dialogues = parser.add_argument_group("dialogue models")
    dialogues.add_argument("--responses", type=count(1, MAX_RESPONSES), metavar="N",
                           help=f"responses sampled per context, {span(1, MAX_RESPONSES)} (default 10, as Zhao et "
                                "al. 2017)")
    dialogues.add_argument("--embeddings", type=Path, metavar="FILE",
                           help="word vectors in the word2vec/GloVe text format for the embedding metrics "
                                "(nothing is downloaded)")
    dialogues.add_argument("--act-tagger", type=Path, metavar="DIR",
                           help="an act tagger saved by textvae-act-tagger: scores the dialog acts of the generated "
                                "responses (act match; act control for kgCVAE)")
    dialogues.add_argument("--domain-classifier", type=Path, metavar="DIR",
                           help="a classifier saved by textvae-classifier --label-key topic: scores the context "
                                "fidelity of the responses (domain share; slot values against the goal)")
    dialogues.add_argument("--max-context", type=count(1, MAX_CONTEXT), metavar="U",
                           help=f"context turns before each response, {span(1, MAX_CONTEXT)} (default: the export's "
                                f"max_context, else {DEFAULT_MAX_CONTEXT})")
    add_response_decoding_arguments(parser)
    return parser


def _given(args: argparse.Namespace, flags: tuple[str, ...]) -> list[str]:
    return [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) not in (None, False)]


def _write(args: argparse.Namespace, result) -> None:
    print(f"{args.model} on {args.data}")
    print(result.table())
    if args.json is not None:
        with atomic_output(args.json) as tmp:
            tmp.write_text(result.to_json() + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def _sentences(parser: argparse.ArgumentParser, args: argparse.Namespace, export: Export) -> None:
    if given := _given(args, DIALOGUE_ONLY):
        parser.error(f"{given[0]} applies to dialogue models; {args.model} is a sentence model")
    if args.prior_samples == 1:
        parser.error("argument --prior-samples: must be 0 (none) or >= 2 (self-BLEU compares samples)")
    model, tokenizer = export.model, export.tokenizer
    if detect_kind(args.data) != "sentences":
        parser.error(f"{args.data} holds dialogues but {args.model} is a sentence model; give a sentence split")
    require_label_key(parser, args.label_key)
    records = load_split(PROG, args.data, cache_dir=args.cache_dir, kind="sentences")
    if args.max_sentences is not None and args.max_sentences < len(records):
        records = records.select(range(args.max_sentences))
    if len(records) == 0:
        parser.error(f"{args.data}: no sentences to evaluate")
    cluster_labels = _cluster_labels(parser, args, export, records)
    # Evaluation does not use labels; the model's label names are kept when the data's fit them, and a
    # label the model never saw must not stop the evaluation.
    data_labels = {v for v in records["label"] if v is not None}
    labels = Vocab(export.labels) if export.labels and data_labels <= set(export.labels) else None
    with Progress(PROG, "sentences tokenised") as progress:
        dataset = SentenceDataset(records, tokenizer, max_len=model.max_words, labels=labels, source=str(args.data),
                                  progress=progress)
    samples = args.samples or 500
    _check_sentence_memory(parser, args, export, dataset, samples)
    with Progress(PROG, "sentences", len(dataset)) as progress:
        result = evaluate(model, dataset, samples=samples, batch_size=args.batch_size, seed=args.seed,
                          bleu=not args.no_bleu, tokenizer=tokenizer, device=args.device,
                          mi_group=args.mi_group or 1000, svi_steps=args.svi_steps or 0, svi_lr=args.svi_lr or 0.25,
                          progress=progress)
    prior_samples = 100 if args.prior_samples is None else args.prior_samples
    if prior_samples:
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        with Progress(PROG, "prior samples", prior_samples) as progress:
            result.prior = prior_sample_metrics(model, tokenizer, prior_samples, generator=generator,
                                                progress=progress)
    if cluster_labels is not None:
        result.clustering = clustering_metrics(model, tokenizer, records["text"], cluster_labels,
                                               label_key=args.label_key, batch_size=args.batch_size)
    _write(args, result)


def _cluster_labels(parser: argparse.ArgumentParser, args: argparse.Namespace, export: Export,
                    records) -> list[str | None] | None:
    """The labels --label-key asks the clusters to be scored against, checked before any work: a model
    without a mixture prior, or data without a label under the key, is a one-line error."""
    if args.label_key is None:
        return None
    try:
        mixture_prior(export.model)
    except ValueError as err:
        parser.error(f"--label-key: {err}")
    labels = label_values(records, args.label_key)
    if all(label is None for label in labels):
        parser.error(f"--label-key: no sentence of {args.data} has a label under {args.label_key!r}; give a key it "
                     "has (label or attributes.NAME)")
    return labels


def _check_sentence_memory(parser: argparse.ArgumentParser, args: argparse.Namespace, export: Export,
                           dataset: SentenceDataset, samples: int) -> None:
    """Refuse at once what memory cannot hold: one decoder pass over a batch (at least its N sentences'
    logits, however the model chunks the K samples), a batch's importance samples (noise and codes,
    K x N x Z), and the greedy reconstructions of a batch."""
    model, vocab = export.model, export.tokenizer.vocab_size
    longest = int(dataset.lengths.max()) + 1
    logits = max(LOGITS_BUDGET, args.batch_size * longest * vocab) * 4 * 3  # logits, log-softmax, gathered
    codes = samples * args.batch_size * model.latent_dim * 4 * 4  # noise and z, on the CPU and the device
    what = f"{samples:,} importance samples of" if model.latent_dim else "the likelihood of"
    check_memory(parser, logits + codes, args.device, what=f"{what} batches of {args.batch_size:,} sentences",
                 fix="lower --batch-size" + (" or --samples" if model.latent_dim else ""))
    if model.latent_dim and not args.no_bleu:
        check_decoding_memory(parser, args.batch_size, GREEDY, vocab, args.device, fix="lower --batch-size")


def _category(names: list[str]) -> Vocab | None:
    """The model's names for a category, so data ids mean what they meant in training (an unknown name in
    the data is then a one-line error); None when the export names none (ids are built from the data)."""
    return Vocab(names) if names else None


def _dialogues(parser: argparse.ArgumentParser, args: argparse.Namespace, export: Export) -> None:
    if given := _given(args, SENTENCE_ONLY):
        parser.error(f"{given[0]} applies to sentence models; {args.model} is a dialogue model "
                     "(its samples per context: --responses N)")
    model, tokenizer = export.model, export.tokenizer
    require_dialogue_contract(parser, args.model, export)
    if detect_kind(args.data) != "dialogues":
        parser.error(f"{args.data} holds sentences but {args.model} is a dialogue model; give a dialogue split")
    decoding = response_decoding(parser, args, model)
    vectors = None
    if args.embeddings is not None and not args.no_bleu:
        vocabulary = getattr(tokenizer, "tokens", None)  # a word tokenizer: only its words can be compared
        vectors = load_word_vectors(args.embeddings, set(vocabulary) if vocabulary is not None else None)
        if not vectors.index:
            raise DataError(f"{args.embeddings}: none of the model's words has a vector; is it the right file?")
    tagger = load_act_tagger(args.act_tagger) if args.act_tagger is not None and not args.no_bleu else None
    records = load_split(PROG, args.data, cache_dir=args.cache_dir, kind="dialogues")
    fidelity = None
    if args.domain_classifier is not None and not args.no_bleu:
        fidelity = domain_fidelity(parser, args, records)
    max_context = args.max_context or export.max_context or DEFAULT_MAX_CONTEXT
    max_len = export.max_len or model.max_words
    with Progress(PROG, "dialogues tokenised") as progress:
        dataset = DialogueDataset(records, tokenizer, max_context=max_context, max_len=max_len,
                                  acts=_category(export.acts), emotions=_category(export.emotions),
                                  topics=_category(export.topics), source=str(args.data), progress=progress)
    if len(dataset) == 0:
        parser.error(f"{args.data}: no context-response pairs (every dialogue has one turn)")
    responses = 0 if args.no_bleu else args.responses or 10
    contexts = min(len(dataset), args.max_sentences or len(dataset))
    if responses:
        check_decoding_memory(parser, min(args.batch_size, contexts) * responses, decoding, tokenizer.vocab_size,
                              args.device, fix="lower --batch-size, --responses, --beam or --max-len")
    with Progress(PROG, "contexts", contexts) as progress:
        result = evaluate_dialogues(model, dataset, tokenizer, responses=responses, batch_size=args.batch_size,
                                    seed=args.seed, decoding=decoding, embeddings=vectors,
                                    embeddings_source=str(args.embeddings), device=args.device,
                                    max_contexts=args.max_sentences, act_tagger=tagger,
                                    act_tagger_source=str(args.act_tagger), fidelity=fidelity, progress=progress)
    _write(args, result)


def domain_fidelity(parser: argparse.ArgumentParser, args: argparse.Namespace, records) -> FidelityTotals:
    """The counts of context fidelity (--domain-classifier) over the evaluated dialogue records."""
    classifier = load_classifier(args.domain_classifier,
                                 remedy="save one with textvae-classifier --label-key topic on the dialogues")
    if GENERAL not in classifier.labels:
        parser.error(f"--domain-classifier {args.domain_classifier} tells {', '.join(classifier.labels)}, not "
                     "domains: train it with textvae-classifier --label-key topic on the same corpus")
    if not any(dialogue.get("topic") for dialogue in records):
        parser.error(f"--domain-classifier: no dialogue of {args.data} has a topic (its domain) to compare with")
    return FidelityTotals(classifier, str(args.domain_classifier), GoalTracker(records))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    output_file(parser, "--json", args.json, "eval.json")
    export = load_model(parser, args.model, args.device)
    (_dialogues if is_dialogue(export) else _sentences)(parser, args, export)


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
