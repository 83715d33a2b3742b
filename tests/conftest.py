import os
import tempfile
from pathlib import Path

import pytest

# Hugging Face libraries must never reach the network or the user's cache from the tests.
_hf_home = tempfile.mkdtemp(prefix="textvae-hf-")
os.environ["HF_HOME"] = _hf_home
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

SHARED_CORPORA = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"


@pytest.fixture
def shared_corpora() -> Path:
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {SHARED_CORPORA}")
    return SHARED_CORPORA.resolve()


@pytest.fixture(scope="session")
def dialogue_exports(tmp_path_factory):
    """Synthetic dialogues and real tiny HRED, VHRED, CVAE and kgCVAE, trained a few steps by textvae-train and
    exported by it (see tests/dialogue_exports.py)."""
    import torch
    from dialogue_exports import build_dialogue_exports

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_dialogue_exports(tmp_path_factory.mktemp("dialogue_exports"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def six_dialogues(tmp_path_factory):
    """Six synthetic dialogues (seed 3) loaded as records, a word tokenizer on them and their DialogueDataset with
    3 context turns: (records, tokenizer, dataset), for the dialogue models' unit tests."""
    from textvae.data.datasets import DialogueDataset, load_records, texts_of
    from textvae.data.records import write_jsonl
    from textvae.data.synthetic import generate_dialogues
    from textvae.data.tokenizers import WordTokenizer

    folder = tmp_path_factory.mktemp("dialogues")
    write_jsonl(folder / "d.jsonl", generate_dialogues(6, seed=3))
    records = load_records(folder / "d.jsonl", cache_dir=folder / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "dialogues"))
    return records, tokenizer, DialogueDataset(records, tokenizer, max_context=3)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (tiny models: threads cost more than they give)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def autograd_as_found():
    """A test that runs a benchmark's main() in-process (which turns autograd off for the whole of its run, as a
    script may) leaves autograd on for the tests after it."""
    import torch

    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)
