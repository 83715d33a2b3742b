"""The diversity–relevance frontier (textvae.frontier) on the tiny trained dialogue exports: one point per
decoding setting, metrics in range, diversity rising with HRED's sampling temperature; dominance and the
mean over seeds by hand."""

import pytest

from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.decoding import Decoding
from textvae.export import load_export
from textvae.frontier import (
    FrontierPoint,
    covers,
    decoding_sweep,
    dominates,
    frontier,
    over_seeds,
    plot_frontier,
)


def dataset_of(exports, export):
    records = load_records(exports.data, cache_dir=exports.data.parent / "frontier_cache")
    return DialogueDataset(records, export.tokenizer, max_context=export.max_context, max_len=export.max_len,
                           acts=Vocab(export.acts), emotions=Vocab(export.emotions), topics=Vocab(export.topics))


def test_sweep_settings_per_kind_of_model(dialogue_exports):
    hred, cvae = load_export(dialogue_exports.hred).model, load_export(dialogue_exports.cvae).model
    hred_settings = decoding_sweep(hred)
    assert [d.method for d in hred_settings].count("sample") == 6 + 1  # six temperatures, one nucleus
    assert {d.method for d in hred_settings} == {"greedy", "sample", "beam"}
    latent = decoding_sweep(cvae, prior_scales=(2.0,), scaled_temperatures=(0.5, 0.9))
    assert Decoding("greedy", prior_scale=2.0) in latent and all(d.method != "beam" for d in latent)
    unscaled = [d for d in latent if d.method == "sample" and d.prior_scale == 1.0]
    assert {d.temperature for d in unscaled} == {d.temperature for d in hred_settings}
    scaled = [(d.method, d.temperature) for d in latent if d.prior_scale == 2.0]
    assert scaled == [("greedy", 1.0), ("sample", 0.5), ("sample", 0.9)]  # z and word temperatures swept together
    assert len(latent) == len(set(latent)) == 1 + 6 + 1 + 3
    nucleus = decoding_sweep(cvae, prior_scales=(2.0,), scaled_temperatures=(0.5,), scaled_top_ps=(0.9,))
    assert [(d.method, d.temperature, d.top_p) for d in nucleus if d.prior_scale == 2.0] == [
        ("greedy", 1.0, 1.0), ("sample", 0.5, 1.0), ("sample", 1.0, 0.9)]


def test_frontier_points_and_monotone_diversity_in_temperature(dialogue_exports, tmp_path):
    export = load_export(dialogue_exports.hred)
    settings = [Decoding("sample", temperature=t, max_len=12) for t in (0.05, 1.0, 5.0)] + [
        Decoding("greedy", max_len=12)]
    points = frontier(export.model, dataset_of(dialogue_exports, export), export.tokenizer, settings, responses=5,
                      max_contexts=12)
    assert [p.decoding for p in points] == settings  # one point per setting, in order
    for p in points:
        assert len(p.bleu_f1) == 4 and all(0.0 <= b <= 1.0 for b in p.bleu_f1)
        assert all(0.0 <= d <= 1.0 for d in (p.distinct_1_within, p.distinct_2_within, p.distinct_1, p.distinct_2))
    sampled = points[:3]  # diversity rises with the temperature (distinct-2 overall is left out: near greedy,
    # this 30-step model answers in single words, whose few bigrams are all distinct)
    assert sampled[0].distinct_1 < sampled[1].distinct_1 < sampled[2].distinct_1
    assert sampled[0].distinct_1_within < sampled[1].distinct_1_within < sampled[2].distinct_1_within
    assert sampled[0].distinct_2_within < sampled[1].distinct_2_within <= sampled[2].distinct_2_within
    # greedy decoding gives the same response N times: nothing distinct within a context beyond one response
    assert points[3].distinct_2_within <= sampled[2].distinct_2_within
    plot_frontier({"HRED": points}, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def point(bleu1, within, overall):
    return FrontierPoint("s", Decoding("greedy"), [bleu1, 0.0, 0.0, 0.0], 0.0, within, 0.0, overall)


def test_dominance_by_hand():
    a, b, c = point(0.3, 0.8, 0.4), point(0.2, 0.7, 0.4), point(0.35, 0.5, 0.2)
    assert dominates(a, b) and not dominates(b, a) and dominates(a, a)
    assert not dominates(a, c) and not dominates(c, a)  # a trade-off: neither is at least as good on all
    assert covers([a], [b]) == [] and covers([a], [b, c]) == [c] and covers([a, c], [b, c]) == []
    with pytest.raises(ValueError, match="at least 2 responses"):
        frontier(None, None, None, [], responses=1)


def test_over_seeds_by_hand():
    greedy, sample = Decoding("greedy"), Decoding("sample", temperature=0.5)
    seed0 = [FrontierPoint("g", greedy, [0.10, 0.04, 0.02, 0.01], 0.1, 0.2, 0.01, 0.02),
             FrontierPoint("s", sample, [0.16, 0.06, 0.04, 0.03], 0.4, 0.7, 0.02, 0.10)]
    seed1 = [FrontierPoint("g", greedy, [0.12, 0.04, 0.02, 0.01], 0.1, 0.4, 0.01, 0.04),
             FrontierPoint("s", sample, [0.14, 0.06, 0.04, 0.03], 0.6, 0.9, 0.04, 0.08)]
    means, sds = over_seeds([seed0, seed1])
    assert [p.decoding for p in means] == [greedy, sample] and [p.setting for p in sds] == ["g", "s"]
    assert means[0].bleu_f1 == pytest.approx([0.11, 0.04, 0.02, 0.01])
    assert means[1].distinct_2_within == pytest.approx(0.8) and means[1].distinct_1 == pytest.approx(0.03)
    # the sample sd of two values is |a - b| / sqrt(2)
    assert sds[0].distinct_2_within == pytest.approx(0.2 / 2 ** 0.5)
    assert sds[1].bleu_f1[0] == pytest.approx(0.02 / 2 ** 0.5) and sds[1].bleu_f1[1] == pytest.approx(0.0)
    assert means[1].distinct_2 == pytest.approx(0.09) and sds[1].distinct_2 == pytest.approx(0.02 / 2 ** 0.5)
    one, spread = over_seeds([seed0])
    assert one == seed0 and all(p.distinct_2 == 0.0 and p.bleu_f1 == [0.0] * 4 for p in spread)
    with pytest.raises(ValueError, match="other decoding settings"):
        over_seeds([seed0, seed1[::-1]])
    with pytest.raises(ValueError, match="at least one curve"):
        over_seeds([])
