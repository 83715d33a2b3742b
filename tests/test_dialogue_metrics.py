"""Zhao et al. (2017)'s BLEU-n recall/precision and Liu et al. (2016)'s embedding metrics on hand-computed cases."""

import math

import pytest
import sacrebleu
import torch

from textvae.metrics import (
    bleu_recall_precision,
    embedding_average,
    embedding_extrema,
    embedding_greedy,
    f1_score,
    sentence_bleu_n,
)


def test_bleu_n_hand_computed():
    # p1 = 3/4; bigrams ab bc cd vs ab bx xd: p2 = 1/3; no 3- or 4-gram match: floor 0.1/2 and 0.1/1
    scores = sentence_bleu_n("a b c d", "a b x d")
    expected = [0.75, math.sqrt(0.75 / 3), (0.75 / 3 * 0.05) ** (1 / 3), (0.75 / 3 * 0.05 * 0.1) ** (1 / 4)]
    assert scores == pytest.approx(expected)
    assert scores[1] == pytest.approx(0.5)


def test_bleu_n_brevity_penalty_effective_order_and_clipping():
    bp = math.exp(1 - 3 / 2)  # 2 words against 3
    assert sentence_bleu_n("the cat", "the cat sat") == pytest.approx([bp] * 4)  # no 3-grams: scored on 1..2
    # "the" clipped to its one reference occurrence: p1 = 1/3; "the the" x2 never matches: 0.1/2; the one
    # trigram: 0.1/1; no 4-gram: BLEU-4 is scored on 1..3
    bleu_3 = (1 / 3 * 0.05 * 0.1) ** (1 / 3)
    assert sentence_bleu_n("the the the", "the cat") == pytest.approx([1 / 3, math.sqrt(1 / 3 * 0.05), bleu_3, bleu_3])
    assert sentence_bleu_n("x y", "a b") == [0.0] * 4
    assert sentence_bleu_n("", "a b") == [0.0] * 4
    assert sentence_bleu_n(["a", "b"], "a b") == pytest.approx([1.0] * 4)


def test_bleu_4_is_sacrebleu_sentence_bleu_with_floor_smoothing():
    pairs = [("the train leaves at ten .", "the train leaves at nine ."), ("i want a ticket", "a ticket please"),
             ("yes", "yes , please book it .")]
    for hyp, ref in pairs:
        reference = sacrebleu.sentence_bleu(hyp, [ref], smooth_method="floor", smooth_value=0.1, tokenize="none").score
        assert sentence_bleu_n(hyp, ref)[3] == pytest.approx(reference / 100)


def test_bleu_recall_is_the_max_and_precision_the_mean_over_samples():
    recall, precision = bleu_recall_precision(["a b c d", "y z", "a b x d"], "a b x d", max_order=2)
    assert recall == pytest.approx([1.0, 1.0])
    assert precision == pytest.approx([(0.75 + 0 + 1) / 3, (0.5 + 0 + 1) / 3])
    with pytest.raises(ValueError):
        bleu_recall_precision([], "a")


def test_f1():
    assert f1_score(0.5, 1.0) == pytest.approx(2 / 3)
    assert f1_score(0.0, 0.0) == 0.0


def test_embedding_metrics_hand_computed():
    hyp = torch.tensor([[1.0, -3.0], [2.0, 1.0]])
    ref = torch.tensor([[1.0, 1.0]])
    # mean (1.5, -1) vs (1, 1)
    assert embedding_average(hyp, ref) == pytest.approx(0.5 / (math.sqrt(3.25) * math.sqrt(2)))
    # extrema: dim 0 max 2 (|1| < 2), dim 1 min -3 (|-3| > 1): (2, -3) vs (1, 1)
    assert embedding_extrema(hyp, ref) == pytest.approx(-1 / (math.sqrt(13) * math.sqrt(2)))
    # cosines of the hypothesis words with the one reference word
    c1, c2 = -2 / (math.sqrt(10) * math.sqrt(2)), 3 / (math.sqrt(5) * math.sqrt(2))
    assert embedding_greedy(hyp, ref) == pytest.approx(((c1 + c2) / 2 + max(c1, c2)) / 2)
    assert embedding_greedy(ref, hyp) == pytest.approx(embedding_greedy(hyp, ref))  # symmetric
    for metric in (embedding_average, embedding_extrema, embedding_greedy):
        assert metric(hyp, hyp) == pytest.approx(1.0)
        with pytest.raises(ValueError):
            metric(hyp[:0], ref)
        with pytest.raises(ValueError):
            metric(hyp, torch.ones(1, 3))
