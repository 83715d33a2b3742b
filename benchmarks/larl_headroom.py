"""How much task reward a LaRL policy could gain on the synthetic dialogues (recipes/synthetic_larl.yaml).

    python benchmarks/larl_headroom.py --data data/synthetic-dialogues

The script's next act is partly random (after the user's last inform the system confirms or offers, ...), so a
policy that writes one response per context is bounded by the most likely act. For contexts with the same key
(topic and the last 4 acts; the whole act history; the history and the slots still to request, the script's
state) it prints the share of test turns whose act is the most frequent next act on train (and in-sample on
test), then the reward (textvae.reinforce: 50 act match + 50 slot F1) of the best single (act, slot-value
pattern) per script state chosen on train, scored on test: the ceiling RL is measured against.
"""
import argparse
import json
from collections import Counter, defaultdict

from textvae.fidelity import GoalTracker
from textvae.reinforce import slot_f1

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default="data/synthetic-dialogues", help="the prepared synthetic-dialogues folder")
ARGS = parser.parse_args()


def load(split):
    with open(f"{ARGS.data}/{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def examples(dialogues):
    for d in dialogues:
        acts = [t["act"] for t in d["turns"]]
        # system requests of the request phase: a function of the opening (how many slots it told)
        phase = 0
        for a, t in zip(acts, d["turns"], strict=True):
            if t["speaker"] == "system" and a == "request":
                phase += 1
            elif t["speaker"] == "system" and a in ("confirm", "offer", "inform"):
                break
        for n in range(1, len(acts)):
            asked = sum(1 for a, t in zip(acts[:n], d["turns"][:n], strict=True) if t["speaker"] == "system" and a == "request")
            state = max(phase - asked, 0) if "confirm" not in acts[:n] and "offer" not in acts[:n] else -1
            yield {"topic": d["topic"], "hist": tuple(acts[:n]), "last4": tuple(acts[max(0, n - 4):n]),
                   "state": state, "n": n}, acts[n]

ACTS = ["affirm", "bye", "confirm", "deny", "greet", "inform", "offer", "request", "thank"]
KEYS = {
    "topic + last 4 acts (what max_context=4 shows, acts only)": lambda e: (e["topic"], e["last4"]),
    "topic + full act history": lambda e: (e["topic"], e["hist"]),
    "topic + full act history + slots still to request (the script's state)":
        lambda e: (e["topic"], e["hist"], e["state"]),
}
train, test = list(examples(load("train"))), list(examples(load("test")))
print(f"train {len(train)} test {len(test)} examples")
for name, key in KEYS.items():
    table = defaultdict(Counter)
    for e, a in train:
        table[key(e)][a] += 1
    back = defaultdict(Counter)  # fallback: topic + last act
    for e, a in train:
        back[(e["topic"], e["hist"][-1])][a] += 1
    hits = sum(a == (table[key(e)] or back[(e["topic"], e["hist"][-1])]).most_common(1)[0][0] for e, a in test)
    unseen = sum(not table[key(e)] for e, a in test)
    insample = defaultdict(Counter)
    for e, a in test:
        insample[key(e)][a] += 1
    ins = sum(c.most_common(1)[0][1] for c in insample.values())
    # expected accuracy of the modal act under the train distribution (less noisy than the hit count)
    exp = sum(max(table[key(e)].values()) / sum(table[key(e)].values()) for e, a in test if table[key(e)])
    print(f"{name}: train-modal act on test {hits / len(test):.3f} (unseen keys {unseen}); "
          f"expected {exp / (len(test) - unseen):.3f}; in-sample on test {ins / len(test):.3f}")
# by gold act: which turns are random
by = defaultdict(Counter)
key = KEYS["topic + full act history + slots still to request (the script's state)"]
table = defaultdict(Counter)
for e, a in train:
    table[key(e)][a] += 1
for e, a in test:
    c = table[key(e)]
    p = max(c.values()) / sum(c.values()) if c else 0
    by[a]["n"] += 1
    by[a]["p"] += p
print({a: (c["n"], round(c["p"] / c["n"], 3)) for a, c in sorted(by.items())})

# -- the reward ceiling: one response per script state, of one act, naming one pattern of values ------------------


def rows(split):
    dialogues = load(split)
    tracker = GoalTracker(dialogues)
    out = []
    flat = []
    for di, dlg in enumerate(dialogues):
        for n in range(1, len(dlg["turns"])):
            flat.append((di, n))
    for (e, a), (di, n) in zip(examples(dialogues), flat, strict=True):
        turns = dialogues[di]["turns"]
        goal = tracker.goal_so_far(di, n)
        wanted = set(tracker.values_in(turns[n]["text"])) & goal
        patterns = {"none": set(), "goal so far": goal,
                    "previous turn's": set(tracker.values_in(turns[n - 1]["text"])) & goal,
                    "context's": set().union(*(tracker.values_in(t["text"]) for t in turns[max(0, n - 4):n])) & goal}
        out.append((key(e), a, wanted, patterns))
    return out

train_rows, test_rows = rows("train"), rows("test")
choices = defaultdict(lambda: defaultdict(float))
for k, a, wanted, patterns in train_rows:
    for act in ACTS:
        for p, values in patterns.items():
            choices[k][(act, p)] += 50 * (act == a) + 50 * slot_f1(values, wanted)
total = act_total = f1_total = 0.0
best_f1 = 0.0
for k, a, wanted, patterns in test_rows:
    if choices[k]:
        act, p = max(choices[k], key=choices[k].get)
    else:
        act, p = "inform", "none"
    f1 = slot_f1(patterns[p], wanted)
    total += 50 * (act == a) + 50 * f1
    act_total += act == a
    f1_total += f1
    best_f1 += max(slot_f1(v, wanted) for v in patterns.values())
n = len(test_rows)
print(f"reward ceiling of one (act, value pattern) per script state, chosen on train, on test: {total / n:.2f} "
      f"(act match {act_total / n:.3f}, slot F1 {f1_total / n:.3f}); slot F1 with the best pattern per example "
      f"(an oracle on the values alone) {best_f1 / n:.3f}")
