"""A dialog act tagger for text: what labels *generated* responses with an act (Zhao et al. 2017, sec. 5).

kgCVAE decodes for a chosen act; whether the words it wrote carry that act is a question about the text,
so the evaluation asks a tagger trained on the corpus' gold acts, independent of the model under test.
It is a logistic regression over the turn's bag of word unigrams and bigrams (with sentence boundaries,
so "? </s>" is a feature): fast, deterministic, and on DailyDialog's four acts about as good as
the text allows (its accuracy on held-out gold turns is reported next to every score that uses it).

Text is lower-cased and split on whitespace, the form in which the corpora come tokenised and the
dialogue models decode; words the tagger never saw (``<unk>`` included) carry no feature.

Saved as ``act_tagger.json`` (features, act names) + ``act_tagger.safetensors``, never pickled.

Notation: F features, A acts, L feature ids of a batch.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textvae.data.records import DataError

CONFIG, WEIGHTS = "act_tagger.json", "act_tagger.safetensors"
FORMAT, VERSION = "textvae-act-tagger", 1


def ngrams(text: str) -> list[str]:
    """The unigrams and bigrams of a turn, with <s> and </s> bigrams at its ends."""
    words = text.lower().split()
    padded = ["<s>", *words, "</s>"]
    return words + [f"{a} {b}" for a, b in zip(padded, padded[1:], strict=False)]


class ActTagger(nn.Module):
    """p(act | text) = softmax(W mean(feature vectors) + b) over the text's known n-grams."""

    def __init__(self, features: Sequence[str], acts: Sequence[str]):
        super().__init__()
        if not acts:
            raise ValueError("an act tagger needs at least one act")
        self.features, self.acts = list(features), list(acts)
        self.index = {f: i for i, f in enumerate(self.features)}
        self.weight = nn.EmbeddingBag(max(len(self.features), 1), len(self.acts), mode="mean")
        self.bias = nn.Parameter(torch.zeros(len(self.acts)))
        nn.init.zeros_(self.weight.weight)

    def featurize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """(ids (L,), offsets (B,), has_any (B,) bool): the known n-grams of each text, concatenated."""
        ids: list[int] = []
        offsets, has_any = [], []
        for text in texts:
            offsets.append(len(ids))
            ids.extend(i for g in ngrams(text) if (i := self.index.get(g)) is not None)
            has_any.append(len(ids) > offsets[-1])
        device = self.bias.device
        return (torch.tensor(ids, dtype=torch.long, device=device), torch.tensor(offsets, device=device),
                torch.tensor(has_any, device=device))

    def forward(self, ids: Tensor, offsets: Tensor) -> Tensor:
        """Logits (B, A); a text with no known n-gram gets the bias alone (the most frequent act)."""
        return self.weight(ids, offsets) + self.bias

    @torch.no_grad()
    def tag(self, texts: Sequence[str], batch_size: int = 4096) -> list[int]:
        """The most likely act id of each text."""
        out: list[int] = []
        for start in range(0, len(texts), batch_size):
            ids, offsets, _ = self.featurize(texts[start:start + batch_size])
            out += self(ids, offsets).argmax(-1).tolist()
        return out

    def accuracy(self, texts: Sequence[str], acts: Sequence[str]) -> float:
        """Fraction of ``texts`` tagged with their gold act name."""
        if not texts:
            raise ValueError("no tagged texts to score the act tagger on")
        return sum(self.acts[t] == a for t, a in zip(self.tag(texts), acts, strict=True)) / len(texts)


def tagged_turns(dialogues: Iterable[dict]) -> tuple[list[str], list[str]]:
    """(texts, act names) of every turn with a gold act, from loaded dialogue records."""
    texts, acts = [], []
    for dialogue in dialogues:
        for turn in dialogue["turns"]:
            if turn.get("act") is not None:
                texts.append(turn["text"])
                acts.append(turn["act"])
    return texts, acts


def train_act_tagger(texts: Sequence[str], acts: Sequence[str], *, min_count: int = 2, epochs: int = 10,
                     batch_size: int = 64, lr: float = 0.05, weight_decay: float = 1e-5,
                     seed: int = 0) -> ActTagger:
    """Fit a tagger on gold (text, act name) pairs; n-grams seen fewer than ``min_count`` times are left out."""
    if len(texts) != len(acts):
        raise ValueError(f"{len(texts)} texts but {len(acts)} acts")
    if not texts:
        raise DataError("no turn has a dialog act: the act tagger needs a corpus with acts (DailyDialog, Switchboard)")
    counts = Counter(g for text in texts for g in set(ngrams(text)))
    features = sorted(g for g, c in counts.items() if c >= min_count)
    names = sorted(set(acts))
    tagger = ActTagger(features, names)
    act_id = {a: i for i, a in enumerate(names)}
    targets = torch.tensor([act_id[a] for a in acts])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        for batch in torch.randperm(len(texts), generator=generator).split(batch_size):
            ids, offsets, _ = tagger.featurize([texts[i] for i in batch.tolist()])
            loss = F.cross_entropy(tagger(ids, offsets), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return tagger.eval()


def save_act_tagger(directory: str | os.PathLike, tagger: ActTagger, info: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "version": VERSION, "acts": tagger.acts, "features": tagger.features,
              "info": info or {}}
    (directory / CONFIG).write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in tagger.state_dict().items()}, str(directory / WEIGHTS))
    return directory


def load_act_tagger(directory: str | os.PathLike) -> ActTagger:
    """Load a saved tagger; a missing or corrupt folder is a :class:`DataError` that says what to do."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    remedy = "save one with textvae-act-tagger"
    try:
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{directory}: no {CONFIG}; is it an act tagger folder? ({remedy})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{directory / CONFIG}: corrupt ({err}); {remedy}") from None
    except RecursionError:  # JSON nested thousands deep
        raise DataError(f"{directory / CONFIG}: corrupt (JSON nested too deeply); {remedy}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{directory / CONFIG}: not a textvae act tagger (format {FORMAT!r} expected); {remedy}")
    try:
        tagger = ActTagger(config["features"], config["acts"])
        tagger.load_state_dict(load_file(str(directory / WEIGHTS)))
    except FileNotFoundError:
        raise DataError(f"{directory}: no {WEIGHTS}; {remedy}") from None
    except (SafetensorError, KeyError, TypeError, ValueError, RuntimeError, OSError) as err:
        raise DataError(f"{directory}: cannot load the act tagger ({type(err).__name__}: {err}); {remedy}") from None
    return tagger.eval()
