import random

import torch

from textvae.data.batching import (
    BucketBatchSampler,
    DialogueExample,
    SentenceExample,
    collate_dialogues,
    collate_sentences,
    pad,
)
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID


def lengths(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 40, (n,), generator=g).tolist()


def test_bucketing_yields_every_example_exactly_once():
    lens = lengths(1003)
    sampler = BucketBatchSampler(lens, batch_size=16, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1003))
    assert all(1 <= len(b) <= 16 for b in batches)


def test_bucketing_groups_similar_lengths():
    lens = lengths(2000)
    padded = sum(len(b) * max(lens[i] for i in b) for b in BucketBatchSampler(lens, 32, seed=0))
    rng = torch.Generator().manual_seed(0)
    order = torch.randperm(2000, generator=rng).tolist()
    random_padded = sum(32 * max(lens[i] for i in order[s:s + 32]) for s in range(0, 2000, 32))
    assert padded < 0.75 * random_padded


def test_bucketing_epochs_reshuffle_and_are_deterministic():
    lens = lengths(500)
    a = BucketBatchSampler(lens, 8, seed=3)
    first = list(a)
    assert list(BucketBatchSampler(lens, 8, seed=3)) == first
    a.set_epoch(1)
    assert list(a) != first


def test_bucketing_drop_last_and_no_shuffle():
    lens = lengths(100)
    sampler = BucketBatchSampler(lens, 8, shuffle=False, drop_last=True, pool_batches=100)
    batches = list(sampler)
    assert all(len(b) == 8 for b in batches) and len(batches) == len(sampler) == 12


def test_bucketing_splits_across_ranks_with_equal_step_counts():
    lens = lengths(205)
    ranks = [list(BucketBatchSampler(lens, 10, seed=5, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1
    assert all(len(r) == len(BucketBatchSampler(lens, 10, num_replicas=3, rank=0)) for r in ranks)
    covered = {i for r in ranks for b in r for i in b}
    assert covered == set(range(205))


def test_collate_sentences_adds_bos_eos_and_pads():
    batch = collate_sentences([SentenceExample([5, 6, 7], 1, 0), SentenceExample([8], None, 1)])
    assert batch.tokens.tolist() == [[BOS_ID, 5, 6, 7, EOS_ID], [BOS_ID, 8, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.lengths.tolist() == [5, 3]
    assert batch.labels.tolist() == [1, -1]
    assert batch.inputs.shape == batch.targets.shape == (2, 4)
    assert batch.target_mask.sum().item() == batch.num_targets == 4 + 2  # words + EOS
    assert collate_sentences([SentenceExample([5], None, 0)]).labels is None


def test_pad_matches_row_by_row_padding():
    rng = random.Random(0)
    sequences = [[rng.randrange(1, 50) for _ in range(rng.randrange(0, 9))] for _ in range(40)] + [[]]
    tokens, lengths = pad(sequences)
    width = max(map(len, sequences))
    assert tokens.tolist() == [s + [PAD_ID] * (width - len(s)) for s in sequences]
    assert lengths.tolist() == [len(s) for s in sequences] and tokens.dtype == lengths.dtype == torch.long
    assert pad([[3]], length=4)[0].tolist() == [[3, PAD_ID, PAD_ID, PAD_ID]]  # at least ``length`` wide
    assert pad([[3, 4, 5]], length=2)[0].tolist() == [[3, 4, 5]]  # never cut
    empty, none = pad([], length=2)
    assert empty.shape == (0, 2) and none.shape == (0,)
    assert pad([[], []])[0].shape == (2, 0)


def test_collate_dialogues_matches_turn_by_turn_filling():
    rng = random.Random(1)

    def ids(n):
        return [rng.randrange(4, 60) for _ in range(n)]

    examples = []
    for i in range(23):
        turns = rng.randrange(1, 6)
        examples.append(DialogueExample(context=[ids(rng.randrange(0, 9)) for _ in range(turns)],
                                        context_floor=[rng.randrange(2) for _ in range(turns)],
                                        response=ids(rng.randrange(0, 7)), act=None, emotion=None, topic=None, index=i))
    batch = collate_dialogues(examples)
    max_turns = max(len(e.context) for e in examples)
    width = max(len(t) + 2 for e in examples for t in e.context)
    context = [[[PAD_ID] * width for _ in range(max_turns)] for _ in examples]
    lengths = [[0] * max_turns for _ in examples]
    floor = [[0] * max_turns for _ in examples]
    for i, e in enumerate(examples):
        for u, turn in enumerate(e.context):
            context[i][u][: len(turn) + 2] = [BOS_ID, *turn, EOS_ID]
            lengths[i][u] = len(turn) + 2
        floor[i][: len(e.context_floor)] = e.context_floor
    assert batch.context.tolist() == context
    assert batch.context_lengths.tolist() == lengths and batch.context_floor.tolist() == floor
    assert batch.context_turns.tolist() == [len(e.context) for e in examples]
    assert batch.response_lengths.tolist() == [len(e.response) + 2 for e in examples]


def test_collate_dialogues_shapes_and_floor():
    examples = [
        DialogueExample(context=[[5, 6], [7]], context_floor=[1, 0], response=[8, 9, 10], act=2,
                        emotion=None, topic=0, index=0),
        DialogueExample(context=[[11]], context_floor=[0], response=[12], act=None, emotion=None,
                        topic=1, index=1),
    ]
    batch = collate_dialogues(examples)
    assert batch.context.shape == (2, 2, 4)  # (B, U, T)
    assert batch.context[0, 0].tolist() == [BOS_ID, 5, 6, EOS_ID]
    assert batch.context[1, 1].tolist() == [PAD_ID] * 4
    assert batch.context_lengths.tolist() == [[4, 3], [3, 0]]
    assert batch.context_turns.tolist() == [2, 1]
    assert batch.context_floor.tolist() == [[1, 0], [0, 0]]
    assert batch.response.tolist() == [[BOS_ID, 8, 9, 10, EOS_ID], [BOS_ID, 12, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.acts.tolist() == [2, -1] and batch.emotions is None and batch.topics.tolist() == [0, 1]
    assert batch.num_targets == 4 + 2
