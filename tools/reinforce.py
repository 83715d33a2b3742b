"""textvae-reinforce: train a LaRL model's latent policy p(z | c) by policy gradient on a task reward.

LaRL (Zhao, Xie & Eskenazi 2019): the supervised model's context encoder and decoder stay frozen; REINFORCE with a
baseline moves only the policy network, towards actions whose greedily decoded responses earn more reward
(textvae.reinforce: reward = 100 (0.5 [the act tagger gives the response the gold act] + 0.5 slot F1 of the goal
values it names against those the gold response names)). The dialogues must carry goals (meta.goal) and acts,
as the synthetic goal-oriented dialogues do.

--data DIR holds the prepared splits: RL trains on train.jsonl and scores the policy before and after on
--eval-split (default test): mean reward, act match, slot F1, the generated responses' NLL under the supervised
model (per response and per token; an importance estimate with --nll-samples actions from the supervised policy)
and the gold responses' NLL under the model, plus the same reward for the gold responses (the ceiling; their act
match is the tagger's accuracy). The act tagger is --act-tagger DIR (saved by textvae-act-tagger) or, without
it, trained here on the training split's turns. The RL model is written to --out as a new export (written whole
or not at all: an error or Ctrl-C, exit code 130, leaves the folder as it was); --json OUT writes the figures.

Examples:
  textvae-reinforce --model runs/synthetic_larl/export --data data/synthetic-dialogues --out runs/synthetic_larl/rl
  textvae-reinforce --model runs/synthetic_larl/export --data data/synthetic-dialogues --steps 0 --json before.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

from textvae.act_tagger import load_act_tagger, tagged_turns, train_act_tagger
from textvae.data.datasets import DEFAULT_MAX_CONTEXT, DialogueDataset, Vocab
from textvae.data.records import DataError, atomic_output, detect_kind
from textvae.export import check_export_target, save_export
from textvae.reinforce import (
    PolicyScores,
    RLSettings,
    StepRecord,
    TaskReward,
    check_larl,
    reference_scores,
    reinforce,
    score_policy,
)
from tools._cli import (
    MAX_BATCH,
    MAX_TOKENS,
    Progress,
    add_device_argument,
    add_model_argument,
    add_seed_argument,
    count,
    load_dialogue_model,
    load_split,
    number,
    output_file,
    parser_from_doc,
    run,
    span,
)

PROG = "textvae-reinforce"
MAX_RL_STEPS = 1_000_000
MAX_NLL_SAMPLES = 10_000


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    add_model_argument(parser, "LaRL model")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="folder of the prepared dialogue splits (train.jsonl, valid.jsonl, test.jsonl)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="export folder for the RL model (default: none "
                        "written; then --steps 0 only scores the model)")
    parser.add_argument("--eval-split", choices=("valid", "test"), default="test",
                        help="split the policy is scored on before and after (default test)")
    parser.add_argument("--act-tagger", type=Path, metavar="DIR",
                        help="act tagger saved by textvae-act-tagger (default: trained here on the training split)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the figures to this JSON file")
    rl = parser.add_argument_group("reinforcement learning (textvae.reinforce.RLSettings)")
    defaults = RLSettings()
    rl.add_argument("--steps", type=count(0, MAX_RL_STEPS), default=defaults.steps, metavar="N",
                    help=f"policy-gradient steps, {span(0, MAX_RL_STEPS)} (default {defaults.steps})")
    rl.add_argument("--batch-size", type=count(1, MAX_BATCH), default=defaults.batch_size, metavar="B",
                    help=f"contexts per step, {span(1, MAX_BATCH)} (default {defaults.batch_size})")
    rl.add_argument("--lr", type=number(0.0, 10.0, include_low=False), default=defaults.lr, metavar="LR",
                    help=f"Adam's learning rate for the policy, in (0, 10] (default {defaults.lr:g})")
    rl.add_argument("--baseline", choices=("moving_average", "batch_mean"), default=defaults.baseline,
                    help=f"the reward baseline (default {defaults.baseline})")
    rl.add_argument("--kl-weight", type=number(0.0, 1e6, include_low=True), default=defaults.kl_weight, metavar="W",
                    help="weight of KL(policy || supervised policy) per context, in [0, 1e6] (default "
                         f"{defaults.kl_weight:g})")
    rl.add_argument("--entropy-weight", type=number(0.0, 1e6, include_low=True), default=defaults.entropy_weight,
                    metavar="W", help=f"weight of the policy's entropy bonus, in [0, 1e6] (default "
                                      f"{defaults.entropy_weight:g})")
    rl.add_argument("--supervised-every", type=count(0, MAX_RL_STEPS), default=defaults.supervised_every,
                    metavar="N", help=f"a supervised step on the policy every N RL steps, {span(0, MAX_RL_STEPS)}; 0: "
                                      "none (default 0)")
    rl.add_argument("--max-len", type=count(1, MAX_TOKENS), default=defaults.max_len, metavar="L",
                    help=f"longest decoded response in tokens, EOS included, {span(1, MAX_TOKENS)} "
                         f"(default {defaults.max_len})")
    scoring = parser.add_argument_group("scoring")
    scoring.add_argument("--greedy-latent", action="store_true",
                         help="score with each categorical's most likely class instead of a sample of p(z | c)")
    scoring.add_argument("--nll-samples", type=count(1, MAX_NLL_SAMPLES), default=16, metavar="K",
                         help=f"actions per response of the NLL estimate, {span(1, MAX_NLL_SAMPLES)} (default 16)")
    scoring.add_argument("--max-contexts", type=count(1), metavar="N",
                         help="score only the first N contexts, at least 1")
    add_seed_argument(parser, "the batches, actions and scoring")
    add_device_argument(parser)
    return parser


def _split(parser: argparse.ArgumentParser, directory: Path, name: str):
    path = directory / f"{name}.jsonl"
    if not path.is_file():
        parser.error(f"{path}: no such file; --data names the folder of a prepared dialogue corpus "
                     "(textvae-corpus prepare synthetic-dialogues --out DIR)")
    if detect_kind(path) != "dialogues":
        parser.error(f"{path} holds sentences; reinforcement needs dialogues with goals and acts")
    return path, load_split(PROG, path, kind="dialogues")


def _dataset(export, records, path: Path) -> DialogueDataset:
    names = {name: Vocab(values) if values else None for name, values in export.categories.items()}
    with Progress(PROG, f"dialogues of {path.name} tokenised") as progress:
        return DialogueDataset(records, export.tokenizer, max_context=export.max_context or DEFAULT_MAX_CONTEXT,
                               max_len=export.max_len, acts=names["acts"], emotions=names["emotions"],
                               topics=names["topics"], source=str(path), progress=progress)


def _row(name: str, scores: PolicyScores) -> str:
    return (f"{name:<18} {scores.reward:7.2f} {scores.act_match:9.3f} {scores.slot_f1:8.3f} {scores.nll:9.2f} "
            f"{scores.nll_per_token:8.3f} {scores.reference_nll_per_token:10.3f}")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    output_file(parser, "--json", args.json, "reinforce.json")
    if args.out is None and args.steps:
        parser.error("--out DIR is where the RL model goes; give it (or --steps 0 to only score the model)")
    if args.out is not None:
        try:
            check_export_target(args.out)
        except DataError as err:
            parser.error(f"--out: {err}")
    export = load_dialogue_model(parser, args.model, args.device,
                                 sentence_message="reinforcement learning needs a LaRL dialogue model")
    try:
        model = check_larl(export.model)
    except ValueError as err:
        parser.error(f"{args.model}: {err}")
    train_path, train_records = _split(parser, args.data, "train")
    eval_path, eval_records = _split(parser, args.data, args.eval_split)
    if args.act_tagger is not None:
        tagger = load_act_tagger(args.act_tagger)
        tagger_source = str(args.act_tagger)
    else:
        start = time.perf_counter()
        with Progress(PROG, f"training the act tagger on {train_path.name}"):
            tagger = train_act_tagger(*tagged_turns(train_records))
        tagger_source = f"trained on {train_path} ({time.perf_counter() - start:.0f} s)"
    train_reward, eval_reward = TaskReward(train_records, tagger), TaskReward(eval_records, tagger)
    if not eval_reward.tracker.has_goals:
        parser.error(f"{eval_path}: no dialogue has a goal (meta.goal): the reward needs goal-oriented dialogues")
    train_set, eval_set = _dataset(export, train_records, train_path), _dataset(export, eval_records, eval_path)
    settings = RLSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, baseline=args.baseline,
                          kl_weight=args.kl_weight, entropy_weight=args.entropy_weight,
                          supervised_every=args.supervised_every, max_len=args.max_len, seed=args.seed)
    supervised = copy.deepcopy(model).eval()
    options = dict(greedy_latent=args.greedy_latent, nll_samples=args.nll_samples, max_len=args.max_len,
                   seed=args.seed, max_contexts=args.max_contexts)
    contexts = min(len(eval_set), args.max_contexts or len(eval_set))
    with Progress(PROG, "contexts scored before RL", contexts) as progress:
        before = score_policy(model, supervised, eval_set, eval_reward, export.tokenizer, progress=progress,
                              **options)
    start = time.perf_counter()
    history: list[StepRecord] = []
    if args.steps:
        with Progress(PROG, "RL steps", args.steps) as progress:
            history = reinforce(model, train_set, train_reward, export.tokenizer, settings,
                                progress=lambda record: progress(record.step))
    seconds = time.perf_counter() - start
    after = None
    if args.steps:
        with Progress(PROG, "contexts scored after RL", contexts) as progress:
            after = score_policy(model, supervised, eval_set, eval_reward, export.tokenizer, progress=progress,
                                 **options)
    gold = reference_scores(eval_set, eval_reward, args.max_contexts)
    if args.out is not None and args.steps:
        info = dict(export.info) | {"reinforce": {"from": str(args.model), "data": str(train_path),
                                                  "settings": dataclasses.asdict(settings)}}
        save_export(args.out, model, export.tokenizer, kind=export.kind, max_context=export.max_context,
                    max_len=export.max_len, categories=export.categories, info=info)
    latent = "the most likely action" if args.greedy_latent else "an action sampled from p(z | c)"
    print(f"{args.model} on {eval_path}: {contexts:,} contexts, {latent}, words greedy")
    print(f"act tagger: {tagger_source}; its accuracy on the gold responses {float(gold.act_match.mean()):.3f}")
    print(f"{'':<18} {'reward':>7} {'act match':>9} {'slot F1':>8} {'NLL(sup)':>9} {'per tok':>8} {'gold NLL/t':>10}")
    print(_row("supervised", before))
    if after is not None:
        print(_row(f"after {args.steps} RL steps", after))
        print(f"reward {after.reward - before.reward:+.2f} points; generated responses' NLL under the supervised model "
              f"{100 * (after.nll / before.nll - 1):+.1f}% per response; RL took {seconds:.0f} s")
    print(f"{'gold responses':<18} {float(gold.reward.mean()):7.2f} {float(gold.act_match.mean()):9.3f} "
          f"{float(gold.slot_f1.mean()):8.3f}")
    if args.out is not None and args.steps:
        print(f"wrote {args.out}")
    if args.json is not None:
        figures = {"model": str(args.model), "data": str(eval_path), "contexts": contexts,
                   "greedy_latent": args.greedy_latent, "act_tagger": tagger_source,
                   "settings": dataclasses.asdict(settings), "rl_seconds": seconds,
                   "before": dataclasses.asdict(before), "after": dataclasses.asdict(after) if after else None,
                   "gold": {"reward": float(gold.reward.mean()), "act_match": float(gold.act_match.mean()),
                            "slot_f1": float(gold.slot_f1.mean())},
                   "history": [dataclasses.asdict(r) for r in history]}
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
