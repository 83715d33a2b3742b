import dataclasses
import math

import pytest
import torch
from torch import nn

from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.decoding import Decoding, beam_search, filter_logits, generate, greedy, sample
from textvae.models import LanguageModel, SentenceVAE

VOCAB = 30
A, B, C, D = 4, 5, 6, 7


def tiny_vae(architecture):
    torch.manual_seed(0)
    return SentenceVAE(vocab_size=VOCAB, architecture=architecture, embed_dim=16, hidden_dim=32, latent_dim=4,
                       num_heads=2).eval()


class Markov(nn.Module):
    """A decoder with hand-set next-token probabilities: row i of z picks table z[i, 0]; the state is the
    previous token. Records what it was fed, to check finished rows are fed PAD."""

    latent_dim = 1

    def __init__(self, tables):
        super().__init__()
        self.log_probs = nn.Parameter(torch.log(torch.tensor(tables) + 1e-9), requires_grad=False)  # (tables, V, V)
        self.fed = []

    def decoder_start(self, z, batch_size=None):
        return z[:, 0].long(), torch.full((z.shape[0],), BOS_ID)

    def decoder_step(self, tokens, state):
        table, _ = state
        self.fed.append(tokens.clone())
        return self.log_probs[table, tokens], (table, tokens)

    def decoder_reorder(self, state, index):
        return tuple(s.index_select(0, index) for s in state)


def markov():
    v = 8
    tables = torch.zeros(3, v, v)
    # table 0: greedy takes A (0.6) and then loops on A forever; beam finds B EOS (0.4 * 0.99)
    tables[0, BOS_ID, A], tables[0, BOS_ID, B] = 0.6, 0.4
    tables[0, A, A], tables[0, A, C], tables[0, A, EOS_ID] = 0.34, 0.33, 0.33
    tables[0, B, EOS_ID], tables[0, B, A] = 0.99, 0.01
    tables[0, C, EOS_ID] = 1.0
    # table 1: ends at once
    tables[1, BOS_ID, EOS_ID], tables[1, BOS_ID, A] = 0.9, 0.1
    tables[1, A, EOS_ID] = 1.0
    # table 2: the empty sentence is most likely in total (0.45), C D EOS (0.4455) per token
    tables[2, BOS_ID, EOS_ID], tables[2, BOS_ID, C] = 0.45, 0.55
    tables[2, C, D], tables[2, C, EOS_ID] = 0.9, 0.1
    tables[2, D, EOS_ID], tables[2, D, A] = 0.9, 0.1
    tables[2, A, EOS_ID] = 1.0
    tables[:, PAD_ID, PAD_ID] = 1.0
    tables[:, EOS_ID, PAD_ID] = 1.0
    return Markov(tables.tolist())


def table_z(*tables):
    return torch.tensor(tables, dtype=torch.float).unsqueeze(1)  # (B, 1)


def check_outputs(outputs, n, max_len):
    assert len(outputs) == n
    for ids in outputs:
        assert len(ids) <= max_len
        assert not {EOS_ID, PAD_ID, BOS_ID} & set(ids)


@pytest.mark.parametrize("architecture", ["lstm", "gru", "transformer"])
def test_greedy_is_argmax_step_by_step(architecture):
    model = tiny_vae(architecture)
    z = torch.randn(6, 4)
    out = greedy(model, z, max_len=7)
    check_outputs(out, 6, 7)
    with torch.no_grad():
        state = model.decoder_start(z)
        tokens = torch.full((6,), BOS_ID)
        expected = []
        for _ in range(7):
            logits, state = model.decoder_step(tokens, state)
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            tokens = logits.argmax(-1)
            expected.append(tokens)
    expected = torch.stack(expected, 1).tolist()
    for ids, row in zip(out, expected, strict=True):
        cut = row.index(EOS_ID) if EOS_ID in row else len(row)
        assert ids == row[:cut]


@pytest.mark.parametrize("architecture", ["lstm", "transformer"])
def test_beam_of_one_and_top_k_of_one_equal_greedy(architecture):
    model = tiny_vae(architecture)
    z = torch.randn(6, 4)
    expected = greedy(model, z, max_len=9)
    assert beam_search(model, z, max_len=9, beam_size=1) == expected
    assert sample(model, z, max_len=9, top_k=1, generator=torch.Generator().manual_seed(0)) == expected


@pytest.mark.parametrize("architecture", ["lstm", "transformer"])
def test_seeded_sampling_is_reproducible(architecture):
    model = tiny_vae(architecture)
    z = torch.randn(8, 4)
    a = sample(model, z, max_len=10, generator=torch.Generator().manual_seed(3))
    b = sample(model, z, max_len=10, generator=torch.Generator().manual_seed(3))
    c = sample(model, z, max_len=10, generator=torch.Generator().manual_seed(4))
    assert a == b and a != c
    check_outputs(a, 8, 10)
    nucleus = sample(model, z, max_len=10, temperature=0.7, top_k=5, top_p=0.9,
                     generator=torch.Generator().manual_seed(3))
    check_outputs(nucleus, 8, 10)


def test_top_p_keeps_the_minimal_nucleus():
    probs = torch.tensor([[0.1, 0.5, 0.15, 0.25]])
    logits = probs.log()

    def kept(**kwargs):
        return set(torch.isfinite(filter_logits(logits, **kwargs))[0].nonzero().flatten().tolist())

    assert kept(top_p=0.4) == {1}
    assert kept(top_p=0.6) == {1, 3}
    assert kept(top_p=0.8) == {1, 3, 2}
    assert kept(top_p=0.95) == {0, 1, 2, 3}
    assert kept(top_p=1.0) == {0, 1, 2, 3}
    assert kept(top_k=2) == {1, 3}
    assert kept(top_k=3, top_p=0.6) == {1, 3}
    kept_logits = filter_logits(logits, top_p=0.6)
    assert torch.equal(kept_logits[0, [1, 3]], logits[0, [1, 3]])
    with pytest.raises(ValueError):
        filter_logits(logits, top_p=0.0)


def test_rows_stop_at_eos_and_finished_rows_are_fed_pad():
    model = markov()
    out = greedy(model, table_z(1, 0), max_len=5)
    assert out == [[], [A] * 5]  # row 0 ends at once; row 1 never ends and is cut at max_len
    fed = torch.stack(model.fed, 1)  # (B, steps)
    assert fed[0].tolist() == [BOS_ID, EOS_ID] + [PAD_ID] * 3  # its last token, then PAD
    assert fed[1].tolist() == [BOS_ID] + [A] * 4
    model.fed.clear()
    assert greedy(model, table_z(1, 1), max_len=5) == [[], []]
    assert len(model.fed) == 1  # every row finished: the loop stops


def test_beam_search_beats_greedy_and_applies_the_length_penalty():
    model = markov()
    assert greedy(model, table_z(0), max_len=6) == [[A] * 6]
    assert beam_search(model, table_z(0, 1), max_len=6, beam_size=2) == [[B], []]
    assert greedy(model, table_z(2), max_len=6) == [[C, D]]
    assert beam_search(model, table_z(2), max_len=6, beam_size=3, length_penalty=0.0) == [[]]
    assert beam_search(model, table_z(2), max_len=6, beam_size=3, length_penalty=1.0) == [[C, D]]


@pytest.mark.parametrize("architecture", ["lstm", "gru", "transformer"])
def test_language_model_with_every_method(architecture):
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=VOCAB, architecture=architecture, embed_dim=16, hidden_dim=32, num_heads=2)
    model.train()
    for method in ("greedy", "beam", "sample"):
        out = generate(model, None, Decoding(method, max_len=6), batch_size=3,
                       generator=torch.Generator().manual_seed(0))
        check_outputs(out, 3, 6)
    assert model.training  # decoding switched dropout off and restored the mode
    assert generate(model, None, Decoding("beam", max_len=6, beam_size=1, allow_unk=True), batch_size=3) == greedy(
        model, None, 6, batch_size=3)
    with pytest.raises(ValueError):
        greedy(model, None, 6)


def test_generate_dispatches_and_validates():
    model = tiny_vae("lstm")
    z = torch.randn(4, 4)
    assert generate(model, z, Decoding("greedy", max_len=5, allow_unk=True)) == greedy(model, z, 5)
    assert generate(model, z, Decoding("beam", max_len=5, beam_size=3, allow_unk=True)) == beam_search(
        model, z, 5, beam_size=3)
    g = torch.Generator()
    nucleus = Decoding("sample", max_len=5, temperature=0.7, top_k=10, top_p=0.9, allow_unk=True)
    assert generate(model, z, nucleus, generator=g.manual_seed(1)) == sample(
        model, z, 5, temperature=0.7, top_k=10, top_p=0.9, generator=g.manual_seed(1))
    assert generate(model, z, Decoding("greedy", max_len=5)) == greedy(model, z, 5, banned=[UNK_ID])  # the default
    with pytest.raises(ValueError):
        greedy(model, z, 0)
    with pytest.raises(ValueError):
        sample(model, z, 5, temperature=0.0)


def test_decoding_defaults_and_checks():
    assert Decoding("beam") == Decoding("beam", temperature=1.0, top_k=0, top_p=1.0, beam_size=5, max_len=50,
                                        allow_unk=False, prior_scale=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Decoding("greedy").max_len = 3
    bad = [({"method": "nucleus"}, "method"), ({"temperature": 0.0}, "temperature"),
           ({"temperature": float("nan")}, "temperature"), ({"top_k": -1}, "top_k"), ({"top_k": 2.5}, "top_k"),
           ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"beam_size": 0}, "beam_size"),
           ({"max_len": 0}, "max_len"), ({"max_len": True}, "max_len"), ({"allow_unk": "no"}, "allow_unk"),
           ({"prior_scale": 0.0}, "prior_scale"), ({"prior_scale": float("inf")}, "prior_scale")]
    for change, name in bad:
        with pytest.raises(ValueError, match=f"^{name} must"):
            Decoding(**({"method": "sample"} | change))


def test_beam_search_log_probability_is_at_least_greedys():
    # length penalty 0 ranks by log p: on these tables beam search never does worse than greedy
    model = markov()
    z = table_z(0, 1, 2, 0)

    def log_p(row, ids):
        table, prev, total = int(z[row, 0]), BOS_ID, 0.0
        for token in [*ids, EOS_ID]:
            total += float(model.log_probs[table, prev, token])
            prev = token
        return total

    g, b = greedy(model, z, 6), beam_search(model, z, 6, beam_size=4, length_penalty=0.0)
    for row in range(4):
        if len(g[row]) < 6:
            assert log_p(row, b[row]) >= log_p(row, g[row]) - 1e-6
    assert math.isfinite(log_p(1, b[1]))


def test_banned_tokens_are_never_generated_by_any_method():
    model = markov()
    # table 0 without A: greedy and beam take B then EOS; sampling can only ever draw B (then EOS)
    assert greedy(model, table_z(0), max_len=6, banned=[A]) == [[B]]
    assert beam_search(model, table_z(0, 2), max_len=6, beam_size=2, banned=[A]) == [[B], [C, D]]
    drawn = sample(model, table_z(*[0] * 20), max_len=6, banned=[A], generator=torch.Generator().manual_seed(0))
    assert drawn == [[B]] * 20
    # <unk> is banned by a Decoding unless it allows it: from BOS, UNK (0.6) or B (0.4), then EOS
    tables = torch.zeros(1, 8, 8)
    tables[0, BOS_ID, UNK_ID], tables[0, BOS_ID, B] = 0.6, 0.4
    tables[0, UNK_ID, EOS_ID] = tables[0, B, EOS_ID] = tables[0, PAD_ID, PAD_ID] = tables[0, EOS_ID, PAD_ID] = 1.0
    unk_first = Markov(tables.tolist())
    for method in ("greedy", "beam", "sample"):
        assert generate(unk_first, table_z(0), Decoding(method, max_len=6)) == [[B]]
    assert generate(unk_first, table_z(0), Decoding("greedy", max_len=6, allow_unk=True)) == [[UNK_ID]]
    assert generate(unk_first, table_z(0), Decoding("beam", max_len=6, allow_unk=True)) == [[UNK_ID]]
    with pytest.raises(ValueError, match="EOS cannot be banned"):
        greedy(model, table_z(0), max_len=6, banned=[EOS_ID])
