"""textvae-classifier: train a text classifier on a corpus' labels, to tell which label generated text carries.

The classifier (textvae.classifier: a logistic regression over word unigrams and bigrams, fit by L-BFGS)
learns the labels of a prepared corpus: a sentence's label or one of its attributes (--label-key label or
attributes.NAME), a dialogue turn's dialog act (act, the default for dialogues), emotion, or domain (topic:
the dialogue's topic, or "general" for a turn that occurs alike in dialogues of several topics; what
textvae-eval --domain-classifier reads to score context fidelity). Text without
a label under the key is counted, reported and left out. --valid chooses the L2 penalty among 1e-2 to
1e-6 by accuracy on a validation split; --test reports the accuracy on held-out text next to always
answering the most frequent training label: the figure to read the label accuracy of controlled
generation against. The saved folder (--out) scores generated text:
textvae.classifier.load_classifier(DIR).classify(texts). With stderr a terminal, a training that takes more
than a few seconds shows that it is running; Ctrl-C stops with "interrupted" and exit code 130.

Examples:
  textvae-classifier --data data/yelp10k/train.jsonl --valid data/yelp10k/valid.jsonl --test data/yelp10k/test.jsonl --min-count 1 --out runs/yelp10k_sentiment
  textvae-classifier --data data/synthetic-sentences/train.jsonl --label-key attributes.topic --test data/synthetic-sentences/test.jsonl --out runs/synthetic_topic
  textvae-classifier --data data/dailydialog-lite/train.jsonl --label-key emotion --out runs/dailydialog_lite_emotion
  textvae-classifier --data data/synthetic-dialogues/train.jsonl --label-key topic --test data/synthetic-dialogues/test.jsonl --out runs/synthetic_domain_classifier
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from textvae.classifier import (
    L2,
    L2_GRID,
    MAX_STEPS,
    Classifier,
    labelled_texts,
    ngram_vocabulary,
    ngrams,
    save_classifier,
    train_classifier,
    training_bytes,
    tune_classifier,
)
from textvae.data.records import DataError, detect_kind
from tools._cli import (
    MAX_EPOCHS,
    Progress,
    add_cache_argument,
    check_memory,
    count,
    load_split,
    number,
    parser_from_doc,
    printable,
    run,
    span,
)

PROG = "textvae-classifier"
MAX_MIN_COUNT = 1_000_000_000  # above the texts of any corpus: no n-gram kept, the classifier says the majority label
MAX_L2 = 1e3  # a penalty this strong leaves W at 0: the majority label
DEFAULT_KEYS = {"sentences": "label", "dialogues": "act"}
UNITS = {"sentences": "sentences", "dialogues": "turns"}


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--data", required=True, type=Path, metavar="FILE",
                        help="prepared sentence or dialogue JSONL split to train on")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to save the classifier to")
    parser.add_argument("--label-key", metavar="KEY",
                        help="sentences: label or attributes.NAME (default label); dialogue turns: act (default), "
                             "emotion or topic (the turn's domain)")
    parser.add_argument("--valid", type=Path, metavar="FILE",
                        help="split of the same corpus to choose the L2 penalty on (instead of --l2)")
    parser.add_argument("--test", type=Path, metavar="FILE", help="split of the same corpus to score it on")
    parser.add_argument("--l2", type=number(0.0, MAX_L2, include_low=False), metavar="L",
                        help=f"L2 penalty (l2 / 2) ||W||^2 on the mean cross-entropy, in (0, {MAX_L2:g}] "
                             f"(default {L2:g})")
    parser.add_argument("--min-count", type=count(1, MAX_MIN_COUNT), default=2, metavar="C",
                        help=f"keep the n-grams of at least C training texts, {span(1, MAX_MIN_COUNT)} (default 2)")
    parser.add_argument("--steps", type=count(1, MAX_EPOCHS), default=MAX_STEPS, metavar="S",
                        help=f"L-BFGS iterations at most, each a pass over the data, {span(1, MAX_EPOCHS)} "
                             f"(default {MAX_STEPS:,}; it stops once converged)")
    add_cache_argument(parser)
    return parser


class Split(NamedTuple):
    path: Path
    kind: str  # sentences or dialogues
    key: str
    texts: list[str]
    labels: list[str]
    unlabelled: int

    @property
    def unit(self) -> str:
        return UNITS[self.kind]


def read_split(path: Path, key: str | None, cache_dir: Path | None, *, kind: str | None = None,
               hint: str = "choose another --label-key", prog: str = PROG) -> Split:
    """The labelled texts of a prepared split under ``key`` (None: the kind's default); ``kind``: the kind
    the split must hold (that of the training split); ``hint``: what to do when nothing has a label; ``prog``:
    the tool that shows the progress of a first cache build."""
    found = detect_kind(path)
    if kind is not None and found != kind:
        raise DataError(f"{path} holds {found} but the training data holds {kind}; give a split of the same corpus")
    key = key or DEFAULT_KEYS[found]
    texts, labels, unlabelled = labelled_texts(load_split(prog, path, cache_dir=cache_dir, kind=found), key, found)
    if not texts:
        raise DataError(f"{path}: no {UNITS[found][:-1]} has a label under {key!r}; {hint}")
    return Split(path, found, key, texts, labels, unlabelled)


def _note_unlabelled(split: Split) -> None:
    if split.unlabelled:
        print(f"  left out {split.unlabelled:,} {split.unit} of {split.path} without a label under {split.key!r}")


def _known(split: Split | None, train: Split) -> None:
    """A one-line error for labels of a validation or test split that training never saw."""
    if split is not None and (unknown := sorted(set(split.labels) - set(train.labels))):
        shown = ", ".join(printable(label) for label in unknown[:10])
        raise DataError(f"{split.path}: label(s) {shown} never occur in {train.path}; use splits of the same corpus")


def _chance(train: Split, split: Split) -> tuple[str, float]:
    """Always answering the most frequent training label (ties: the first in sorted order) on ``split``."""
    counts = Counter(train.labels)
    majority = max(sorted(counts), key=counts.__getitem__)
    return majority, sum(label == majority for label in split.labels) / len(split.labels)


def fit_and_save(parser: argparse.ArgumentParser, train: Split, out: Path, *, valid: Split | None = None,
                 test: Split | None = None, l2: float | None = None, min_count: int = 2, steps: int = MAX_STEPS,
                 info: dict | None = None) -> Classifier:
    """Train on ``train`` (L2 chosen on ``valid`` when given, else ``l2``), print the accuracies, save to ``out``."""
    _known(valid, train)
    _known(test, train)
    vocabulary = ngram_vocabulary(train.texts, min_count)
    nonzeros = sum(len(ngrams(text)) for text in train.texts)  # an upper bound: unseen n-grams are dropped
    check_memory(parser, training_bytes(len(vocabulary), len(set(train.labels)), nonzeros, len(train.texts)), "cpu",
                 what=f"a classifier of {len(vocabulary):,} n-grams", fix="raise --min-count")
    start = time.perf_counter()
    with Progress(parser.prog, f"training on {len(train.texts):,} {train.unit}"):
        if valid is None:
            l2 = L2 if l2 is None else l2
            classifier = train_classifier(train.texts, train.labels, l2=l2, ngrams=vocabulary, max_steps=steps)
            accuracies = None
        else:
            classifier, l2, accuracies = tune_classifier(train.texts, train.labels, valid.texts, valid.labels,
                                                         ngrams=vocabulary, max_steps=steps)
    seconds = time.perf_counter() - start
    names = ", ".join(printable(label) for label in classifier.labels[:10])
    more = f", ... {len(classifier.labels) - 10} more" if len(classifier.labels) > 10 else ""
    print(f"trained on {len(train.texts):,} {train.unit} of {train.path} in {seconds:.1f} s: {len(classifier.labels)} "
          f"labels under {train.key!r} ({names}{more}), {len(vocabulary):,} n-gram features, L2 {l2:g}")
    _note_unlabelled(train)
    info = {**(info or {}), "data": str(train.path), "label_key": train.key, "examples": len(train.texts),
            "unlabelled": train.unlabelled, "min_count": min_count, "l2": l2, "max_steps": steps,
            "train_accuracy": classifier.accuracy(train.texts, train.labels)}
    print(f"  train accuracy {info['train_accuracy']:.3f}")
    if valid is not None:
        info |= {"valid": str(valid.path), "valid_accuracy": accuracies[l2],
                 "valid_accuracy_by_l2": {f"{k:g}": v for k, v in accuracies.items()}}
        grid = ", ".join(f"{k:g} {v:.3f}" for k, v in accuracies.items())
        print(f"  validation accuracy by L2 on {len(valid.texts):,} {valid.unit} of {valid.path}: {grid}")
        _note_unlabelled(valid)
    if test is not None:
        majority, chance = _chance(train, test)
        info |= {"test": str(test.path), "test_accuracy": classifier.accuracy(test.texts, test.labels),
                 "test_chance": chance}
        print(f"  test accuracy {info['test_accuracy']:.3f} on {len(test.texts):,} {test.unit} of {test.path} "
              f"(always {printable(majority)!r}: {chance:.3f})")
        _note_unlabelled(test)
    else:
        majority, chance = _chance(train, train)
        print(f"  (always {printable(majority)!r} on the training {train.unit}: {chance:.3f})")
    save_classifier(out, classifier, info)
    print(f"saved {out}")
    return classifier


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.valid is not None and args.l2 is not None:
        parser.error("give --l2 or --valid (which chooses the L2 penalty among "
                     f"{', '.join(f'{v:g}' for v in L2_GRID)}), not both")
    train = read_split(args.data, args.label_key, args.cache_dir)
    valid = None if args.valid is None else read_split(args.valid, train.key, args.cache_dir, kind=train.kind)
    test = None if args.test is None else read_split(args.test, train.key, args.cache_dir, kind=train.kind)
    fit_and_save(parser, train, args.out, valid=valid, test=test, l2=args.l2, min_count=args.min_count,
                 steps=args.steps)


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
