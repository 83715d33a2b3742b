"""A tiny dialogue model implementing the :class:`~textvae.models.DialogueModel` contract, for the tools'
tests until the real HRED / VHRED / CVAE / kgCVAE land (tests only: it is no paper's model).

``latent_dim=0``: an HRED (context encoder -> decoder); ``latent_dim > 0``: a CVAE with a prior network
p(z|c) and a recognition network q(z|c, x); ``num_acts > 0`` adds kgCVAE's act: predicted from (c, z),
embedded and given to the decoder. The decoder is textvae's ``RNNDecoder`` with the condition [c; z; act]
as its latent input.

``load_export`` imports only classes under ``textvae.``; :func:`allow_fake_exports` lets it rebuild these
(the tools' code paths stay the ones the real models take).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from textvae.data.batching import collate_dialogues
from textvae.data.datasets import DialogueDataset, Vocab
from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_dialogues
from textvae.data.tokenizers import WordTokenizer
from textvae.export import save_export
from textvae.models import ModelOutput, ResponseCondition
from textvae.models.modules import RNNDecoder, RNNEncoder, sequence_nll
from textvae.objectives import gaussian_kl_between, reparameterize


class FakeDialogueModel(nn.Module):
    def __init__(self, *, vocab_size: int, embed_dim: int = 16, hidden_dim: int = 32, latent_dim: int = 0,
                 num_acts: int = 0, act_dim: int = 8):
        super().__init__()
        self.init_args = dict(vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim,
                              latent_dim=latent_dim, num_acts=num_acts, act_dim=act_dim)
        self.latent_dim, self.num_acts = latent_dim, num_acts
        self.utterance_encoder = RNNEncoder(vocab_size=vocab_size, cell="gru", embed_dim=embed_dim,
                                            hidden_dim=hidden_dim)
        self.context_encoder = nn.GRU(hidden_dim + 1, hidden_dim, batch_first=True)
        if latent_dim:
            self.prior = nn.Linear(hidden_dim, 2 * latent_dim)
            self.recognition = nn.Linear(2 * hidden_dim, 2 * latent_dim)
        if num_acts:
            self.act_predictor = nn.Linear(hidden_dim + latent_dim, num_acts)
            self.act_embedding = nn.Embedding(num_acts, act_dim)
        condition_dim = hidden_dim + latent_dim + (act_dim if num_acts else 0)
        self.decoder = RNNDecoder(vocab_size=vocab_size, cell="gru", embed_dim=embed_dim, hidden_dim=hidden_dim,
                                  latent_dim=condition_dim)

    def encode_context(self, batch) -> Tensor:
        b, u, t = batch.context.shape
        lengths = batch.context_lengths.reshape(b * u)
        real = lengths > 0
        vectors = batch.context.new_zeros(b * u, self.utterance_encoder.output_dim, dtype=torch.float)
        vectors[real] = self.utterance_encoder(batch.context.reshape(b * u, t)[real], lengths[real])
        x = torch.cat([vectors.view(b, u, -1), batch.context_floor.unsqueeze(-1).float()], dim=-1)  # (B, U, H+1)
        packed = pack_padded_sequence(x, batch.context_turns.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.context_encoder(packed)
        return h[-1]  # (B, H)

    def _condition(self, c: Tensor, z: Tensor | None, acts: Tensor | None) -> Tensor:
        parts = [c] + ([z] if z is not None else []) + ([self.act_embedding(acts)] if acts is not None else [])
        return torch.cat(parts, dim=-1)

    def forward(self, batch) -> ModelOutput:
        c = self.encode_context(batch)
        z = kl = mu = logvar = None
        if self.latent_dim:
            mu_p, logvar_p = self.prior(c).chunk(2, dim=-1)
            r = self.utterance_encoder(batch.response, batch.response_lengths)
            mu, logvar = self.recognition(torch.cat([c, r], dim=-1)).chunk(2, dim=-1)
            z = reparameterize(mu, logvar)
            kl = gaussian_kl_between(mu, logvar, mu_p, logvar_p)  # (B, Z)
        aux = c.new_zeros(c.shape[0])
        acts = None
        if self.num_acts:
            logits = self.act_predictor(torch.cat([c] + ([z] if z is not None else []), dim=-1))
            gold = batch.acts if batch.acts is not None else torch.full_like(aux, -1, dtype=torch.long)
            aux = F.cross_entropy(logits, gold.clamp_min(0), reduction="none") * (gold >= 0)
            acts = torch.where(gold >= 0, gold, logits.argmax(-1))
        reconstruction = sequence_nll(self.decoder, batch.inputs, batch.targets, self._condition(c, z, acts))
        return ModelOutput(reconstruction=reconstruction, kl=kl, mu=mu, logvar=logvar, aux_loss=aux)

    def response_condition(self, batch, *, num_samples: int = 1, z_source: str = "prior", acts: Tensor | None = None,
                           generator: torch.Generator | None = None) -> ResponseCondition:
        c = self.encode_context(batch).repeat(num_samples, 1)  # (N * B, H), sample-major
        z = None
        if self.latent_dim:
            if z_source == "posterior":
                r = self.utterance_encoder(batch.response, batch.response_lengths).repeat(num_samples, 1)
                mu, logvar = self.recognition(torch.cat([c, r], dim=-1)).chunk(2, dim=-1)
            else:
                mu, logvar = self.prior(c).chunk(2, dim=-1)
            z = reparameterize(mu, logvar, generator=generator)  # (N * B, Z)
        chosen = None
        if self.num_acts:
            if acts is not None:
                chosen = acts.repeat(num_samples)
            else:
                chosen = self.act_predictor(torch.cat([c] + ([z] if z is not None else []), dim=-1)).argmax(-1)
        return ResponseCondition(self._condition(c, z, chosen), z, chosen)

    def decoder_start(self, z: Tensor | None, batch_size: int | None = None):
        return self.decoder.start(z, batch_size)

    def decoder_step(self, tokens: Tensor, state):
        return self.decoder.step(tokens, state)

    def decoder_reorder(self, state, index: Tensor):
        return self.decoder.reorder(state, index)


def allow_fake_exports() -> None:
    """Let ``load_export`` rebuild this module's classes (it otherwise imports only ``textvae.`` classes)."""
    import textvae.export as export

    original = export._model_class
    if getattr(original, "allows_fakes", False):
        return

    def model_class(class_path: str, source):
        module, _, name = class_path.rpartition(".")
        if module == __name__:
            return getattr(sys.modules[__name__], name)
        return original(class_path, source)

    model_class.allows_fakes = True
    export._model_class = model_class


class DialogueExports(NamedTuple):
    data: Path  # prepared JSONL: 40 synthetic dialogues with acts
    hred: Path
    cvae: Path
    kgcvae: Path
    acts: list[str]


def _train(model: nn.Module, examples, steps: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = collate_dialogues([examples[i] for i in torch.randint(len(examples), (16,), generator=generator)])
        out = model(batch)
        loss = out.reconstruction.mean() + out.aux_loss.mean() + (out.kl.sum(-1).mean() if out.kl is not None else 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def build_dialogue_exports(directory: Path, *, steps: int = 40) -> DialogueExports:
    """40 synthetic dialogues, a word tokenizer and the three fakes trained ``steps`` steps, exported."""
    dialogues = generate_dialogues(40, seed=0)
    write_jsonl(directory / "dialogues.jsonl", dialogues)
    tokenizer = WordTokenizer.train(t.text for d in dialogues for t in d.turns)
    records = [d.to_json() | {"topic": d.topic, "meta": None} for d in dialogues]
    for record in records:
        record["turns"] = [{"act": None, "emotion": None} | t for t in record["turns"]]
    acts = Vocab.build(t.act for d in dialogues for t in d.turns)
    dataset = DialogueDataset(records, tokenizer, acts=acts)
    examples = [dataset[i] for i in range(len(dataset))]
    categories = {"acts": acts.names, "topics": dataset.topics.names}
    paths = {}
    for name, kwargs in {"hred": {}, "cvae": {"latent_dim": 4}, "kgcvae": {"latent_dim": 4, "num_acts": len(acts)}}.items():
        torch.manual_seed(0)
        model = FakeDialogueModel(vocab_size=tokenizer.vocab_size, **kwargs)
        _train(model, examples, steps)
        paths[name] = save_export(directory / name, model, tokenizer, categories=categories,
                                  info={"kind": "dialogues"})
    return DialogueExports(data=directory / "dialogues.jsonl", acts=acts.names, **paths)
