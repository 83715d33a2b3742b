"""Typed batches, padding collators and a length-bucketing batch sampler.

Notation: B batch, T tokens, U context turns. Every token sequence is ``BOS w_1 .. w_n EOS`` padded
with ``PAD_ID``; ``lengths`` count BOS and EOS. A decoder reads ``tokens[:, :-1]`` and predicts
``tokens[:, 1:]``, so the NLL of a sentence sums over its n words *and* EOS (the papers' definition).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID


class SentenceBatch(NamedTuple):
    tokens: Tensor  # (B, T) BOS .. EOS, PAD after
    lengths: Tensor  # (B,) tokens including BOS and EOS
    labels: Tensor | None  # (B,) label ids, -1 where unlabelled; None if the corpus has no labels
    index: Tensor  # (B,) position of each example in its dataset

    @property
    def inputs(self) -> Tensor:  # (B, T-1) what the decoder reads
        return self.tokens[:, :-1]

    @property
    def targets(self) -> Tensor:  # (B, T-1) what it predicts
        return self.tokens[:, 1:]

    @property
    def target_mask(self) -> Tensor:  # (B, T-1) True on real targets (words and EOS)
        return self.targets != PAD_ID

    @property
    def num_targets(self) -> int:  # words + EOS over the batch: the perplexity denominator
        return int((self.lengths - 1).sum())


class DialogueBatch(NamedTuple):
    context: Tensor  # (B, U, T) previous turns, oldest first, each BOS .. EOS; padded turns all PAD
    context_lengths: Tensor  # (B, U) tokens per context turn, 0 for padded turns
    context_turns: Tensor  # (B,) real context turns (>= 1)
    context_floor: Tensor  # (B, U) 1 where the context turn's speaker is the responder, else 0
    response: Tensor  # (B, T) BOS .. EOS
    response_lengths: Tensor  # (B,)
    acts: Tensor | None  # (B,) response dialog act id, -1 if unknown; None if the corpus has no acts
    emotions: Tensor | None  # (B,) response emotion id, -1 if unknown
    topics: Tensor | None  # (B,) dialogue topic id, -1 if unknown
    index: Tensor  # (B,) position of each example in its dataset
    profiles: Tensor | None = None  # (B, P) speaker profiles (textvae.data.profiles), None if the corpus has none

    @property
    def inputs(self) -> Tensor:  # (B, T-1)
        return self.response[:, :-1]

    @property
    def targets(self) -> Tensor:  # (B, T-1)
        return self.response[:, 1:]

    @property
    def target_mask(self) -> Tensor:  # (B, T-1)
        return self.targets != PAD_ID

    @property
    def num_targets(self) -> int:
        return int((self.response_lengths - 1).sum())


def with_bos_eos(ids: Sequence[int]) -> list[int]:
    return [BOS_ID, *ids, EOS_ID]


def pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into (B, T) with PAD_ID; returns (tokens, lengths). One flat copy and one masked
    assignment rather than a tensor per row: a batch of 2,048 sentences collates in milliseconds."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    width = max(int(lengths.max()) if len(sequences) else 0, length or 0)
    out = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
    total = int(lengths.sum())
    if total:  # row-major: the mask's True cells, in order, are the sequences' ids, in order
        out[np.arange(width) < lengths[:, None]] = np.fromiter(chain.from_iterable(sequences), dtype=np.int64,
                                                               count=total)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def _ids_or_none(values: Sequence[int | None]) -> Tensor | None:
    if all(v is None for v in values):
        return None
    return torch.tensor([-1 if v is None else v for v in values], dtype=torch.long)


class SentenceExample(NamedTuple):
    ids: list[int]  # word/piece ids without BOS/EOS
    label: int | None
    index: int


class DialogueExample(NamedTuple):
    context: list[list[int]]  # up to K previous turns, oldest first, ids without BOS/EOS
    context_floor: list[int]  # 1 where that turn's speaker is the responder
    response: list[int]
    act: int | None
    emotion: int | None
    topic: int | None
    index: int
    profile: list[float] | None = None  # the responder's and the other caller's features (textvae.data.profiles)


def batch_to(batch: SentenceBatch | DialogueBatch, device: torch.device | str) -> SentenceBatch | DialogueBatch:
    """The same batch with every tensor on ``device`` (None and other fields as they are)."""
    return type(batch)(*(t.to(device) if isinstance(t, Tensor) else t for t in batch))


def collate_sentences(examples: Sequence[SentenceExample]) -> SentenceBatch:
    tokens, lengths = pad([with_bos_eos(e.ids) for e in examples])
    return SentenceBatch(tokens=tokens, lengths=lengths, labels=_ids_or_none([e.label for e in examples]),
                         index=torch.tensor([e.index for e in examples], dtype=torch.long))


def collate_dialogues(examples: Sequence[DialogueExample]) -> DialogueBatch:
    b = len(examples)
    turns_per = np.fromiter((len(e.context) for e in examples), dtype=np.int64, count=b)
    max_turns = int(turns_per.max()) if b else 0
    # every context turn of the batch padded at once, (N, T), then placed at its (example, turn) cell
    turns, turn_lengths = pad([with_bos_eos(turn) for e in examples for turn in e.context])
    example_of = torch.from_numpy(np.repeat(np.arange(b), turns_per))
    turn_of = torch.arange(len(turns)) - torch.from_numpy(np.repeat(np.cumsum(turns_per) - turns_per, turns_per))
    context = torch.full((b, max_turns, turns.shape[1]), PAD_ID, dtype=torch.long)  # (B, U, T)
    context[example_of, turn_of] = turns
    context_lengths = torch.zeros((b, max_turns), dtype=torch.long)
    context_lengths[example_of, turn_of] = turn_lengths
    floor = torch.zeros((b, max_turns), dtype=torch.long)
    floor_per = np.fromiter((len(e.context_floor) for e in examples), dtype=np.int64, count=b)
    floor_mask = torch.from_numpy(np.arange(max_turns) < floor_per[:, None])
    floor[floor_mask] = torch.as_tensor([f for e in examples for f in e.context_floor], dtype=torch.long)
    response, response_lengths = pad([with_bos_eos(e.response) for e in examples])
    return DialogueBatch(
        context=context, context_lengths=context_lengths,
        context_turns=torch.tensor([len(e.context) for e in examples], dtype=torch.long),
        context_floor=floor, response=response, response_lengths=response_lengths,
        acts=_ids_or_none([e.act for e in examples]), emotions=_ids_or_none([e.emotion for e in examples]),
        topics=_ids_or_none([e.topic for e in examples]),
        index=torch.tensor([e.index for e in examples], dtype=torch.long),
        profiles=_profiles_or_none([e.profile for e in examples]),
    )


def _profiles_or_none(profiles: Sequence[Sequence[float] | None]) -> Tensor | None:
    """(B, P) with zeros (unknown) for an example without one; None if no example has one."""
    given = [p for p in profiles if p is not None]
    if not given:
        return None
    width = len(given[0])
    if any(len(p) != width for p in given):
        raise ValueError(f"speaker profiles of different sizes in one batch: {sorted({len(p) for p in given})}")
    return torch.tensor([list(p) if p is not None else [0.0] * width for p in profiles], dtype=torch.float)


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length, so little compute is spent on padding.

    Indices are shuffled, cut into pools of ``batch_size * pool_batches``, each pool sorted by length
    and cut into batches, and the batches shuffled. Every index appears in exactly one batch per epoch
    (the last batch of a pool may be smaller unless ``drop_last``). Call ``set_epoch`` to reshuffle.

    With ``num_replicas > 1`` (DDP, several nodes) the shuffled indices are first dealt out to the ranks (rank r
    takes every r-th), and each rank buckets only its own shard: the ranks' examples are disjoint and together
    every example, once an epoch. A rank with a batch fewer repeats its first one, so every rank runs the same
    number of steps (collectives would otherwise hang).

    Memory: the lengths (as given; a dataset holds them in 1 to 4 bytes an example) and one epoch's order of
    this rank's shard (4 bytes an example);
    the batches are cut from that order as they are read.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, pool_batches: int = 50, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths)
        if self.lengths.dtype.kind not in "iu":
            self.lengths = self.lengths.astype(np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.pool_batches = pool_batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches_of(self, size: int) -> int:
        """How many batches a shard of ``size`` examples is cut into (pools are cut independently)."""
        pool = self.batch_size * self.pool_batches
        whole, rest = divmod(size, pool)
        cut = rest // self.batch_size if self.drop_last else -(-rest // self.batch_size)
        return whole * self.pool_batches + cut

    def _shard(self, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The shard of ``rank`` in bucketed order, and its batches as (start, end) rows into it, in epoch order."""
        n = len(self.lengths)
        order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        if self.shuffle:
            rng.shuffle(order)
        if self.num_replicas > 1:
            order = np.ascontiguousarray(order[rank::self.num_replicas])
        pool = self.batch_size * self.pool_batches
        bounds = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk[:] = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            starts = np.arange(start, start + len(chunk), self.batch_size)
            bounds.append(np.stack([starts, np.minimum(starts + self.batch_size, start + len(chunk))], axis=1))
        batches = np.concatenate(bounds) if bounds else np.zeros((0, 2), dtype=np.int64)
        if self.drop_last:
            batches = batches[batches[:, 1] - batches[:, 0] == self.batch_size]
        if self.shuffle:
            batches = batches[rng.permutation(len(batches))]
        return order, batches

    def __iter__(self) -> Iterator[list[int]]:
        # one generator per epoch, the same on every rank: the ranks deal out one shuffle
        order, batches = self._shard(self.rank, np.random.default_rng([self.seed, self.epoch]))
        steps = len(self)
        if len(batches) == 0 and steps:  # fewer examples than ranks: run rank 0's batches, so collectives match
            order, batches = self._shard(0, np.random.default_rng([self.seed, self.epoch]))
        for k in range(steps if self.num_replicas > 1 else len(batches)):
            start, end = batches[k % len(batches)]
            yield order[start:end].tolist()

    def __len__(self) -> int:
        largest = -(-len(self.lengths) // self.num_replicas)  # the first rank's shard
        return self._batches_of(largest)
