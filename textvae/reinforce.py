"""Reinforcement learning on a latent-action policy: LaRL (Zhao, Xie & Eskenazi 2019), section 4.

The response model :class:`~textvae.models.LaRL` is trained first by supervised learning; then only its policy
network p(z | c) is trained by REINFORCE (Williams 1992) with a baseline: for a batch of contexts, z ~ p(z | c)
(one exact one-hot per categorical), the response decoded greedily from [c, z] by the frozen decoder, a task
reward R per response, and one gradient step on

    -mean_b (R_b - baseline) log p(z_b | c_b)  [+ kl_weight KL(p(z | c) || p_supervised(z | c))]
                                               [- entropy_weight H(p(z | c))]

The context encoder and the decoder never change, so the words stay those the supervised decoder writes for some
action; the optional KL to the supervised policy keeps the actions near those it chose (against reward hacking).
``supervised_every`` mixes in, as the paper's fine-tuning does, a step of the supervised objective that updates the
policy alone.

The task reward (:func:`task_reward`) on the synthetic goal-oriented dialogues: for a response h generated at
response turn n of dialogue d, whose gold response is r with gold act a,

    reward = 100 * (0.5 * [act_tagger(h) == a] + 0.5 * slot_f1(h, r))

``act_tagger`` is a :class:`~textvae.act_tagger.ActTagger` trained on the corpus' gold acts (its accuracy on the
references says how far its verdicts can be trusted); ``slot_f1`` compares the slot values that h names,
H = set(values_in(h)), with the goal's values that r names, G = set(values_in(r)) & goal_so_far(d, n), both read
by a :class:`~textvae.fidelity.GoalTracker`: 1 when both are empty, 0 when one is empty and the other not, else
the F1 of H against G. So a response is rewarded for carrying the act the dialogue asks for at that turn and for
naming what the goal asks for there (and nothing else).

Notation: B batch, C condition, Z latent (M categoricals of K classes), T tokens.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from textvae.act_tagger import ActTagger
from textvae.data.batching import (
    BucketBatchSampler,
    DialogueBatch,
    batch_to,
    collate_dialogues,
    pad,
    with_bos_eos,
)
from textvae.data.datasets import DialogueDataset
from textvae.data.tokenizers import Tokenizer
from textvae.decoding import Decoding, generate
from textvae.fidelity import GoalTracker
from textvae.models import LaRL
from textvae.models.modules import ContextWords, chunked_log_likelihood
from textvae.objectives import categorical_kl

# ---------------------------------------------------------------------------------------------------
# The task reward


def slot_f1(named: set[str], wanted: set[str]) -> float:
    """F1 of the slot values a response names against those it should name: 1 when both sets are empty, 0 when
    exactly one is, else 2 |H & G| / (|H| + |G|)."""
    if not named and not wanted:
        return 1.0
    if not named or not wanted:
        return 0.0
    return 2 * len(named & wanted) / (len(named) + len(wanted))


def task_reward(act_match: bool, f1: float) -> float:
    """The reward on the 0-100 scale: 100 (0.5 [act matches] + 0.5 slot F1)."""
    return 100.0 * (0.5 * float(act_match) + 0.5 * f1)


class RewardTerms(NamedTuple):
    reward: Tensor  # (B,) 0-100
    act_match: Tensor  # (B,) 1. where the tagger gives the response the gold act
    slot_f1: Tensor  # (B,)


class TaskReward:
    """The reward of responses to the examples of one split (see the module doc). ``dialogues``: the split's
    records (:func:`~textvae.data.datasets.load_records`), in the order its :class:`DialogueDataset` numbers them."""

    def __init__(self, dialogues: Sequence[dict], tagger: ActTagger):
        self.tracker = GoalTracker(dialogues)
        self.tagger = tagger
        self.turns = [[(t["text"], t.get("act")) for t in d["turns"]] for d in dialogues]

    def reference(self, example: tuple[int, int]) -> tuple[str, str | None]:
        """The gold response of an example (dialogue d, response turn n) and its act name."""
        d, n = example
        return self.turns[d][n]

    def __call__(self, hypotheses: Sequence[str], examples: Sequence[tuple[int, int]]) -> RewardTerms:
        """The reward of ``hypotheses[i]`` as the response of ``examples[i]`` = (dialogue, response turn)."""
        tagged = [self.tagger.acts[i] for i in self.tagger.tag(list(hypotheses))] if hypotheses else []
        rewards, matches, f1s = [], [], []
        for hypothesis, act, (d, n) in zip(hypotheses, tagged, examples, strict=True):
            reference, gold = self.turns[d][n]
            wanted = set(self.tracker.values_in(reference)) & self.tracker.goal_so_far(d, n)
            f1 = slot_f1(set(self.tracker.values_in(hypothesis)), wanted)
            matches.append(float(act == gold))
            f1s.append(f1)
            rewards.append(task_reward(act == gold, f1))
        return RewardTerms(torch.tensor(rewards), torch.tensor(matches), torch.tensor(f1s))


# ---------------------------------------------------------------------------------------------------
# The policy-gradient step


class RewardBaseline:
    """b in the advantage R - b: the batch's mean reward (``"batch_mean"``), or a moving average of the batch
    means, b <- decay b + (1 - decay) mean(R), that starts at the first batch's mean (``"moving_average"``)."""

    def __init__(self, kind: Literal["batch_mean", "moving_average"] = "moving_average", decay: float = 0.9):
        if kind not in ("batch_mean", "moving_average"):
            raise ValueError(f"baseline must be 'batch_mean' or 'moving_average', got {kind!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the baseline's decay must be in [0, 1), got {decay}")
        self.kind, self.decay = kind, decay
        self.value: float | None = None

    def advantage(self, reward: Tensor) -> Tensor:
        """R - b for this batch (B,), then b updated with it."""
        mean = float(reward.mean())
        if self.kind == "batch_mean":
            return reward - mean
        base = mean if self.value is None else self.value
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return reward - base


def policy_gradient_step(optimizer: torch.optim.Optimizer, log_prob: Tensor, reward: Tensor,
                         baseline: RewardBaseline, *, penalty: Tensor | None = None,
                         clip: float | None = None) -> float:
    """One REINFORCE step: minimise -mean((R - b) log pi(a)) (+ ``penalty``) over the optimiser's parameters.
    ``log_prob`` (B,) is log pi of the actions taken, differentiable in the policy; ``reward`` (B,) their rewards;
    ``clip``: the gradients' global norm is clipped to it. Returns the loss."""
    advantage = baseline.advantage(reward.to(log_prob.dtype)).to(log_prob.device).detach()  # (B,)
    loss = -(advantage * log_prob).mean()
    if penalty is not None:
        loss = loss + penalty
    optimizer.zero_grad()
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    optimizer.step()
    return float(loss.detach())


# ---------------------------------------------------------------------------------------------------
# Reinforcement learning of LaRL's policy


@dataclass(frozen=True)
class RLSettings:
    """What :func:`reinforce` does: ``steps`` policy-gradient steps on batches of ``batch_size`` contexts with Adam
    at ``lr``; rewards scaled to 0-1 for the gradient; see the module doc for the other terms."""

    steps: int = 500
    batch_size: int = 64
    lr: float = 3e-3  # the recipe's measured setting (recipes/synthetic_larl.yaml)
    baseline: Literal["batch_mean", "moving_average"] = "moving_average"
    baseline_decay: float = 0.9
    kl_weight: float = 0.0  # KL(p(z | c) || the supervised policy), per context, summed over the categoricals
    entropy_weight: float = 0.0
    supervised_every: int = 0  # a supervised step on the policy every this many RL steps; 0: none
    clip: float | None = 5.0
    max_len: int = 40  # tokens of a decoded response, EOS included
    seed: int = 0

    def __post_init__(self):
        if min(self.steps, self.supervised_every, self.kl_weight, self.entropy_weight) < 0 or self.batch_size < 1:
            raise ValueError("steps, supervised_every, kl_weight and entropy_weight must be >= 0 and batch_size >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")


@dataclass
class StepRecord:
    step: int
    reward: float  # the batch's mean reward, 0-100
    kl: float  # KL(p(z | c) || supervised policy), mean per context


def check_larl(model) -> LaRL:
    """``model`` if it is a :class:`~textvae.models.LaRL`; else a ValueError saying what reinforcement needs."""
    if not isinstance(model, LaRL):
        raise ValueError(f"reinforcement learning acts on a latent-action policy p(z | c): it needs a LaRL model, "
                         f"got {type(model).__name__} (train one with recipes/synthetic_larl.yaml)")
    return model


def _batch(dataset: DialogueDataset, indices: Sequence[int], device: torch.device) -> DialogueBatch:
    return batch_to(collate_dialogues([dataset[i] for i in indices]), device)


def _decode(model: LaRL, c: Tensor, z: Tensor, words: ContextWords | None, tokenizer: Tokenizer,
            max_len: int) -> tuple[list[list[int]], list[str]]:
    ids = generate(model, model.decoder_condition(c, z, words), Decoding("greedy", max_len=max_len))
    return ids, [tokenizer.decode(i) for i in ids]


def reinforce(model: LaRL, dataset: DialogueDataset, reward: TaskReward, tokenizer: Tokenizer,
              settings: RLSettings = RLSettings(), *,
              progress: Callable[[StepRecord], None] | None = None) -> list[StepRecord]:
    """Train ``model``'s policy network in place by REINFORCE on ``dataset``'s contexts with ``reward`` (whose
    split ``dataset`` is); everything else in the model is frozen. Returns each step's batch reward and KL."""
    check_larl(model)
    device = next(model.parameters()).device
    supervised = copy.deepcopy(model).eval()  # the policy before RL: the KL's reference
    policy = list(model.policy_parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in policy:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(policy, lr=settings.lr)
    baseline = RewardBaseline(settings.baseline, settings.baseline_decay)
    generator = torch.Generator().manual_seed(settings.seed)  # batches
    noise = torch.Generator(device=device).manual_seed(settings.seed + 1)  # actions
    history = []
    model.eval()  # no dropout; the policy head gives exact one-hot samples
    try:
        for step in range(1, settings.steps + 1):
            indices = torch.randint(len(dataset), (settings.batch_size,), generator=generator).tolist()
            batch = _batch(dataset, indices, device)
            with torch.no_grad():
                c, words = model.context_and_words(batch)  # (B, C), frozen; words for a decoder that attends
                reference_logits = supervised.policy(c).logits  # (B, Z)
            pi = model.policy(c)
            z = pi._replace(logits=pi.logits.detach()).sample(generator=noise)  # (B, Z) one-hot actions
            log_prob = model.log_policy(c, z)  # (B,)
            with torch.no_grad():
                _, texts = _decode(model, c, z, words, tokenizer, settings.max_len)
            terms = reward(texts, [dataset.examples[i] for i in indices])
            kl = categorical_kl(pi.logits, reference_logits, model.categories).sum(-1).mean()
            penalty = settings.kl_weight * kl
            if settings.entropy_weight:
                uniform = categorical_kl(pi.logits, torch.zeros_like(pi.logits), model.categories).sum(-1)  # log K - H
                penalty = penalty + settings.entropy_weight * uniform.mean()  # = -entropy_weight H + const
            policy_gradient_step(optimizer, log_prob, terms.reward / 100.0, baseline, penalty=penalty,
                                 clip=settings.clip)
            if settings.supervised_every and step % settings.supervised_every == 0:
                _supervised_step(model, dataset, optimizer, generator, settings, device)
            record = StepRecord(step, float(terms.reward.mean()), float(kl.detach()))
            history.append(record)
            if progress is not None:
                progress(record)
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        model.eval()
    return history


def _supervised_step(model: LaRL, dataset: DialogueDataset, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, settings: RLSettings, device: torch.device) -> None:
    """One step of the supervised objective (reconstruction + KL of the model's ELBO) on a fresh batch; only the
    policy's parameters require gradients, so only the policy moves."""
    indices = torch.randint(len(dataset), (settings.batch_size,), generator=generator).tolist()
    model.train()
    try:
        out = model(_batch(dataset, indices, device))
        loss = (out.reconstruction + out.kl.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        if settings.clip:
            torch.nn.utils.clip_grad_norm_(list(model.policy_parameters()), settings.clip)
        optimizer.step()
    finally:
        model.eval()


# ---------------------------------------------------------------------------------------------------
# Scoring a policy


@dataclass
class PolicyScores:
    """A policy's responses on a split: the task reward and its two halves, and likelihoods (nats)."""

    responses: int
    reward: float  # mean, 0-100
    act_match: float  # share of responses the tagger gives the gold act
    slot_f1: float  # mean
    nll: float  # -log p_supervised(h | c) per generated response h (importance estimate, see response_nll)
    nll_per_token: float  # the same summed over responses, per token (EOS included)
    reference_nll: float  # -log p(r | c) of the gold responses r under the scored model, per response
    reference_nll_per_token: float
    examples: list[dict] = field(default_factory=list)


@torch.no_grad()
def response_nll(model: LaRL, batch: DialogueBatch, responses: Sequence[Sequence[int]] | None, *, samples: int,
                 generator: torch.Generator | None = None) -> Tensor:
    """-log p(x | c) of responses (token ids without BOS/EOS; None: the batch's own) for the batch's contexts,
    (B,), estimated with ``samples`` actions z_k ~ p(z | c) as proposal: -log mean_k p(x | c, z_k). An upper bound
    in expectation (Jensen), tighter as ``samples`` grows; the same estimator for every policy compared."""
    c, words = model.context_and_words(batch)  # (B, C)
    if responses is None:
        tokens = batch.response
    else:
        tokens, _ = pad([with_bos_eos(ids) for ids in responses])
        tokens = tokens.to(c.device)  # (B, T)
    z = model.policy(c).sample(samples, generator)  # (K, B, Z)
    condition = torch.cat([c.expand(samples, -1, -1), z], dim=-1) if model.decoder_context else z
    log_px = chunked_log_likelihood(model.decoder, tokens[:, :-1], tokens[:, 1:], condition, words=words)  # (K, B)
    return -(torch.logsumexp(log_px.double(), dim=0) - math.log(samples)).float()  # (B,)


@torch.no_grad()
def score_policy(model: LaRL, supervised: LaRL, dataset: DialogueDataset, reward: TaskReward, tokenizer: Tokenizer,
                 *, greedy_latent: bool = False, nll_samples: int = 16, batch_size: int = 128, max_len: int = 40,
                 seed: int = 0, max_contexts: int | None = None, num_examples: int = 5,
                 progress: Callable[[int], None] | None = None) -> PolicyScores:
    """Score ``model``'s responses on ``dataset`` (its first ``max_contexts`` examples): one action per context,
    drawn from p(z | c) (``greedy_latent``: each categorical's most likely class), the words decoded greedily;
    their reward, and their NLL under ``supervised`` (the model before RL); and the gold responses' NLL under
    ``model``. Seeded: two policies scored with the same seed meet the same noise."""
    check_larl(model)
    check_larl(supervised)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    supervised.eval()
    count = min(len(dataset), max_contexts or len(dataset))
    totals = {"reward": 0.0, "act": 0.0, "f1": 0.0, "nll": 0.0, "tokens": 0, "ref_nll": 0.0, "ref_tokens": 0}
    examples: list[dict] = []
    done = 0
    for indices in BucketBatchSampler(dataset.lengths[:count], batch_size, shuffle=False):
        batch = _batch(dataset, indices, device)
        condition = model.response_condition(batch, generator=generator, greedy=greedy_latent)
        ids = generate(model, condition.condition, Decoding("greedy", max_len=max_len))
        texts = [tokenizer.decode(i) for i in ids]
        pairs = [dataset.examples[i] for i in indices]
        terms = reward(texts, pairs)
        nll = response_nll(supervised, batch, ids, samples=nll_samples, generator=generator)  # (B,)
        ref_nll = response_nll(model, batch, None, samples=nll_samples, generator=generator)
        totals["reward"] += float(terms.reward.sum())
        totals["act"] += float(terms.act_match.sum())
        totals["f1"] += float(terms.slot_f1.sum())
        totals["nll"] += float(nll.sum())
        totals["tokens"] += sum(len(i) + 1 for i in ids)
        totals["ref_nll"] += float(ref_nll.sum())
        totals["ref_tokens"] += batch.num_targets
        for b in range(len(indices)):
            if len(examples) < num_examples:
                context = [tokenizer.decode(turn) for turn in dataset[indices[b]].context]
                gold, act = reward.reference(pairs[b])
                examples.append({"context": context, "reference": gold, "reference_act": act, "response": texts[b],
                                 "reward": float(terms.reward[b])})
        done += len(indices)
        if progress is not None:
            progress(done)
    return PolicyScores(responses=done, reward=totals["reward"] / done, act_match=totals["act"] / done,
                        slot_f1=totals["f1"] / done, nll=totals["nll"] / done,
                        nll_per_token=totals["nll"] / max(totals["tokens"], 1), reference_nll=totals["ref_nll"] / done,
                        reference_nll_per_token=totals["ref_nll"] / max(totals["ref_tokens"], 1), examples=examples)


def reference_scores(dataset: DialogueDataset, reward: TaskReward, max_contexts: int | None = None) -> RewardTerms:
    """The reward of the gold responses themselves (the tagger's accuracy on them is their act match): the
    ceiling the scores of generated responses are read against."""
    pairs = dataset.examples[:max_contexts or len(dataset)]
    return reward([reward.reference(p)[0] for p in pairs], pairs)
