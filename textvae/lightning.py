"""Lightning glue: one thin LightningModule over any textvae model, and a LightningDataModule.

The model (a plain ``nn.Module``) says how to compute the reconstruction term, the KL and any auxiliary
loss of a batch; the system (``TextVAESystem``) owns what is optimised around them: the objective (the
ELBO with free bits and a capacity, or IWAE), β from a KL schedule, the training procedures (aggressive
inference, AE pretraining, semi-amortised steps), the optimiser, and the logged metrics. Logged "kl"
and "elbo" are always the true KL and ELBO, never the weighted or free-bits-clamped training loss; for
kgCVAE the ELBO also counts -log p(act | c, z) (``ModelOutput.act_nll``, logged as "act_nll"), the bound
``textvae-eval`` reports, so the checkpoint chosen by ``val/elbo`` is the best by that same bound.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import pytorch_lightning as pl
import torch
from filelock import FileLock
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from textvae.clustering import fit_gaussian_mixture
from textvae.data.batching import BucketBatchSampler, batch_to, collate_dialogues, collate_sentences
from textvae.data.datasets import (
    DEFAULT_MAX_CONTEXT,
    DialogueDataset,
    SentenceDataset,
    Vocab,
    cache_files,
    dialogue_categories,
    drop_mapped_pages,
    encode_records,
    load_records,
    names_callers,
    sentence_labels,
    texts_of,
)
from textvae.data.profiles import PROFILE_DIM
from textvae.data.records import DataError, detect_kind
from textvae.data.tokenizers import load_tokenizer, train_tokenizer
from textvae.guards import NonFiniteError, all_finite, nonfinite_terms
from textvae.inference import concatenate, mutual_information
from textvae.metrics import active_units
from textvae.schedules import KLSchedule, LRDecay, PlateauDecay
from textvae.training_objectives import ELBO, SVI, Objective

VALIDATION_SEED = 0
MIXTURE_RESTARTS = 10  # EM runs from k-means++ seeds when VaDE fits its prior (the most likely fit is kept)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global generators' state that training draws from: the CPU's, and the GPU's when on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class ResumableBatches(torch.utils.data.Sampler[list[int]]):
    """A batch sampler's epochs, of which the first one iterated after :meth:`resume` skips the batches
    training had consumed when the checkpoint was written."""

    def __init__(self, batches: BucketBatchSampler):
        self.batches = batches
        # Lightning sets the epoch (for a new shuffle) of a batch sampler's ``sampler``, not of the batch sampler
        self.sampler = batches
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def resume(self, epoch: int, consumed: int) -> None:
        self._resume = (epoch, consumed)

    def __len__(self) -> int:
        return len(self.batches)  # the whole epoch: Lightning counts the resumed epoch's batches from there

    def __iter__(self):
        skip = 0
        if self._resume is not None:
            epoch, consumed = self._resume
            self._resume = None
            skip = consumed if epoch == self.batches.epoch else 0  # an epoch-end checkpoint resumes a new epoch
        return itertools.islice(iter(self.batches), skip, None)


class ResumableLoader(torch.utils.data.DataLoader):
    """The training loader, resumable mid-epoch (Lightning keeps its ``state_dict`` in the checkpoint): its
    state is the epoch and the batches training consumed in it, as ``progress`` says (not the loader's own
    count, which runs ahead by the batches Lightning prefetched)."""

    def __init__(self, *args, progress: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, consumed = self.progress()
        return {"epoch": epoch, "batches": consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.resume(int(state["epoch"]), int(state["batches"]))


class TextDataModule(pl.LightningDataModule):
    """Prepared JSONL splits → tokenizer → length-bucketed batches (sentences or dialogues).

    The tokenizer is trained on the training split when the module is built (the model's vocabulary
    size depends on it), or loaded from ``tokenizer_dir`` (e.g. a model export folder).

    Sentence labels are read from ``label_key``: ``label`` or ``attributes.NAME``. ``unlabelled``: a second
    sentence file trained on without its labels (semi-supervised training: ``train`` holds the labelled
    sentences); its texts count for the tokenizer too. ``train_repeats``: each epoch reads the ``train``
    sentences this many times (a few labelled sentences beside many unlabelled ones, as semi-supervised
    training balances them).

    ``progress`` (a class attribute, None: silent): ``progress(what)`` gives a context manager yielding a
    ``(done, total)`` callback, or None; the first cache build of a large corpus reports through it
    (``textvae-train`` sets it to its progress line on a terminal).
    """

    progress: Callable[[str], AbstractContextManager[Callable[[int, int], None] | None]] | None = None

    def _told(self, what: str) -> AbstractContextManager[Callable[[int, int], None] | None]:
        return self.progress(what) if self.progress is not None else nullcontext(None)

    def __init__(self, *, train: str, valid: str | None = None, test: str | None = None,
                 tokenizer: Literal["word", "unigram", "bpe"] = "word", tokenizer_dir: str | None = None,
                 min_count: int = 1, max_vocab: int | None = None, lowercase: bool = False,
                 sentencepiece_vocab_size: int = 8000, max_len: int | None = 100, max_context: int = DEFAULT_MAX_CONTEXT,
                 batch_size: int = 32, eval_batch_size: int | None = None, num_workers: int = 0,
                 cache_dir: str | None = None, seed: int = 0, label_key: str = "label",
                 unlabelled: str | None = None, train_repeats: int = 1):
        super().__init__()
        if train_repeats < 1:
            raise ValueError(f"train_repeats must be >= 1, got {train_repeats}")
        for name, value, least in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                   ("max_len", max_len, 1), ("max_context", max_context, 1),
                                   ("num_workers", num_workers, 0), ("min_count", min_count, 1)):
            if value is not None and value < least:  # else a traceback from deep inside the first epoch
                raise ValueError(f"data.{name} must be >= {least}, got {value}")
        self.train_repeats = train_repeats
        self.paths = {"train": train, "valid": valid, "test": test, "unlabelled": unlabelled}
        self.label_key = label_key
        self.kind = detect_kind(train)
        self.max_len, self.max_context = max_len, max_context
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.cache_dir = cache_dir or self.default_cache_dir(train)
        if unlabelled is not None and (self.kind != "sentences" or detect_kind(unlabelled) != "sentences"):
            raise DataError(f"data.unlabelled ({unlabelled}) is for sentence corpora: give train and unlabelled as "
                            "sentence files")
        tokenizer_settings = dict(kind=tokenizer, min_count=min_count, max_size=max_vocab, lowercase=lowercase,
                                  vocab_size=sentencepiece_vocab_size)
        # One process builds the caches (records, tokenizer, token ids); the others (DDP ranks started beside it)
        # wait for it, then memory-map what it wrote.
        os.makedirs(self.cache_dir, exist_ok=True)
        with FileLock(os.path.join(self.cache_dir, "textvae.lock")):
            self.records = {}
            for split, path in self.paths.items():
                if path is not None:
                    with self._told(f"MiB of {os.path.basename(path)} read into the cache") as told:
                        in_mib = told and (lambda done, total, told=told: told(-(-done >> 20), -(-total >> 20)))
                        self.records[split] = load_records(path, cache_dir=self.cache_dir, kind=self.kind,
                                                           progress=in_mib)
            if tokenizer_dir is not None:
                self.tokenizer = load_tokenizer(tokenizer_dir)
            else:
                self.tokenizer = self._cached_tokenizer(tokenizer_settings)
            for split, records in self.records.items():
                with self._told(f"{self.kind} of {split} tokenised") as told:
                    encode_records(records, self.tokenizer, self.kind, progress=told)
            # Category inventories come from every split given: they are metadata, not learned content,
            # and a dev split may hold a dialog act the train split lacks.
            all_records = [r for split, r in self.records.items() if split != "unlabelled"]
            if self.kind == "sentences":
                self.labels = Vocab.build(v for r in all_records for v in sentence_labels(r, label_key))
            else:
                found = [dialogue_categories(r) for r in all_records]
                self.acts = Vocab.build(v for f in found for v in f["act"])
                self.emotions = Vocab.build(v for f in found for v in f["emotion"])
                self.topics = Vocab.build(v for f in found for v in f["topic"])
                self.has_profiles = any(names_callers(r) for r in all_records)
        drop_mapped_pages(f for r in self.records.values() for f in cache_files(r))
        self.datasets: dict[str, torch.utils.data.Dataset] = {}

    def _cached_tokenizer(self, settings: dict):
        """The tokenizer trained on the training texts (and the unlabelled ones), kept in the cache folder under a
        key of the files' content and the settings, so a restart (or another rank) loads it instead."""
        # the records' fingerprints stand for the files' content (load_records keys its cache on it)
        files = [self.records[split]._fingerprint for split in ("train", "unlabelled") if split in self.records]
        key = hashlib.sha256(json.dumps([files, settings, "tokenizer-1"], sort_keys=True).encode()).hexdigest()[:32]
        folder = os.path.join(self.cache_dir, f"tokenizer-{key}")
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            return load_tokenizer(folder)
        texts = texts_of(self.records["train"], self.kind)
        if "unlabelled" in self.records:
            texts = itertools.chain(texts, texts_of(self.records["unlabelled"], self.kind))
        tokenizer = train_tokenizer(texts, **settings)
        partial = folder + ".tmp"
        shutil.rmtree(partial, ignore_errors=True)
        tokenizer.save(partial)
        os.replace(partial, folder)
        return tokenizer

    @staticmethod
    def default_cache_dir(train: str) -> str:
        """Where the encoded splits are cached without ``cache_dir``: ``.cache`` beside the training split
        (``textvae-train`` checks it is writable before building the module)."""
        return os.path.join(os.path.dirname(os.path.abspath(train)), ".cache")

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
                dataset = SentenceDataset(self.records[split], self.tokenizer, max_len=self.max_len,
                                          labels=self.labels, source=source, label_key=self.label_key)
                if split == "train" and self.train_repeats > 1:
                    dataset.repeat(self.train_repeats)
                if split == "train" and "unlabelled" in self.records:
                    dataset.extend(SentenceDataset(self.records["unlabelled"], self.tokenizer, max_len=self.max_len,
                                                   labels=self.labels, source=self.paths["unlabelled"],
                                                   unlabelled=True))
                self.datasets[split] = dataset
            else:
                self.datasets[split] = DialogueDataset(self.records[split], self.tokenizer,
                                                       max_context=self.max_context, max_len=self.max_len,
                                                       acts=self.acts, emotions=self.emotions, topics=self.topics,
                                                       source=source)
        return self.datasets[split]

    def _loader(self, split: str, *, train: bool) -> torch.utils.data.DataLoader:
        dataset = self.dataset(split)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
            # Lightning would rebuild the batch sampler around a DistributedSampler it cannot take
            raise DataError("the data module splits batches across processes itself: train with "
                            "Trainer(use_distributed_sampler=False) (textvae-train sets it)")
        sampler = BucketBatchSampler(
            dataset.lengths, self.batch_size if train else self.eval_batch_size, shuffle=train, seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
        )
        if train and trainer is not None:
            # the epoch Lightning will set at the epoch's start (a run resumed from an epoch-end checkpoint still
            # says current_epoch = the finished one here); the first iterator is made before that
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        collate = collate_sentences if self.kind == "sentences" else collate_dialogues
        # a generator of its own: creating an iterator must not draw from the global one that training uses
        # (the draws would differ between a resumed run and an uninterrupted one)
        options = dict(collate_fn=collate, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                       generator=torch.Generator().manual_seed(self.seed))
        if train:
            return ResumableLoader(dataset, batch_sampler=ResumableBatches(sampler), progress=self._progress,
                                   **options)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **options)

    def _progress(self) -> tuple[int, int]:
        system = self.trainer.lightning_module if self.trainer is not None else None
        return system.epoch_progress if isinstance(system, TextVAESystem) else (0, 0)

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("valid", train=False) if "valid" in self.records else []

    def test_dataloader(self):
        return self._loader("test", train=False)


class AggressiveInference:
    """He et al. (2019)'s aggressive training of the inference network ("Lagging Inference Networks and
    Posterior Collapse in Variational Autoencoders", Algorithm 1 and their code): while active, each training
    batch first runs an inner loop of encoder-only updates on fresh batches (the first is the batch itself),
    stopped when the loss averaged over the last 15 of them no longer decreases (at most ``max_inner_steps``);
    then the decoder alone takes its step. After each validation the rule :meth:`after_validation` ends the
    aggressive phase for good once the validation MI decreases."""

    CHECK_EVERY = 15  # inner steps per loss comparison (He et al.)

    def __init__(self, max_inner_steps: int = 100):
        self.max_inner_steps = max_inner_steps
        self.active = True
        self.last_mi = -math.inf  # He et al. start at 0; -inf: the first validation never ends the phase

    def after_validation(self, mi: float) -> None:
        if self.active and mi < self.last_mi:
            self.active = False
        self.last_mi = mi

    def inner_losses(self):
        """A coroutine for the inner loop: send each step's (summed loss, examples); it yields whether to
        stop. Stops when the mean loss of a window of ``CHECK_EVERY`` steps exceeds the previous window's."""
        previous, total, count, step = math.inf, 0.0, 0, 0
        stop = False
        while True:
            loss, size = yield stop
            step += 1
            total, count = total + loss, count + size
            stop = step >= self.max_inner_steps
            if step % self.CHECK_EVERY == 0:
                current = total / max(count, 1)
                if current > previous:
                    stop = True
                previous, total, count = current, 0.0, 0

    def state_dict(self) -> dict:
        return {"active": self.active, "last_mi": self.last_mi}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.last_mi = bool(state["active"]), float(state["last_mi"])


def _check_optimiser_settings(lr: float, weight_decay: float, grad_clip_norm: float | None) -> None:
    """ValueError naming the first setting no optimiser can train with (textvae-train prints it in one line)."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"model.lr must be a finite number > 0, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"model.weight_decay must be a finite number >= 0, got {weight_decay}")
    if grad_clip_norm is not None and not (math.isfinite(grad_clip_norm) and grad_clip_norm > 0):
        raise ValueError(f"model.grad_clip_norm must be a finite number > 0 (or null: no clipping), "
                         f"got {grad_clip_norm}")


class TextVAESystem(pl.LightningModule):
    """Trains any textvae model with an objective (:mod:`textvae.training_objectives`: the ELBO with free
    bits and a capacity, or IWAE), β from a KL schedule, and the training procedures of the text-VAE
    literature as options:

    Args:
        model: any textvae model (``textvae.models``).
        objective: what is optimised; default the ELBO.
        kl_schedule: β over steps.
        lr, weight_decay, grad_clip_norm: the optimiser's settings (clipping by global norm).
        optimizer: Adam, or plain SGD (He et al. 2019 and Li et al. 2019 train with SGD, lr 1).
        aggressive: He et al. (2019)'s aggressive inference-network updates until the validation MI stops
            rising (:class:`AggressiveInference`); ``aggressive_max_inner_steps`` bounds each inner loop.
        ae_pretrain_epochs: Li et al. (2019): train as an autoencoder (β = 0) for this many epochs, then
            re-initialise the decoder and its optimiser state and start the KL schedule (and the objective's
            free bits) from there. Those epochs do not count for early stopping.
        after_pretraining: what ends AE pretraining: ``reset_decoder`` (Li et al. 2019, above) or
            ``fit_mixture`` (VaDE, Jiang et al. 2017): keep the decoder and start the model's mixture prior
            (:class:`~textvae.priors.MixturePrior`) at a Gaussian mixture fitted by EM to the posterior means of
            the training sentences (:func:`textvae.clustering.fit_gaussian_mixture`, best of 10 seedings).
        svi_steps, svi_lr: Kim et al. (2018)'s semi-amortised training: the ELBO at each posterior after
            this many differentiable gradient steps of size ``svi_lr`` from the encoder's output.
        lr_decay: the learning rate decayed on a plateau of the validation ELBO, going back to the best
            weights (:class:`~textvae.schedules.LRDecay`; He et al. 2019, Li et al. 2019); none by default.
    """

    def __init__(self, model: nn.Module, *, objective: Objective | None = None, kl_schedule: KLSchedule | None = None,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip_norm: float | None = 5.0,
                 optimizer: Literal["adam", "sgd"] = "adam", aggressive: bool = False,
                 aggressive_max_inner_steps: int = 100, ae_pretrain_epochs: int = 0, svi_steps: int = 0,
                 svi_lr: float = 0.25, after_pretraining: Literal["reset_decoder", "fit_mixture"] = "reset_decoder",
                 lr_decay: LRDecay | None = None):
        super().__init__()
        if after_pretraining not in ("reset_decoder", "fit_mixture"):
            raise ValueError(f"after_pretraining must be 'reset_decoder' or 'fit_mixture', got {after_pretraining!r}")
        if after_pretraining == "fit_mixture" and not hasattr(getattr(model, "prior", None), "logits"):
            raise ValueError("after_pretraining: fit_mixture needs a model with a mixture prior "
                             "(prior: textvae.priors.MixturePrior)")
        if min(ae_pretrain_epochs, svi_steps) < 0 or aggressive_max_inner_steps < 1 or svi_lr <= 0:
            raise ValueError(f"need ae_pretrain_epochs >= 0, svi_steps >= 0, svi_lr > 0 and "
                             f"aggressive_max_inner_steps >= 1, got {ae_pretrain_epochs}, {svi_steps}, {svi_lr}, "
                             f"{aggressive_max_inner_steps}")
        _check_optimiser_settings(lr, weight_decay, grad_clip_norm)
        latent = getattr(model, "latent_dim", 0) > 0
        if (aggressive or ae_pretrain_epochs or svi_steps) and not latent:
            raise ValueError("aggressive training, AE pretraining and semi-amortised steps need a latent-variable "
                             f"model; {type(model).__name__} has no z")
        self.model = model
        self.objective = objective or ELBO()
        self.kl_schedule = kl_schedule or KLSchedule(kind="constant", max_beta=1.0)
        self.lr, self.weight_decay, self.grad_clip_norm, self.optimizer_name = lr, weight_decay, grad_clip_norm, optimizer
        self.aggressive = AggressiveInference(aggressive_max_inner_steps) if aggressive else None
        self.ae_pretrain_epochs = ae_pretrain_epochs
        self.after_pretraining = after_pretraining
        self.svi = SVI(svi_steps, svi_lr) if svi_steps else None
        self.plateau = PlateauDecay(lr_decay) if lr_decay is not None else None
        self._best_state: dict[str, torch.Tensor] | None = None  # the best validation's weights (restore_best)
        self._val_elbo = (0.0, 0)  # this validation's (sum of the ELBO x batch size, sentences), for lr_decay
        # aggressive training steps two optimisers by hand (encoder alone, then decoder)
        self.automatic_optimization = not aggressive
        # the KL schedule's clock, in training batches, and where it restarted (after AE pretraining); kept in
        # the checkpoint by on_save_checkpoint (not in the state dict: checkpoints from before still load)
        self.batches_seen = 0
        self.schedule_start = 0
        self.save_hyperparameters(ignore=["model", "objective"])
        self._val_codes: list[torch.Tensor] = []
        self._val_posteriors: list = []
        self._burn_batches = None
        self._kl_said = False
        self.epoch_progress = (0, 0)  # (epoch, its batches trained): where a mid-epoch checkpoint resumes
        self._training_rng: dict[str, torch.Tensor] | None = None  # inside a validation: training's state
        self._resumed_rng: list[dict[str, torch.Tensor]] | None = None  # from a checkpoint, until training starts
        self._grad_norm = None  # (gradients, their global norm) from the guard, for the clipping that follows it
        self._train_sums: dict[str, tuple[torch.Tensor, int]] = {}  # this epoch's (sum of value x batch size, sizes)

    @property
    def pretraining(self) -> bool:
        """In Li et al. (2019)'s autoencoder phase: β = 0."""
        return self.current_epoch < self.ae_pretrain_epochs

    @property
    def beta(self) -> float:
        if self.pretraining:
            return 0.0
        return self.kl_schedule(self.batches_seen - self.schedule_start)

    def _step(self, batch, stage: str) -> torch.Tensor:
        svi = self.svi if stage == "train" else None
        terms = self.objective(self.model, batch, beta=self.beta, svi=svi)
        if stage == "train":
            self._stop_if_nonfinite(terms)
        size = batch.index.shape[0]
        metrics = terms.metrics | {"loss": terms.loss}
        if terms.kl_closed_form is not None:
            metrics["kl_closed_form"] = float(terms.kl_closed_form)  # 0: the logged KL is a Monte-Carlo estimate
            if stage == "train" and not self._kl_said:
                self._kl_said = True
                how = ("in closed form" if terms.kl_closed_form
                       else "as a Monte-Carlo estimate, log q(z) - log p(z) at the sampled z")
                rank_zero_info(f"textvae-train: the logged KL(q || p) is computed {how}")
        if stage == "val" and self.plateau is not None:
            total, count = self._val_elbo
            elbo = metrics["elbo"] if "elbo" in metrics else -terms.loss
            self._val_elbo = (total + torch.as_tensor(elbo, device=self.device).detach().float() * size,
                              count + size)
        if stage == "val" and terms.code is not None:
            self._val_codes.append(terms.code.detach())
            self._val_posteriors.append(terms.posterior)
        labels = getattr(batch, "labels", None)
        if stage == "val" and getattr(self.model, "num_labels", 0) and labels is not None and (labels >= 0).any():
            # a labelled model's classifier q(y | x) on the labelled validation sentences
            known = labels >= 0
            guess = self.model.classify(batch.tokens, batch.lengths).argmax(-1)
            self.log("val/label_accuracy", (guess[known] == labels[known]).float().mean(),
                     batch_size=int(known.sum()), sync_dist=True, on_epoch=True)
        if stage == "train":
            self._log_training(metrics, size)
        else:
            self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=size, sync_dist=True,
                          on_epoch=True)
        return terms.loss

    def _log_training(self, metrics: dict[str, torch.Tensor | float], size: int) -> None:
        """The training metrics, as ``self.log(on_step=True, on_epoch=True)`` would give them (``train/K_step`` on
        the steps the loggers write, every ``log_every_n_steps``; ``train/K_epoch``, the batch-size-weighted
        epoch mean, and ``train/K`` in the callback metrics), for two tiny tensor ops a key on the other steps:
        each ``self.log`` call costs about a millisecond of bookkeeping, the training step logs a dozen keys, and
        on a CPU that was ~6% of a step. The progress bar (loss, KL, beta) moves on the logged steps."""
        for key, value in metrics.items():
            value = (value.detach() if isinstance(value, torch.Tensor)
                     else torch.tensor(float(value), device=self.device))
            total, count = self._train_sums.get(key, (0.0, 0))
            self._train_sums[key] = (total + value.float() * size, count + size)
        if self.trainer._logger_connector.should_update_logs:
            self.log_dict({f"train/{k}_step": v for k, v in metrics.items()}, batch_size=size, on_step=True,
                          on_epoch=False)
            self.log_dict({"loss": metrics["loss"], "kl": metrics.get("kl", 0.0)}, batch_size=size, prog_bar=True,
                          logger=False, on_step=True, on_epoch=False)  # a short progress bar: loss, KL, beta
            self.log("train/beta", self.beta, on_step=True, on_epoch=False, prog_bar=True)

    def on_train_epoch_end(self):
        """The epoch means of the training metrics (see :meth:`_log_training`); the monitoring callbacks
        (checkpointing, early stopping) run after this hook and see them."""
        means = {key: total / count for key, (total, count) in self._train_sums.items()}
        self._train_sums = {}
        if means:
            self.log_dict({f"train/{k}_epoch": v for k, v in means.items()}, on_step=False, on_epoch=True)
            self.log_dict({f"train/{k}": v for k, v in means.items()}, on_step=False, on_epoch=True, logger=False)

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            loss = self._step(batch, "train")
        else:
            loss = self._aggressive_step(batch)
        self.batches_seen += 1
        epoch, consumed = self.epoch_progress
        self.epoch_progress = (self.current_epoch, consumed + 1 if epoch == self.current_epoch else 1)
        return loss

    def _aggressive_step(self, batch) -> torch.Tensor:
        encoder_optimizer, decoder_optimizer = self.optimizers()
        if self.aggressive.active:
            rule = self.aggressive.inner_losses()
            next(rule)
            inner = batch
            while True:
                terms = self.objective(self.model, inner, beta=self.beta, svi=self.svi)
                self._stop_if_nonfinite(terms)
                encoder_optimizer.zero_grad()
                decoder_optimizer.zero_grad()
                self.manual_backward(terms.loss)
                self._clip(encoder_optimizer)
                encoder_optimizer.step()
                size = inner.index.shape[0]
                if rule.send((terms.loss.item() * size, size)):
                    break
                inner = self._fresh_batch()
        loss = self._step(batch, "train")
        encoder_optimizer.zero_grad()
        decoder_optimizer.zero_grad()
        self.manual_backward(loss)
        self._clip(encoder_optimizer)
        self._clip(decoder_optimizer)
        if not self.aggressive.active:  # in the aggressive phase the encoder has had its updates
            encoder_optimizer.step()
        decoder_optimizer.step()
        self.log("train/aggressive", float(self.aggressive.active), on_step=False, on_epoch=True)
        return loss.detach()

    def _fresh_batch(self):
        """Another training batch for the inner loop, drawn from this rank's own shuffled loader."""
        if self._burn_batches is None:
            def cycle():
                while True:
                    yield from self.trainer.datamodule.train_dataloader()
            self._burn_batches = cycle()
        return batch_to(next(self._burn_batches), self.device)

    def _clip(self, optimizer) -> None:
        if self.grad_clip_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm")

    # The NaN/Inf guard: the first non-finite training loss or gradient stops the run with NonFiniteError
    # (textvae-train: one line naming the step and the term, no export), before the optimiser writes it into
    # the weights. Without it a run whose loss is NaN from its first step trains on and exports NaN weights.

    def _where(self) -> str:
        return f"step {self.global_step} (epoch {self.current_epoch})"

    def _stop_if_nonfinite(self, terms) -> None:
        """Stop on a non-finite training loss, before its backward pass. Under DDP every rank learns whether
        any rank's loss is non-finite (one all-reduce of a flag) and all stop together: a rank stopping alone
        would leave the others waiting forever in the gradient all-reduce."""
        values = {"loss": terms.loss, **terms.metrics}
        bad = not all_finite([torch.as_tensor(v, device=terms.loss.device) for v in values.values()])
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            bad_somewhere = bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        else:
            bad_somewhere = bad
        if not bad_somewhere:
            return
        if not bad:
            raise NonFiniteError(f"the training loss became non-finite on another process at {self._where()}; "
                                 f"no model was exported. Lower --model.lr (now {self.lr:g})")
        # the terms the loss is made of; elbo and loss are sums of them, named only when nothing else is
        named = nonfinite_terms({k: v for k, v in terms.metrics.items() if k != "elbo"}) or nonfinite_terms(values)
        rank = f" on process {trainer.global_rank}" if trainer is not None and trainer.world_size > 1 else ""
        raise NonFiniteError(f"the training loss became non-finite{rank} at {self._where()}: {', '.join(named)}; "
                             f"no model was exported. Lower --model.lr (now {self.lr:g}) or check the data")

    def on_before_optimizer_step(self, optimizer):
        """Stop on a non-finite gradient (a finite loss can still overflow in the backward pass) before the
        optimiser steps. Gradients are all-reduced under DDP, so every rank sees the same and stops together.
        Skipped under 16-bit mixed precision, whose gradient scaler skips such steps by design."""
        self._grad_norm = None
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return
        named = [(name, p.grad) for name, p in self.named_parameters() if p.grad is not None]
        grads = [grad for _, grad in named]
        if self.automatic_optimization and str(self.trainer.precision) in ("32-true", "32"):
            # one pass over the gradients for the guard and the clipping: their global norm is finite exactly when
            # every element is (or, rarely, when finite values overflow it: then the elementwise check decides)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None
            if norm is None or bool(torch.isfinite(norm)) or all_finite(grads):
                self._grad_norm = (grads, norm)
                return
        elif all_finite(grads):
            return
        bad = [name for name, grad in named if not torch.isfinite(grad).all()]
        raise NonFiniteError(f"the gradient became non-finite at {self._where()} (in {bad[0]}"
                             f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); no model was exported. "
                             f"Lower --model.lr (now {self.lr:g}) or set --model.grad_clip_norm")

    def on_train_epoch_start(self):
        if self.ae_pretrain_epochs and self.current_epoch == self.ae_pretrain_epochs and not self._reset_done():
            self._end_pretraining()

    def _reset_done(self) -> bool:
        return self.schedule_start > 0

    def _end_pretraining(self) -> None:
        """Li et al. (2019): keep the pretrained encoder, re-initialise the decoder and what the optimiser
        remembers of it, and start the KL schedule from here. VaDE: fit the mixture prior instead."""
        if self.after_pretraining == "fit_mixture":
            self._fit_mixture()
            self.schedule_start = max(self.batches_seen, 1)
            print(f"textvae-train: autoencoder pretraining done after {self.ae_pretrain_epochs} epochs: mixture prior "
                  "fitted to the training codes, KL schedule starts")
            return
        self.model.reset_decoder()
        inference = {id(p) for p in self.model.inference_parameters()}
        optimizers = self.optimizers()
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    if id(parameter) not in inference:
                        optimizer.state.pop(parameter, None)
        self.schedule_start = max(self.batches_seen, 1)
        for callback in self.trainer.callbacks:  # the autoencoder's validation scores are no yardstick
            if isinstance(callback, pl.callbacks.EarlyStopping):
                callback.wait_count = 0
                callback.best_score = torch.tensor(math.inf if callback.mode == "min" else -math.inf)
        print(f"textvae-train: autoencoder pretraining done after {self.ae_pretrain_epochs} epochs: decoder "
              "re-initialised, KL schedule starts")

    @torch.no_grad()
    def _fit_mixture(self) -> None:
        """VaDE's initialisation: EM on the posterior means of the training examples, into the mixture prior
        (every rank encodes all of them and runs the same seeded EM, so the ranks agree)."""
        prior = self.model.prior
        data = self.trainer.datamodule
        dataset = data.dataset("train")
        collate = collate_sentences if data.kind == "sentences" else collate_dialogues
        was_training = self.model.training
        self.model.eval()
        codes = []
        for start in range(0, len(dataset), 256):
            batch = batch_to(collate([dataset[i] for i in range(start, min(start + 256, len(dataset)))]), self.device)
            codes.append(self.model.infer(batch).q.code.float())
        self.model.train(was_training)
        codes = torch.cat(codes)
        fit = fit_gaussian_mixture(codes, prior.mu.shape[0], restarts=MIXTURE_RESTARTS,
                                   generator=torch.Generator().manual_seed(0))
        prior.mu.copy_(fit.mu.to(prior.mu))
        prior.logvar.copy_(fit.logvar.to(prior.logvar))
        if prior.logits.requires_grad:
            prior.logits.copy_(fit.logits.to(prior.logits))
        optimizers = self.optimizers()
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for parameter in (prior.mu, prior.logvar, prior.logits):
                optimizer.state.pop(parameter, None)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_validation_epoch_end(self):
        self._after_validation_elbo()
        codes, posteriors = self._val_codes, self._val_posteriors
        self._val_codes, self._val_posteriors = [], []
        if self.trainer.sanity_checking or sum(len(c) for c in codes) < 2:
            return
        code = torch.cat(codes)
        if self.trainer.world_size > 1:
            code = self.all_gather(code).reshape(-1, code.shape[-1])
        units, _ = active_units(code)
        self.log("val/active_units", float(units), sync_dist=False, rank_zero_only=True)
        if self.aggressive is not None:
            # every rank computes the MI of its own validation shard and follows rank 0's decision
            mi = mutual_information(concatenate(posteriors), generator=torch.Generator().manual_seed(0))
            mi = float(self.trainer.strategy.broadcast(torch.tensor(mi), src=0))
            self.aggressive.after_validation(mi)
            self.log("val/mi", mi, sync_dist=False, rank_zero_only=True)
        if self.pretraining:  # autoencoder epochs do not count for early stopping
            for callback in self.trainer.callbacks:
                if isinstance(callback, pl.callbacks.EarlyStopping):
                    callback.wait_count = 0

    def _after_validation_elbo(self) -> None:
        """``lr_decay``: this validation's ELBO (summed over the ranks) into the rule (:class:`PlateauDecay`), and
        its decision carried out. Here, before the checkpoint callbacks save this epoch, so a resumed run carries
        on from the same decision."""
        (total, count), self._val_elbo = self._val_elbo, (0.0, 0)
        if self.plateau is None or self.trainer.sanity_checking or self.pretraining or not count:
            return
        sums = torch.stack([torch.as_tensor(total, device=self.device, dtype=torch.float64),
                            torch.tensor(float(count), device=self.device, dtype=torch.float64)])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        score = float(sums[0] / sums[1])
        action = self.plateau.after_validation(score, self.current_epoch + 1 - self.ae_pretrain_epochs)
        decay = self.plateau.decay
        if action == "improved" and decay.restore_best:
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if action not in ("decay", "stop"):
            return
        restored = decay.restore_best and self._best_state is not None
        if restored:
            self.model.load_state_dict(self._best_state)
        optimizers = self.optimizers()
        rates = []
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                if action == "decay":
                    group["lr"] *= decay.factor
                rates.append(group["lr"])
            if restored:
                optimizer.state.clear()  # He et al. build new optimisers at the restored weights
        back = f", weights back to the best (validation ELBO {self.plateau.best:.2f})" if restored else ""
        if action == "stop":
            self.trainer.should_stop = True
            rank_zero_info(f"textvae-train: the validation ELBO stopped improving after {decay.max_decays - 1} "
                           f"learning-rate decays: training ends{back}")
        else:
            rank_zero_info(f"textvae-train: {decay.patience} epoch(s) with a worse validation ELBO (now {score:.2f}): "
                           f"learning rate {max(rates):g} (decay {self.plateau.decays} of {decay.max_decays - 1}){back}")

    # Resuming gives the run an uninterrupted one would have had. The random draws of training (word dropout,
    # dropout, the reparameterisation noise) come from torch's global generators; their state at the
    # checkpoint travels in it, one per rank, and is put back when training restarts. Validation draws from
    # generators seeded afresh each time and then gives the training state back, so neither the sanity check
    # of a resumed run nor the validation before a checkpoint shifts the training stream, and a validation
    # figure depends on the weights alone.

    def on_validation_start(self):
        self._training_rng = rng_state(self.device)
        torch.manual_seed(VALIDATION_SEED)  # every device's generator

    def on_validation_end(self):
        if self._training_rng is not None:
            set_rng_state(self._training_rng, self.device)
            self._training_rng = None

    def setup(self, stage: str) -> None:
        """A model conditioned on labels must agree with the data's label inventory (``data.label_key``)."""
        wanted = getattr(self.model, "num_labels", 0)
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not wanted or not isinstance(data, TextDataModule):
            return
        have = data.num_labels
        if have != wanted:
            names = ", ".join(data.labels.names[:10]) if data.kind == "sentences" and have else "none"
            raise DataError(f"the model is conditioned on {wanted} labels but the data has {have} under "
                            f"data.label_key {data.label_key!r} ({names}); set model.model.init_args.num_labels "
                            f"to {have}" + (" or choose another data.label_key" if have < 2 else ""))

    def on_train_start(self):
        if self._resumed_rng is not None:
            states, self._resumed_rng = self._resumed_rng, None
            rank = self.global_rank
            if rank < len(states):  # a run resumed on more ranks than saved it: the new ranks keep their seeds
                set_rng_state(states[rank], self.device)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["textvae"] = {"batches_seen": self.batches_seen, "schedule_start": self.schedule_start,
                                 "epoch_progress": list(self.epoch_progress), "rng": self._all_rng_states()}
        if self.aggressive is not None:
            checkpoint["textvae"]["aggressive"] = self.aggressive.state_dict()
        if self.plateau is not None:
            checkpoint["textvae"]["lr_decay"] = self.plateau.state_dict() | {"best_state": self._best_state}

    def _all_rng_states(self) -> list[dict[str, torch.Tensor]]:
        """The training stream's generator states of every rank (saved inside a validation: the state it
        will give back). Every rank saves a checkpoint (only rank 0 writes it), so the gather is collective."""
        state = self._training_rng if self._training_rng is not None else rng_state(self.device)
        if self.trainer.world_size == 1:
            return [state]
        gathered = {name: self.all_gather(tensor.to(self.device)).cpu() for name, tensor in state.items()}
        return [{name: gathered[name][rank] for name in state} for rank in range(self.trainer.world_size)]

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("textvae", {})
        # a checkpoint from before the clock was kept: one optimiser step per batch
        self.batches_seen = int(state.get("batches_seen", checkpoint.get("global_step", 0)))
        self.schedule_start = int(state.get("schedule_start", 0))
        if self.aggressive is not None and "aggressive" in state:
            self.aggressive.load_state_dict(state["aggressive"])
        if self.plateau is not None and "lr_decay" in state:
            self.plateau.load_state_dict(state["lr_decay"])
            self._best_state = state["lr_decay"]["best_state"]
        self._resumed_rng = state.get("rng")  # older checkpoints: the seeds of this run
        self.epoch_progress = tuple(int(n) for n in state.get("epoch_progress", (0, 0)))

    def _optimizer(self, parameters):
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, weight_decay=self.weight_decay)
        # The fused kernel takes the Adam step from ~40% of a CPU training step to a few percent. Lightning's
        # mixed precision (16-mixed, bf16-mixed) refuses to clip the gradients of a fused optimizer.
        mixed = self._trainer is not None and str(self._trainer.precision).endswith("-mixed")
        fused = not mixed and all(p.device.type in ("cpu", "cuda") for p in self.parameters())
        return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay, fused=fused)

    def configure_optimizers(self):
        if self.aggressive is None:
            return self._optimizer(self.parameters())
        inference = list(self.model.inference_parameters())
        ids = {id(p) for p in inference}
        return [self._optimizer(inference), self._optimizer([p for p in self.parameters() if id(p) not in ids])]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip = gradient_clip_val if gradient_clip_val is not None else self.grad_clip_norm
        if not clip:
            return
        measured, self._grad_norm = self._grad_norm, None
        if measured is None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            return
        grads, norm = measured  # torch.nn.utils.clip_grad_norm_ with the norm the guard took
        if norm is not None and float(norm) + 1e-6 > clip:  # a factor of 1 would leave every gradient as it is
            torch._foreach_mul_(grads, clip / (norm + 1e-6))
