"""One text classifier: multinomial logistic regression on bags of word n-grams or on dense feature vectors.

p(y | x) = softmax(phi(x) W + b) over C labels, fit by full-batch L-BFGS (Liu & Nocedal 1989) on

    mean_i -log p(y_i | x_i) + l2 / 2 ||W||^2        (the bias is not penalised)

a strictly convex objective: the fit has one optimum, reached the same way whatever the order of the
data, with no batch size or learning rate to choose. Its gradient is written out, (softmax - one-hot)
propagated through phi(x), so a sparse phi costs two sparse products per step.

phi(x) is one of:

* **texts**: the presence (0/1) of each word unigram and bigram, with sentence boundaries (so "? </s>" is
  a feature), that at least ``min_count`` training texts contain: the bigram baseline of Wang & Manning
  (2012). Text is lower-cased and split on whitespace, the form in which the corpora come tokenised and
  the models decode; an n-gram never seen in training (``<unk>`` included) carries no feature, and a text
  with none gets the bias alone (the most frequent label).
* **dense vectors** (N, D), e.g. posterior means: standardised with the training mean and deviation.

It serves as a linear probe of what a code encodes (:func:`textvae.metrics.linear_probe`), as the dialog
act tagger (:mod:`textvae.act_tagger`; Zhao et al. 2017, sec. 5), and as the judge of controlled
generation: the fraction of sentences generated for a label that it assigns that label (Hu et al. 2017),
``classifier.accuracy(generated, requested)``.

Saved as ``classifier.json`` (format, version, labels, n-grams) + ``classifier.safetensors``, never
pickled. Folders of the first act tagger (``act_tagger.json`` + ``act_tagger.safetensors``, whose phi is
the mean of the text's n-gram one-hots) load as classifiers with that phi.

Notation: N examples, B batch, D features, C labels.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from textvae.data.records import DataError, atomic_output

CONFIG, WEIGHTS = "classifier.json", "classifier.safetensors"
FORMAT, VERSION = "textvae-classifier", 1
ACT_TAGGER_CONFIG, ACT_TAGGER_WEIGHTS = "act_tagger.json", "act_tagger.safetensors"  # the first act tagger's files
ACT_TAGGER_FORMAT = "textvae-act-tagger"

L2 = 1e-4  # 1 / N for the 10,000 sentences of yelp10k: scikit-learn's C = 1 there
L2_GRID = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)  # what tune_classifier chooses among
MAX_STEPS = 1000  # L-BFGS iterations; the fits here converge in 20 to 200
HISTORY = 10  # L-BFGS curvature pairs kept: 2 x HISTORY copies of W
Weighting = Literal["presence", "mean"]  # an n-gram's value: 1 if the text has it; count / the text's known n-grams


def ngrams(text: str) -> list[str]:
    """The unigrams and bigrams of a text, with <s> and </s> bigrams at its ends."""
    words = text.lower().split()
    padded = ["<s>", *words, "</s>"]
    return words + [f"{a} {b}" for a, b in zip(padded, padded[1:], strict=False)]


def ngram_vocabulary(texts: Iterable[str], min_count: int = 2) -> list[str]:
    """The n-grams (sorted) that at least ``min_count`` of ``texts`` contain."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(g for text in texts for g in set(ngrams(text)))
    return sorted(g for g, c in counts.items() if c >= min_count)


class Classified(NamedTuple):
    labels: list[str]  # the most likely label of each text
    probabilities: Tensor  # (N, C) p(y | x), columns in the order of Classifier.labels


class Classifier(nn.Module):
    """p(y | x) = softmax(phi(x) W + b) over ``labels``: of texts over ``ngrams`` (see the module doc), or
    of dense vectors of ``dim`` features (give exactly one of the two)."""

    def __init__(self, labels: Sequence[str], *, ngrams: Sequence[str] | None = None, dim: int | None = None,
                 weighting: Weighting = "presence"):
        super().__init__()
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"a classifier needs distinct labels, got {list(labels)[:10]}")
        if (ngrams is None) == (dim is None):
            raise ValueError("give a classifier either ngrams (it classifies texts) or dim (dense vectors)")
        if weighting not in ("presence", "mean"):
            raise ValueError(f"weighting must be 'presence' or 'mean', got {weighting!r}")
        self.labels = list(labels)
        self.ngrams = None if ngrams is None else list(ngrams)
        self.weighting = weighting
        self.index = {g: i for i, g in enumerate(self.ngrams or ())}
        dim = len(self.ngrams) if self.ngrams is not None else dim
        self.weight = nn.Parameter(torch.zeros(dim, len(self.labels)))  # (D, C)
        self.bias = nn.Parameter(torch.zeros(len(self.labels)))  # (C,)
        if self.ngrams is None:  # standardisation of dense inputs, set by training
            self.register_buffer("mean", torch.zeros(dim))  # (D,)
            self.register_buffer("std", torch.ones(dim))  # (D,)

    @property
    def dim(self) -> int:
        return self.weight.shape[0]

    def features(self, inputs: Sequence[str] | Tensor) -> Tensor:
        """phi(x): texts -> a sparse CSR (B, D); dense vectors (B, D) -> standardised (B, D)."""
        device = self.weight.device
        if self.ngrams is None:
            if not isinstance(inputs, Tensor) or inputs.dim() != 2 or inputs.shape[1] != self.dim:
                raise ValueError(f"this classifier reads vectors of shape (B, {self.dim}), got "
                                 f"{tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__}")
            return (inputs.detach().to(device, torch.float32) - self.mean) / self.std
        if isinstance(inputs, Tensor | str):
            raise ValueError("this classifier reads a list of texts")
        rows, columns, values = [0], [], []
        for text in inputs:
            counts = Counter(i for g in ngrams(text) if (i := self.index.get(g)) is not None)
            total = sum(counts.values())
            for i in sorted(counts):
                columns.append(i)
                values.append(1.0 if self.weighting == "presence" else counts[i] / total)
            rows.append(len(columns))
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": products and transposes are all we use
            warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
            return torch.sparse_csr_tensor(torch.tensor(rows), torch.tensor(columns, dtype=torch.long),
                                           torch.tensor(values, dtype=torch.float32), (len(inputs), self.dim),
                                           device=device, check_invariants=False)  # built sorted, in range

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, C) of phi(x) (B, D), sparse or dense."""
        return x @ self.weight + self.bias

    @torch.no_grad()
    def probabilities(self, inputs: Sequence[str] | Tensor, batch_size: int = 4096) -> Tensor:
        """p(y | x): (N, C), columns in the order of ``labels``."""
        out = [torch.softmax(self(self.features(inputs[start:start + batch_size])), -1)
               for start in range(0, len(inputs), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, len(self.labels), device=self.weight.device)

    def predict(self, inputs: Sequence[str] | Tensor) -> list[int]:
        """The most likely label id of each input."""
        return self.probabilities(inputs).argmax(-1).tolist()

    def classify(self, texts: Sequence[str] | Tensor) -> Classified:
        """The most likely label name of each text (or vector), and p(y | x) (N, C)."""
        probabilities = self.probabilities(texts)
        return Classified([self.labels[i] for i in probabilities.argmax(-1).tolist()], probabilities)

    def accuracy(self, inputs: Sequence[str] | Tensor, labels: Sequence[str]) -> float:
        """Fraction of ``inputs`` assigned their label in ``labels``: gold labels, or for generated text the
        labels it was generated for. A label the classifier does not know is a ValueError."""
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        if not len(inputs):
            raise ValueError("no labelled inputs to score the classifier on")
        if unknown := sorted(set(labels) - set(self.labels)):
            raise ValueError(f"the classifier does not know the label(s) {', '.join(map(str, unknown[:10]))} "
                             f"(it knows {', '.join(self.labels)}); train it on the same corpus")
        return sum(self.labels[p] == y for p, y in zip(self.predict(inputs), labels, strict=True)) / len(labels)


# ---------------------------------------------------------------------------------------------------
# Training


def _fit(classifier: Classifier, x: Tensor, y: Tensor, *, l2: float, max_steps: int) -> None:
    """Minimise the objective of the module doc over W, b from their current values (at most ``max_steps``
    L-BFGS iterations); x (N, D) sparse CSR or dense, y (N,) label ids."""
    weight, bias = classifier.weight, classifier.bias
    xt = x.t().to_sparse_csr() if x.layout == torch.sparse_csr else x.T  # (D, N)
    one_hot = torch.nn.functional.one_hot(y, len(classifier.labels)).float()  # (N, C)
    n = len(y)

    def closure() -> Tensor:
        with torch.no_grad():
            log_p = torch.log_softmax(x @ weight + bias, -1)  # (N, C)
            loss = -(log_p * one_hot).sum() / n + l2 / 2 * weight.pow(2).sum()
            error = (log_p.exp() - one_hot) / n  # (N, C): d mean CE / d logits
            weight.grad = xt @ error + l2 * weight  # (D, C)
            bias.grad = error.sum(0)
        return loss

    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_steps, history_size=HISTORY,
                                  line_search_fn="strong_wolfe")
    optimizer.step(closure)


def _targets(classifier: Classifier, labels: Sequence[str]) -> Tensor:
    index = {name: i for i, name in enumerate(classifier.labels)}
    return torch.tensor([index[label] for label in labels], device=classifier.weight.device)


def _new(inputs: Sequence[str] | Tensor, labels: Sequence[str], *, ngrams: Sequence[str] | None,
         min_count: int) -> Classifier:
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    if not len(inputs):
        raise DataError("no labelled examples to train the classifier on")
    names = sorted(set(labels), key=str)
    if isinstance(inputs, Tensor):
        if inputs.dim() != 2:
            raise ValueError(f"dense inputs must be (N, D), got {tuple(inputs.shape)}")
        classifier = Classifier(names, dim=inputs.shape[1])
        x = inputs.detach().float()
        classifier.mean.copy_(x.mean(0))
        classifier.std.copy_(x.std(0).nan_to_num(1.0).clamp_min(1e-6))  # one example: std NaN -> 1
        return classifier
    return Classifier(names, ngrams=ngram_vocabulary(inputs, min_count) if ngrams is None else ngrams)


def train_classifier(inputs: Sequence[str] | Tensor, labels: Sequence[str], *, l2: float = L2, min_count: int = 2,
                     ngrams: Sequence[str] | None = None, max_steps: int = MAX_STEPS) -> Classifier:
    """Fit a classifier on (input, label name) pairs: texts (over the n-grams of at least ``min_count``
    texts, or ``ngrams`` if given) or dense vectors (N, D). ``l2``: the weight penalty, > 0."""
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 (without it separable data has no optimum), got {l2}")
    classifier = _new(inputs, labels, ngrams=ngrams, min_count=min_count)
    _fit(classifier, classifier.features(inputs), _targets(classifier, labels), l2=l2, max_steps=max_steps)
    return classifier.eval()


class Tuned(NamedTuple):
    classifier: Classifier  # trained with the best l2
    l2: float
    accuracies: dict[float, float]  # l2 -> validation accuracy


def tune_classifier(inputs: Sequence[str] | Tensor, labels: Sequence[str], valid_inputs: Sequence[str] | Tensor,
                    valid_labels: Sequence[str], *, grid: Sequence[float] = L2_GRID, min_count: int = 2,
                    ngrams: Sequence[str] | None = None, max_steps: int = MAX_STEPS) -> Tuned:
    """:func:`train_classifier` with the ``l2`` of ``grid`` that is most accurate on the validation pairs
    (ties: the larger l2). Each fit starts from the previous one's optimum, strongest penalty first."""
    if not grid or not all(value > 0 for value in grid):
        raise ValueError(f"the l2 grid must hold values > 0, got {list(grid)}")
    classifier = _new(inputs, labels, ngrams=ngrams, min_count=min_count)
    if unknown := sorted(set(valid_labels) - set(classifier.labels)):
        raise DataError(f"validation label(s) {', '.join(map(str, unknown[:10]))} never occur in the training "
                        "data; train and validate on splits of the same corpus")
    x, y = classifier.features(inputs), _targets(classifier, labels)
    valid_x, valid_y = classifier.features(valid_inputs), _targets(classifier, valid_labels)
    accuracies: dict[float, float] = {}
    best = None
    for l2 in sorted(set(grid), reverse=True):
        _fit(classifier, x, y, l2=l2, max_steps=max_steps)
        with torch.no_grad():
            accuracies[l2] = (classifier(valid_x).argmax(-1) == valid_y).double().mean().item()
        if best is None or accuracies[l2] > accuracies[best[0]]:
            best = (l2, {k: v.clone() for k, v in classifier.state_dict().items()})
    classifier.load_state_dict(best[1])
    return Tuned(classifier.eval(), best[0], accuracies)


def training_bytes(num_features: int, num_labels: int, nonzeros: int, examples: int) -> int:
    """About the most memory :func:`train_classifier` takes: W, its gradient, the L-BFGS history and line
    search copies (2 HISTORY + 4 copies of (D, C)), phi(x) and its transpose (sparse: nonzeros, or dense
    N x D), and the (N, C) logits, probabilities and errors, all float32 (ids int64)."""
    parameters = (2 * HISTORY + 4) * (num_features + 1) * num_labels * 4
    return parameters + 2 * nonzeros * 12 + 2 * examples * 8 + 4 * examples * num_labels * 4


# ---------------------------------------------------------------------------------------------------
# Labelled text of a prepared corpus


class LabelledTexts(NamedTuple):
    texts: list[str]
    labels: list[str]
    unlabelled: int  # sentences or turns without a label under the key, left out


SENTENCE_KEYS = "'label' or 'attributes.NAME'"
TURN_KEYS = ("act", "emotion", "topic")


def labelled_texts(records, key: str, kind: Literal["sentences", "dialogues"]) -> LabelledTexts:
    """The (text, label) pairs of loaded records (:func:`textvae.data.datasets.load_records`) under ``key``:
    a sentence's ``label`` or ``attributes.NAME``, a turn's ``act`` or ``emotion``, or its domain (``topic``:
    the dialogue's topic, or ``general`` for a turn that occurs alike under several topics,
    :func:`textvae.fidelity.domain_turns`). What has no label under the key is counted, not returned."""
    from textvae.data.datasets import label_values

    if kind == "sentences":
        if key in ("act", "emotion"):  # "topic" may be meant as attributes.topic: label_values says so
            raise DataError(f"label key {key!r} is a dialogue turn's; sentences have {SENTENCE_KEYS}")
        pairs = zip(records["text"], label_values(records, key), strict=True)
    else:
        if key not in TURN_KEYS:
            raise DataError(f"label key {key!r}: dialogue turns have 'act', 'emotion' or 'topic'")
        if key == "topic":
            from textvae.fidelity import domain_turns

            texts, domains = domain_turns(records)
            turns = sum(len(dialogue["turns"]) for dialogue in records)
            return LabelledTexts(texts, domains, turns - len(texts))
        pairs = ((turn["text"], turn.get(key)) for dialogue in records for turn in dialogue["turns"])
    texts, labels, unlabelled = [], [], 0
    for text, label in pairs:
        if label is None:
            unlabelled += 1
        else:
            texts.append(text)
            labels.append(str(label))
    return LabelledTexts(texts, labels, unlabelled)


# ---------------------------------------------------------------------------------------------------
# Saving and loading


def save_classifier(directory: str | os.PathLike, classifier: Classifier, info: dict | None = None) -> Path:
    """Write ``classifier.json`` + ``classifier.safetensors`` to ``directory`` (made if missing)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    config = {"format": FORMAT, "version": VERSION, "labels": classifier.labels, "dim": classifier.dim,
              "ngrams": classifier.ngrams, "weighting": classifier.weighting, "info": info or {}}
    # each file whole or not at all; the config last, so a new folder holds no config without its weights
    with atomic_output(directory / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()}, str(tmp))
    with atomic_output(directory / CONFIG) as tmp:
        tmp.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return directory


def _read_config(path: Path, remedy: str) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: corrupt ({err}); {remedy}") from None
    except RecursionError:  # JSON nested thousands deep
        raise DataError(f"{path}: corrupt (JSON nested too deeply); {remedy}") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: not a textvae classifier (a JSON object expected); {remedy}")
    return config


def load_classifier(directory: str | os.PathLike, *, remedy: str = "save one with textvae-classifier") -> Classifier:
    """Load a saved classifier, or a folder of the first act tagger; a missing, corrupt or newer one is a
    :class:`DataError` that ends with ``remedy``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if (directory / CONFIG).is_file() or not (directory / ACT_TAGGER_CONFIG).is_file():
        config_path, weights_path = directory / CONFIG, directory / WEIGHTS
    else:
        config_path, weights_path = directory / ACT_TAGGER_CONFIG, directory / ACT_TAGGER_WEIGHTS
    if not config_path.is_file():
        raise DataError(f"{directory}: no {CONFIG}; is it a classifier folder? ({remedy})")
    config = _read_config(config_path, remedy)
    old = config.get("format") == ACT_TAGGER_FORMAT and config.get("version") == 1
    if not old and config.get("format") != FORMAT:
        raise DataError(f"{config_path}: not a textvae classifier (format {FORMAT!r} expected); {remedy}")
    if not old and not (isinstance(config.get("version"), int) and 1 <= config["version"] <= VERSION):
        raise DataError(f"{config_path}: classifier format version {config.get('version')!r}, this textvae reads "
                        f"1 to {VERSION}; upgrade textvae or {remedy}")
    try:
        if old:  # EmbeddingBag(mode="mean") over the n-grams: weight.weight (max(D, 1), C), bias (C,)
            tensors = load_file(str(weights_path))
            classifier = Classifier(config["acts"], ngrams=config["features"], weighting="mean")
            tensors = {"weight": tensors["weight.weight"][:classifier.dim], "bias": tensors["bias"]}
        else:
            tensors = load_file(str(weights_path))
            ngrams_ = config["ngrams"]
            classifier = Classifier(config["labels"], ngrams=ngrams_, weighting=config["weighting"],
                                    dim=config["dim"] if ngrams_ is None else None)
        classifier.load_state_dict(tensors)
    except FileNotFoundError:
        raise DataError(f"{directory}: no {weights_path.name}; {remedy}") from None
    except (SafetensorError, KeyError, TypeError, ValueError, RuntimeError, OSError) as err:
        raise DataError(f"{directory}: cannot load the classifier ({type(err).__name__}: {err}); {remedy}") from None
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise DataError(f"{weights_path}: weights that are not finite; {remedy}")
    return classifier.eval()
