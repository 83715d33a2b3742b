"""The diversity–relevance frontier of a dialogue model: its responses scored over a sweep of decoding settings.

One decoding setting is one point (BLEU-F1 against distinct-n, Zhao et al. 2017's protocol at N responses per
context, :func:`textvae.dialogue_eval.evaluate_dialogues`); a model is the curve of its points, so models
are compared at their best trade-offs rather than at one default each (a latent model decoding each z
greedily against HRED sampling its words is not a like-for-like comparison).

* :func:`decoding_sweep`: the settings of a model: HRED (no latent) greedy, beam and word sampling at
  temperatures 0.3 to 1.2 and top-p; a latent model greedy per z, word sampling per z at the same
  temperatures and top-p, and prior scales (z drawn from a wider or narrower prior network);
* :func:`frontier`: evaluate every setting;
* :func:`dominates` / :func:`covers`: is one point at least as good on every axis; does one curve cover
  every point of another;
* :func:`over_seeds`: the curves of several seeds of one model as one curve of per-setting means, with
  their standard deviations;
* :func:`plot_frontier`: BLEU-F1 against distinct-2 overall, every point of each model and the line of its
  best trade-offs (PNG, matplotlib's Agg canvas).

Notation: N responses per context.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from textvae.data.datasets import DialogueDataset
from textvae.data.tokenizers import Tokenizer
from textvae.decoding import Decoding
from textvae.dialogue import describe_method
from textvae.dialogue_eval import evaluate_dialogues
from textvae.models import DialogueModel

TEMPERATURES = (0.3, 0.5, 0.7, 0.9, 1.0, 1.2)  # every model's, so curves meet over one range
TOP_PS = (0.9,)
PRIOR_SCALES = (0.5, 1.5, 2.0)
SCALED_TEMPERATURES = (0.3, 0.5, 0.7, 1.0)  # word sampling per z drawn at each prior scale (a 2-D sweep)


class FrontierPoint(NamedTuple):
    setting: str  # how the responses were decoded, e.g. "sample (T 0.7)", "greedy per sampled z, prior x1.5"
    decoding: Decoding | None  # None: a point read back from a benchmark's JSON, which names only the setting
    bleu_f1: list[float]  # BLEU-1..4 F1 (0-1)
    distinct_1_within: float  # within each context's N responses, mean over contexts
    distinct_2_within: float
    distinct_1: float  # over all generated responses
    distinct_2: float


def decoding_sweep(model: DialogueModel, *, temperatures: Sequence[float] | None = None,
                   top_ps: Sequence[float] = TOP_PS, prior_scales: Sequence[float] = PRIOR_SCALES,
                   scaled_temperatures: Sequence[float] = SCALED_TEMPERATURES, scaled_top_ps: Sequence[float] = (),
                   beam_size: int = 5, max_len: int = 50) -> list[Decoding]:
    """The decoding settings a model's frontier is traced over (see the module doc). ``temperatures``: word
    sampling temperatures (default 0.3 to 1.2; a latent model samples per z); ``top_ps``: sampling
    at temperature 1 within each nucleus; ``prior_scales`` (latent models): greedy per z drawn with the prior's
    standard deviation times each scale, and word sampling per such z at each of ``scaled_temperatures`` (the
    two temperatures, of z and of the words, swept together) and at temperature 1 within each of
    ``scaled_top_ps`` (none by default). HRED also gets greedy and beam search. The full grid, every prior
    scale with HRED's word-sampling settings: ``scaled_temperatures=TEMPERATURES, scaled_top_ps=TOP_PS``."""
    latent = model.latent_dim > 0
    temperatures = tuple(temperatures if temperatures is not None else TEMPERATURES)
    settings = [Decoding("greedy", max_len=max_len)]
    settings += [Decoding("sample", temperature=t, max_len=max_len) for t in temperatures]
    settings += [Decoding("sample", top_p=p, max_len=max_len) for p in top_ps]
    if latent:
        for scale in prior_scales:
            settings.append(Decoding("greedy", prior_scale=scale, max_len=max_len))
            settings += [Decoding("sample", temperature=t, prior_scale=scale, max_len=max_len)
                         for t in scaled_temperatures]
            settings += [Decoding("sample", top_p=p, prior_scale=scale, max_len=max_len) for p in scaled_top_ps]
    else:
        settings.append(Decoding("beam", beam_size=beam_size, max_len=max_len))
    return list(dict.fromkeys(settings))  # in order, without repeats


def frontier(model: DialogueModel, dataset: DialogueDataset, tokenizer: Tokenizer, settings: Iterable[Decoding], *,
             responses: int = 10, max_contexts: int | None = None, seed: int = 0, batch_size: int = 32,
             device: str | None = None) -> list[FrontierPoint]:
    """One :class:`FrontierPoint` per setting: ``responses`` per context on the first ``max_contexts`` pairs of
    ``dataset``, every setting from the same ``seed`` (the same latents where the setting draws them alike)."""
    if responses < 2:
        raise ValueError(f"a frontier needs at least 2 responses per context (distinct within), got {responses}")
    points = []
    for decoding in settings:
        result = evaluate_dialogues(model, dataset, tokenizer, responses=responses, decoding=decoding, seed=seed,
                                    max_contexts=max_contexts, batch_size=batch_size, device=device)
        points.append(FrontierPoint(describe_method(model, decoding), decoding, list(result.bleu_f1),
                                    result.distinct_1_within, result.distinct_2_within, result.distinct_1,
                                    result.distinct_2))
    return points


def dominates(a: FrontierPoint, b: FrontierPoint, order: int = 1) -> bool:
    """``a`` is at least as good as ``b`` on BLEU-``order`` F1 and on distinct-2 within and overall."""
    return (a.bleu_f1[order - 1] >= b.bleu_f1[order - 1] and a.distinct_2_within >= b.distinct_2_within
            and a.distinct_2 >= b.distinct_2)


def covers(curve: Sequence[FrontierPoint], other: Sequence[FrontierPoint], order: int = 1) -> list[FrontierPoint]:
    """The points of ``other`` that no point of ``curve`` dominates (empty: ``curve`` covers ``other``)."""
    return [b for b in other if not any(dominates(a, b, order) for a in curve)]


def over_seeds(curves: Sequence[Sequence[FrontierPoint]]) -> tuple[list[FrontierPoint], list[FrontierPoint]]:
    """The curves of several seeds of one model (the same settings, in the same order) as one curve: per
    setting the mean of every figure over the seeds, and their sample standard deviations (zero for one
    seed), each as a :class:`FrontierPoint` of that setting."""
    if not curves:
        raise ValueError("over_seeds needs at least one curve")
    settings = [p.setting for p in curves[0]]
    for i, curve in enumerate(curves[1:], start=1):
        if [p.setting for p in curve] != settings:
            raise ValueError(f"seed {i}'s curve has other decoding settings than seed 0's; sweep every seed alike")

    def combine(points: Sequence[FrontierPoint], summary) -> FrontierPoint:
        numbers = [[*p.bleu_f1, p.distinct_1_within, p.distinct_2_within, p.distinct_1, p.distinct_2]
                   for p in points]
        values = [summary(column) for column in zip(*numbers, strict=True)]
        return FrontierPoint(points[0].setting, points[0].decoding, values[:-4], *values[-4:])

    def sd(column) -> float:
        return statistics.stdev(column) if len(column) > 1 else 0.0

    per_setting = list(zip(*curves, strict=True))  # each setting's points, one per seed
    return [combine(points, statistics.fmean) for points in per_setting], [combine(points, sd) for points in per_setting]


def plot_frontier(curves: Mapping[str, Sequence[FrontierPoint]], path: str | os.PathLike, *, order: int = 1,
                  title: str = "") -> None:
    """BLEU-``order`` F1 against distinct-2 overall: each model's points, joined where no other point of the
    model has as much diversity and more BLEU (its frontier on these two axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, points in curves.items():  # every point, and the line of those no other point of the model beats
        envelope, best = [], float("-inf")
        for p in sorted(points, key=lambda p: (-p.distinct_2, -p.bleu_f1[order - 1])):
            if p.bleu_f1[order - 1] > best:
                envelope.append(p)
                best = p.bleu_f1[order - 1]
        line, = axes.plot([p.distinct_2 for p in envelope], [p.bleu_f1[order - 1] for p in envelope], marker="o",
                          label=name)
        axes.scatter([p.distinct_2 for p in points], [p.bleu_f1[order - 1] for p in points], s=12, alpha=0.5,
                     color=line.get_color())
    axes.set_xlabel("distinct-2 (all responses)")
    axes.set_ylabel(f"BLEU-{order} F1")
    axes.set_title(title or "diversity against relevance, one point per decoding setting")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")
