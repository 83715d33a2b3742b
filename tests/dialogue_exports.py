"""Real tiny dialogue models (HRED, VHRED, CVAE, kgCVAE) trained for a few steps by ``textvae-train`` on
synthetic dialogues and exported by it, for the dialogue tools' tests: the tools then load exactly what a
user's training run writes (config, weights, tokenizer, act names, ``max_context`` and ``max_len``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_dialogues
from tools import train

TINY = {"embed_dim": 16, "utterance_dim": 16, "context_dim": 24, "decoder_dim": 24}
MODELS = {
    "hred": ("textvae.models.HRED", {}),
    "vhred": ("textvae.models.VHRED", {"latent_dim": 4, "network_dim": 16}),
    "cvae": ("textvae.models.CVAE", {"latent_dim": 4, "prior_dim": 16, "mlp_dim": 16, "topic_dim": 4}),
    "kgcvae": ("textvae.models.CVAE", {"latent_dim": 4, "prior_dim": 16, "mlp_dim": 16, "topic_dim": 4,
                                       "knowledge": True, "act_dim": 4}),
}
MAX_CONTEXT = 3  # trained with 3 context turns and turns of at most MAX_LEN tokens: the tools must default to them
MAX_LEN = 30


class DialogueExports(NamedTuple):
    data: Path  # prepared JSONL: 40 synthetic dialogues with acts, the training and evaluation split
    hred: Path
    vhred: Path
    cvae: Path
    kgcvae: Path
    acts: list[str]  # the act names of the data, as the kgCVAE export lists them


def _config(class_path: str, init_args: dict, data: Path, folder: Path) -> dict:
    return {
        "seed_everything": 0,
        "trainer": {"max_steps": 30, "accelerator": "cpu", "devices": 1, "logger": False,
                    "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "num_sanity_val_steps": 0, "limit_val_batches": 0, "default_root_dir": str(folder)},
        "model": {"model": {"class_path": class_path, "init_args": TINY | init_args}, "lr": 0.01},
        "data": {"train": str(data), "max_context": MAX_CONTEXT, "max_len": MAX_LEN, "batch_size": 16,
                 "cache_dir": str(folder / "cache")},
        "export": str(folder / "export"),
    }


def build_dialogue_exports(directory: Path) -> DialogueExports:
    """40 synthetic dialogues and the four models trained 30 steps each through ``textvae-train``."""
    data = directory / "dialogues.jsonl"
    write_jsonl(data, generate_dialogues(40, seed=0))
    paths = {}
    for name, (class_path, init_args) in MODELS.items():
        folder = directory / name
        folder.mkdir()
        recipe = folder / "recipe.json"  # JSON is YAML
        recipe.write_text(json.dumps(_config(class_path, init_args, data, folder)), encoding="utf-8")
        train.main(["fit", "--config", str(recipe)])
        paths[name] = folder / "export"
    acts = json.loads((paths["kgcvae"] / "config.json").read_text(encoding="utf-8"))["categories"]["acts"]
    return DialogueExports(data=data, acts=acts, **paths)
