"""Lightning glue: one thin LightningModule over any textvae model, and a LightningDataModule.

The model (a plain ``nn.Module``) says how to compute the reconstruction term, the per-dimension KL
and any auxiliary loss of a batch; the system (``TextVAESystem``) owns what is optimised around them:
β from a KL schedule, free bits, a KL capacity, the optimiser, and the logged metrics. Logged "kl"
and "elbo" are always the true KL and ELBO, never the weighted or free-bits-clamped training loss; for
kgCVAE the ELBO also counts -log p(act | c, z) (``ModelOutput.act_nll``, logged as "act_nll"), the bound
``textvae-eval`` reports, so the checkpoint chosen by ``val/elbo`` is the best by that same bound.
"""

from __future__ import annotations

import os
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import nn

from textvae.data.batching import BucketBatchSampler, collate_dialogues, collate_sentences
from textvae.data.datasets import (
    DEFAULT_MAX_CONTEXT,
    DialogueDataset,
    SentenceDataset,
    Vocab,
    load_records,
    texts_of,
)
from textvae.data.profiles import PROFILE_DIM, callers_of
from textvae.data.records import DataError, detect_kind
from textvae.data.tokenizers import load_tokenizer, train_tokenizer
from textvae.metrics import active_units
from textvae.objectives import free_bits_kl, kl_term
from textvae.schedules import KLSchedule


class TextDataModule(pl.LightningDataModule):
    """Prepared JSONL splits → tokenizer → length-bucketed batches (sentences or dialogues).

    The tokenizer is trained on the training split when the module is built (the model's vocabulary
    size depends on it), or loaded from ``tokenizer_dir`` (e.g. a model export folder).
    """

    def __init__(self, *, train: str, valid: str | None = None, test: str | None = None,
                 tokenizer: Literal["word", "unigram", "bpe"] = "word", tokenizer_dir: str | None = None,
                 min_count: int = 1, max_vocab: int | None = None, lowercase: bool = False,
                 sentencepiece_vocab_size: int = 8000, max_len: int | None = 100, max_context: int = DEFAULT_MAX_CONTEXT,
                 batch_size: int = 32, eval_batch_size: int | None = None, num_workers: int = 0,
                 cache_dir: str | None = None, seed: int = 0):
        super().__init__()
        self.paths = {"train": train, "valid": valid, "test": test}
        self.kind = detect_kind(train)
        self.max_len, self.max_context = max_len, max_context
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.cache_dir = cache_dir or os.path.join(os.path.dirname(os.path.abspath(train)), ".cache")
        self.records = {split: load_records(path, cache_dir=self.cache_dir, kind=self.kind)
                        for split, path in self.paths.items() if path is not None}
        if tokenizer_dir is not None:
            self.tokenizer = load_tokenizer(tokenizer_dir)
        else:
            self.tokenizer = train_tokenizer(texts_of(self.records["train"], self.kind), kind=tokenizer,
                                             min_count=min_count, max_size=max_vocab, lowercase=lowercase,
                                             vocab_size=sentencepiece_vocab_size)
        # Category inventories come from every split given: they are metadata, not learned content,
        # and a dev split may hold a dialog act the train split lacks.
        all_records = list(self.records.values())
        if self.kind == "sentences":
            self.labels = Vocab.build(v for r in all_records for v in r["label"])
        else:
            turns = [t for r in all_records for d in r for t in d["turns"]]
            self.acts = Vocab.build(t["act"] for t in turns)
            self.emotions = Vocab.build(t["emotion"] for t in turns)
            self.topics = Vocab.build(d["topic"] for r in all_records for d in r)
            self.has_profiles = any(callers_of(meta) is not None for r in all_records for meta in r["meta"])
        self.datasets: dict[str, torch.utils.data.Dataset] = {}

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.kind == "sentences" else 0

    @property
    def num_acts(self) -> int:
        return len(self.acts) if self.kind == "dialogues" else 0

    @property
    def num_topics(self) -> int:
        return len(self.topics) if self.kind == "dialogues" else 0

    @property
    def profile_dim(self) -> int:
        """Speaker profile features per example (textvae.data.profiles): 0 unless the dialogues name callers."""
        return PROFILE_DIM if self.kind == "dialogues" and self.has_profiles else 0

    def dataset(self, split: str):
        if split not in self.datasets:
            if split not in self.records:
                raise DataError(f"no {split} split was given to the data module (data.{split})")
            source = self.paths[split]
            if self.kind == "sentences":
                self.datasets[split] = SentenceDataset(self.records[split], self.tokenizer, max_len=self.max_len,
                                                       labels=self.labels, source=source)
            else:
                self.datasets[split] = DialogueDataset(self.records[split], self.tokenizer,
                                                       max_context=self.max_context, max_len=self.max_len,
                                                       acts=self.acts, emotions=self.emotions, topics=self.topics,
                                                       source=source)
        return self.datasets[split]

    def _loader(self, split: str, *, train: bool) -> torch.utils.data.DataLoader:
        dataset = self.dataset(split)
        trainer = self.trainer
        sampler = BucketBatchSampler(
            dataset.lengths, self.batch_size if train else self.eval_batch_size, shuffle=train, seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
        )
        if train and trainer is not None:
            sampler.set_epoch(trainer.current_epoch)
        collate = collate_sentences if self.kind == "sentences" else collate_dialogues
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                           num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("valid", train=False) if "valid" in self.records else []

    def test_dataloader(self):
        return self._loader("test", train=False)


class TextVAESystem(pl.LightningModule):
    """Trains any textvae model: loss = reconstruction + aux + β(step) · KL term (free bits, capacity)."""

    def __init__(self, model: nn.Module, *, kl_schedule: KLSchedule | None = None,
                 free_bits_per_dim: float = 0.0, free_bits_per_sentence: float = 0.0, capacity: float = 0.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip_norm: float | None = 5.0):
        super().__init__()
        self.model = model
        self.kl_schedule = kl_schedule or KLSchedule(kind="constant", max_beta=1.0)
        self.free_bits_per_dim, self.free_bits_per_sentence = free_bits_per_dim, free_bits_per_sentence
        self.capacity = capacity
        self.lr, self.weight_decay, self.grad_clip_norm = lr, weight_decay, grad_clip_norm
        self.save_hyperparameters(ignore=["model"])
        self._val_mu: list[torch.Tensor] = []

    @property
    def beta(self) -> float:
        return self.kl_schedule(self.global_step)

    def _step(self, batch, stage: str) -> torch.Tensor:
        out = self.model(batch)
        reconstruction = out.reconstruction.mean()
        aux = out.aux_loss.mean()
        size = batch.index.shape[0]
        metrics = {"reconstruction": reconstruction}
        bound = reconstruction  # -ELBO: reconstruction (+ act NLL) (+ KL)
        if out.act_nll is not None:
            metrics["act_nll"] = out.act_nll.mean()
            bound = bound + metrics["act_nll"]
        if out.kl is not None:
            kl = out.kl.sum(-1).mean()  # the true KL, whatever is optimised
            optimised = free_bits_kl(out.kl, per_dim=self.free_bits_per_dim,
                                     per_sentence=self.free_bits_per_sentence)
            loss = reconstruction + aux + kl_term(optimised, self.beta, self.capacity)
            metrics |= {"kl": kl, "elbo": -(bound + kl)}
            if stage == "val" and out.mu is not None:
                self._val_mu.append(out.mu.detach())
        else:
            loss = reconstruction + aux
            metrics |= {"elbo": -bound}
        if out.aux_loss.abs().sum() > 0:
            metrics["aux"] = aux
        metrics["loss"] = loss
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=size,
                      sync_dist=stage != "train", on_step=stage == "train", on_epoch=True)
        if stage == "train":  # a short progress bar: loss, KL, beta
            self.log_dict({"loss": loss, "kl": metrics.get("kl", 0.0)}, batch_size=size, prog_bar=True,
                          logger=False)
        if stage == "train":
            self.log("train/beta", self.beta, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_validation_epoch_end(self):
        if sum(len(m) for m in self._val_mu) > 1:
            mu = torch.cat(self._val_mu)
            if self.trainer.world_size > 1:
                mu = self.all_gather(mu).reshape(-1, mu.shape[-1])
            units, _ = active_units(mu)
            self.log("val/active_units", float(units), sync_dist=False, rank_zero_only=True)
        self._val_mu.clear()

    def configure_optimizers(self):
        # The fused kernel takes the Adam step from ~40% of a CPU training step to a few percent. Lightning's
        # mixed precision (16-mixed, bf16-mixed) refuses to clip the gradients of a fused optimizer.
        mixed = self._trainer is not None and str(self._trainer.precision).endswith("-mixed")
        fused = not mixed and all(p.device.type in ("cpu", "cuda") for p in self.parameters())
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=fused)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip = gradient_clip_val if gradient_clip_val is not None else self.grad_clip_norm
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
