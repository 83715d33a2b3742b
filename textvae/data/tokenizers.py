"""Tokenizers with fixed special ids: a word vocabulary (as in the PTB/Yahoo/Yelp papers), SentencePiece, and a
pretrained Hugging Face model's own tokenizer.

All map text to ids *without* BOS/EOS (batching adds them) and share the special ids below, so a
model never needs to know which tokenizer produced its data. A tokenizer saves to a folder as
``tokenizer.json`` (+ ``tokenizer.model`` for SentencePiece, a protobuf; + the Hugging Face tokenizer's
own JSON files in ``huggingface/``): plain data, never pickle.

The word tokenizer splits on whitespace only: published corpora (PTB, Yahoo, Yelp) are already
tokenised, and re-splitting them would change the token count that perplexity is divided by.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from textvae.data.records import DataError

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
# Spellings of "unknown word" that prepared corpora already contain (PTB "<unk>", Yahoo/Yelp "_UNK"):
# they are the corpus's own OOV token, so they map to UNK_ID rather than becoming a second one.
UNK_ALIASES = ("<unk>", "_UNK", "<UNK>")


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    fingerprint: str  # changes with anything that changes encode(): keys the cache of token ids

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def save(self, directory: str | os.PathLike) -> None: ...


def _strip_special(ids: Sequence[int], vocab_size: int) -> list[int]:
    """Drop PAD/BOS and cut at the first EOS: what decoding a generated sequence should show. An id outside
    the vocabulary is a ValueError (not the last token that a negative list index would give)."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if not 0 <= i < vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary (0 to {vocab_size - 1})")
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return out


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _text(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate (an undecodable byte of a command-line argument, under
    Python's surrogateescape) as U+FFFD: not text, so an unknown character, never an encoding error."""
    return _SURROGATE.sub("\ufffd", text)


class WordTokenizer:
    """Whitespace tokens with a frequency-cut vocabulary (``min_count``, ``max_size``)."""

    def __init__(self, tokens: Sequence[str], *, lowercase: bool = False):
        if list(tokens[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ValueError(f"the first tokens must be the special tokens {SPECIAL_TOKENS}")
        self.tokens = list(tokens)
        self.lowercase = lowercase
        self.index = {token: i for i, token in enumerate(self.tokens)}
        for alias in UNK_ALIASES:
            self.index.setdefault(alias, UNK_ID)
        # "<pad>", "<s>" or "</s>" written in a text is a word, not padding or a sentence boundary (which
        # batching alone adds): like any word outside the vocabulary it reads as <unk>, as SentencePiece
        # reads it as pieces
        self._encoding = self.index | {token: UNK_ID for token in SPECIAL_TOKENS}
        self.vocab_size = len(self.tokens)
        self.fingerprint = hashlib.sha256(json.dumps(["word", lowercase, self.tokens]).encode()).hexdigest()

    @classmethod
    def train(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None,
              lowercase: bool = False) -> WordTokenizer:
        """Keep words seen at least ``min_count`` times, the ``max_size`` most frequent (specials included)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        texts = iter(texts)
        while chunk := list(itertools.islice(texts, 10_000)):  # one split of many texts: the counting runs in C
            joined = "\n".join(chunk)
            counts.update(joined.lower().split() if lowercase else joined.split())
        for token in (*SPECIAL_TOKENS, *UNK_ALIASES):
            counts.pop(token, None)
        words = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
        if max_size is not None:
            if max_size <= len(SPECIAL_TOKENS):
                raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_size}")
            words = words[: max_size - len(SPECIAL_TOKENS)]
        if not words:
            raise DataError("no words to build a vocabulary from: the training texts are empty")
        return cls([*SPECIAL_TOKENS, *words], lowercase=lowercase)

    def encode(self, text: str) -> list[int]:
        words = text.lower().split() if self.lowercase else text.split()
        get = self._encoding.get
        return [get(w, UNK_ID) for w in words]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokens[i] for i in _strip_special(ids, self.vocab_size))

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"type": "word", "lowercase": self.lowercase, "tokens": self.tokens}
        (directory / "tokenizer.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")


class SentencePieceTokenizer:
    """SentencePiece (unigram or BPE) trained on the training split, with textvae's special ids."""

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = model_proto
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = (self.processor.pad_id(), self.processor.bos_id(), self.processor.eos_id(), self.processor.unk_id())
        if ids != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
            raise DataError(f"SentencePiece model has special ids {ids}; textvae needs "
                            f"pad/bos/eos/unk = {(PAD_ID, BOS_ID, EOS_ID, UNK_ID)}: train it with SentencePieceTokenizer.train")
        self.vocab_size = self.processor.get_piece_size()
        self.fingerprint = hashlib.sha256(b"sentencepiece/" + model_proto).hexdigest()

    def __reduce__(self):  # to the worker processes of a tokenising map: the model's bytes, not the processor
        return SentencePieceTokenizer, (self.model_proto,)

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 8000,
              model_type: Literal["unigram", "bpe"] = "unigram",
              character_coverage: float = 1.0) -> SentencePieceTokenizer:
        import io

        import sentencepiece as spm

        texts = [t for t in texts if t.strip()]
        if not texts:
            raise DataError("no text to train SentencePiece on: the training texts are empty")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                model_type=model_type, character_coverage=character_coverage,
                pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
                pad_piece=SPECIAL_TOKENS[0], bos_piece=SPECIAL_TOKENS[1], eos_piece=SPECIAL_TOKENS[2],
                unk_piece=SPECIAL_TOKENS[3], user_defined_symbols=[], hard_vocab_limit=False,
                num_threads=1, minloglevel=2,
            )
        except RuntimeError as err:  # e.g. a vocab_size the corpus cannot support
            raise DataError(f"SentencePiece training failed: {err}") from None
        return cls(model.getvalue())

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(_text(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.processor.decode(_strip_special(ids, self.vocab_size))

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tokenizer.model").write_bytes(self.model_proto)
        (directory / "tokenizer.json").write_text(json.dumps({"type": "sentencepiece"}), encoding="utf-8")


class HuggingFaceTokenizer:
    """A pretrained model's own tokenizer (``transformers``, a fast tokenizer from a local folder: GPT-2's byte-level
    BPE, BERT's WordPiece, ...) behind textvae's special ids: its id ``i`` is textvae's ``i + OFFSET``, and the four
    ids below :data:`OFFSET` are textvae's PAD, BOS, EOS and UNK (a pretrained decoder learns embeddings and output
    rows for those, as Optimus adds BOS/EOS/PAD to GPT-2). The model's own special tokens are not added:
    batching adds BOS and EOS. ``source`` is the folder (or a loaded ``transformers`` tokenizer)."""

    OFFSET = len(SPECIAL_TOKENS)

    def __init__(self, source: str | os.PathLike | object):
        if isinstance(source, (str, os.PathLike)):
            source = load_huggingface_tokenizer(source)
        self.hf = source
        self.vocab_size = len(self.hf) + self.OFFSET
        self.fingerprint = hashlib.sha256(b"huggingface/" + self.hf.backend_tokenizer.to_str().encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return [i + self.OFFSET for i in self.hf.encode(_text(text), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        own = [i - self.OFFSET for i in _strip_special(ids, self.vocab_size) if i >= self.OFFSET]  # <unk>: no text
        return self.hf.decode(own, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(directory / "huggingface"))
        (directory / "tokenizer.json").write_text(json.dumps({"type": "huggingface", "folder": "huggingface"}),
                                                  encoding="utf-8")


def load_huggingface_tokenizer(folder: str | os.PathLike):
    """The fast ``transformers`` tokenizer saved in a local folder (a model's folder, or one a
    :class:`HuggingFaceTokenizer` saved); nothing is downloaded. A DataError says what is missing."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataError("a pretrained model's tokenizer needs transformers: pip install -e '.[hf]'") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; give the local folder of a Hugging Face model or tokenizer")
    if not _huggingface_folder(folder):
        raise DataError(f"{folder}: no Hugging Face tokenizer here (tokenizer_config.json); give the local folder "
                        "of the model, as save_pretrained writes it")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{folder}: not a readable Hugging Face tokenizer ({str(err).splitlines()[0]})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"{folder}: only fast (Rust) tokenizers are supported; save it with a tokenizer.json")
    return tokenizer


def train_tokenizer(texts: Iterable[str], *, kind: Literal["word", "unigram", "bpe"] = "word",
                    min_count: int = 1, max_size: int | None = None, lowercase: bool = False,
                    vocab_size: int = 8000) -> WordTokenizer | SentencePieceTokenizer:
    """Build the tokenizer a training config names: a word vocabulary or a SentencePiece model."""
    if kind == "word":
        return WordTokenizer.train(texts, min_count=min_count, max_size=max_size, lowercase=lowercase)
    if kind in ("unigram", "bpe"):
        return SentencePieceTokenizer.train(texts, vocab_size=vocab_size, model_type=kind)
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose word, unigram or bpe")


def _huggingface_folder(directory: Path) -> bool:
    """A Hugging Face model or tokenizer folder (``tokenizer_config.json``) rather than one a textvae tokenizer saved."""
    return (directory / "tokenizer_config.json").is_file()


def load_tokenizer(directory: str | os.PathLike) -> WordTokenizer | SentencePieceTokenizer | HuggingFaceTokenizer:
    """Load a tokenizer saved with ``save`` from its folder, or a Hugging Face model's own tokenizer from that
    model's local folder (the tokenizer of a pretrained decoder, :mod:`textvae.models.pretrained`)."""
    path = Path(directory) / "tokenizer.json"
    if _huggingface_folder(Path(directory)):
        return HuggingFaceTokenizer(directory)
    if not path.is_file():
        raise DataError(f"{path}: no tokenizer here; a model export folder must contain tokenizer.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: corrupt tokenizer file ({err}); re-export the model") from None
    except RecursionError:  # JSON nested thousands deep: not a tokenizer, and no reason for a traceback
        raise DataError(f"{path}: corrupt tokenizer file (JSON nested too deeply); re-export the model") from None
    kind = config.get("type") if isinstance(config, dict) else None
    if kind == "word":
        tokens = config.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(f'{path}: corrupt tokenizer file ("tokens" must be a list of strings); re-export the model')
        try:
            return WordTokenizer(tokens, lowercase=bool(config.get("lowercase", False)))
        except ValueError as err:
            raise DataError(f"{path}: corrupt tokenizer file ({err}); re-export the model") from None
    if kind == "sentencepiece":
        model = Path(directory) / "tokenizer.model"
        if not model.is_file():
            raise DataError(f"{model}: missing SentencePiece model next to {path.name}")
        return SentencePieceTokenizer(model.read_bytes())
    if kind == "huggingface":
        folder = config.get("folder")
        if not isinstance(folder, str) or Path(folder).is_absolute() or ".." in Path(folder).parts:
            raise DataError(f'{path}: corrupt tokenizer file ("folder" must name a folder inside it); re-export the model')
        return HuggingFaceTokenizer(Path(directory) / folder)
    raise DataError(f"{path}: unknown tokenizer type {kind!r}; expected 'word', 'sentencepiece' or 'huggingface'")
