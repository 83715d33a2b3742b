"""A dialog act tagger for text: what labels *generated* responses with an act (Zhao et al. 2017, sec. 5).

kgCVAE decodes for a chosen act; whether the words it wrote carry that act is a question about the text,
so the evaluation asks a tagger trained on the corpus' gold acts, independent of the model under test.
It is the text classifier of :mod:`textvae.classifier` (logistic regression over the turn's word unigrams
and bigrams) trained on the acts of the turns: its labels are the acts, and its accuracy on held-out
gold turns is reported next to every score that uses it. Saved and loaded as that classifier; the
folders of the first act tagger (``act_tagger.json`` + ``act_tagger.safetensors``) load too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from textvae.classifier import (
    MAX_STEPS,
    Classifier,
    labelled_texts,
    load_classifier,
    ngrams,
    save_classifier,
    train_classifier,
)
from textvae.data.records import DataError

__all__ = ["ActTagger", "load_act_tagger", "ngrams", "save_act_tagger", "tagged_turns", "train_act_tagger"]

REMEDY = "save one with textvae-act-tagger"
# chosen among textvae.classifier.L2_GRID by accuracy on 200 DailyDialog training dialogues held out of the
# other 800 (0.748; the classifier's default 1e-4: 0.730)
ACT_L2 = 1e-3


class ActTagger(Classifier):
    """The classifier trained on dialog acts, under the names the dialogue evaluation reads."""

    @classmethod
    def of(cls, classifier: Classifier) -> ActTagger:
        """The same classifier as an act tagger (its labels are acts)."""
        tagger = cls(classifier.labels, ngrams=classifier.ngrams, weighting=classifier.weighting)
        tagger.load_state_dict(classifier.state_dict())
        return tagger.eval()

    @property
    def acts(self) -> list[str]:
        return self.labels

    def tag(self, texts: Sequence[str]) -> list[int]:
        """The most likely act id of each text."""
        return self.predict(texts)


def tagged_turns(dialogues: Iterable[dict]) -> tuple[list[str], list[str]]:
    """(texts, act names) of every turn with a gold act, from loaded dialogue records."""
    texts, acts, _ = labelled_texts(dialogues, "act", "dialogues")
    return texts, acts


def train_act_tagger(texts: Sequence[str], acts: Sequence[str], *, min_count: int = 2, l2: float = ACT_L2,
                     max_steps: int = MAX_STEPS) -> ActTagger:
    """Fit a tagger on gold (text, act name) pairs; n-grams seen in fewer than ``min_count`` turns are left out."""
    if not texts and not acts:
        raise DataError("no turn has a dialog act: the act tagger needs a corpus with acts (DailyDialog, Switchboard)")
    return ActTagger.of(train_classifier(texts, acts, l2=l2, min_count=min_count, max_steps=max_steps))


def save_act_tagger(directory: str | os.PathLike, tagger: Classifier, info: dict | None = None) -> Path:
    """:func:`textvae.classifier.save_classifier`: a tagger is saved as the classifier it is."""
    return save_classifier(directory, tagger, info)


def load_act_tagger(directory: str | os.PathLike) -> ActTagger:
    """Load a saved tagger; a missing or corrupt folder is a :class:`DataError` that says what to do."""
    classifier = load_classifier(directory, remedy=REMEDY)
    if classifier.ngrams is None:
        raise DataError(f"{directory}: a classifier of vectors, not of text; {REMEDY}")
    return ActTagger.of(classifier)
