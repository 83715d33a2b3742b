"""KL annealing: beta as a function of the global optimiser step.

``KLSchedule(kind="logistic")`` is Bowman et al. (2016) as in timbmg/Sentence-VAE;
``kind="cyclical"`` is Fu et al. (2019), "Cyclical Annealing Schedule: A Simple Approach to Mitigating
KL Vanishing". Every schedule counts optimiser steps (``trainer.global_step``), never epochs.

Warm-up in epochs: a schedule counted in steps that is tuned on a large corpus may never reach
``max_beta`` on a small one. Keep ``warmup_steps`` (or ``total_steps``) the single source of truth and
let the program that knows the data size convert, e.g.
``KLSchedule(kind="linear", warmup_steps=epochs_to_steps(2, len(train_loader)))``, then check
``schedule.steps_to_max() <= planned_steps``.
"""

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["constant", "linear", "logistic", "cyclical"]
_KINDS = ("constant", "linear", "logistic", "cyclical")


def epochs_to_steps(epochs: float, steps_per_epoch: int, accumulate_grad_batches: int = 1) -> int:
    """Optimiser steps in ``epochs`` epochs of ``steps_per_epoch`` batches (rounded up)."""
    if epochs < 0 or steps_per_epoch < 1 or accumulate_grad_batches < 1:
        raise ValueError(
            f"need epochs >= 0, steps_per_epoch >= 1, accumulate_grad_batches >= 1; got {epochs}, "
            f"{steps_per_epoch}, {accumulate_grad_batches}"
        )
    return math.ceil(epochs * steps_per_epoch / accumulate_grad_batches)


@dataclass(frozen=True)
class KLSchedule:
    """beta(step) for the KL term; call it with the global step (0-based).

    * ``constant``: ``max_beta`` at every step (``min_beta`` is unused).
    * ``linear``: from ``min_beta`` at step 0 to ``max_beta`` at ``warmup_steps``, then ``max_beta``.
    * ``logistic``: ``min_beta + (max_beta - min_beta) / (1 + exp(-logistic_k (step - logistic_midpoint)))``;
      with ``min_beta = 0`` this is exactly Bowman et al./timbmg ``max_beta / (1 + exp(-k (step - x0)))``.
      It only approaches ``max_beta`` asymptotically (k=0.0025, x0=2500 gives 0.998 at step 5000).
    * ``cyclical``: ``total_steps`` split into ``cycles`` equal cycles; within each, beta rises linearly
      from ``min_beta`` to ``max_beta`` over the first ``cycle_ratio`` of the cycle and stays at
      ``max_beta`` for the rest. From ``total_steps`` on it stays at ``max_beta``.
    """

    kind: ScheduleKind = "constant"
    max_beta: float = 1.0
    min_beta: float = 0.0
    warmup_steps: int = 10_000
    logistic_k: float = 0.0025
    logistic_midpoint: int = 2500
    cycles: int = 4
    cycle_ratio: float = 0.5
    total_steps: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"KLSchedule kind must be one of {_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.min_beta <= self.max_beta:
            raise ValueError(
                f"need 0 <= min_beta <= max_beta, got min_beta={self.min_beta}, max_beta={self.max_beta}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.logistic_k <= 0:
            raise ValueError(f"logistic_k must be > 0, got {self.logistic_k}")
        if self.cycles < 1:
            raise ValueError(f"cycles must be >= 1, got {self.cycles}")
        if not 0.0 < self.cycle_ratio <= 1.0:
            raise ValueError(f"cycle_ratio must be in (0, 1], got {self.cycle_ratio}")
        if self.kind == "cyclical" and (self.total_steps is None or self.total_steps < self.cycles):
            raise ValueError(
                f"a cyclical schedule needs total_steps >= cycles ({self.cycles}), got {self.total_steps}; "
                "set it to the planned number of optimiser steps"
            )

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        span = self.max_beta - self.min_beta
        if self.kind == "constant":
            return self.max_beta
        if self.kind == "linear":
            if step >= self.warmup_steps:
                return self.max_beta
            return self.min_beta + span * step / self.warmup_steps
        if self.kind == "logistic":
            x = -self.logistic_k * (step - self.logistic_midpoint)
            # 1 / (1 + exp(x)) without overflow for very early steps
            sigmoid = 1.0 / (1.0 + math.exp(x)) if x < 700 else 0.0
            return self.min_beta + span * sigmoid
        # cyclical (Fu et al. 2019)
        assert self.total_steps is not None
        if step >= self.total_steps:
            return self.max_beta
        period = self.total_steps / self.cycles
        phase = (step % period) / period  # position in the current cycle, [0, 1)
        return self.min_beta + span * min(1.0, phase / self.cycle_ratio)

    def steps_to_max(self, tolerance: float = 0.01) -> int:
        """First step at which beta is within ``tolerance * (max_beta - min_beta)`` of ``max_beta``.

        Use it to check a schedule against the planned length of training (the first cycle's peak for
        ``cyclical``; the asymptote's neighbourhood for ``logistic``).
        """
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
        if self.kind == "constant" or self.max_beta == self.min_beta:
            return 0
        if self.kind == "linear":
            return math.ceil(self.warmup_steps * (1.0 - tolerance))
        if self.kind == "logistic":
            # sigmoid(k (s - x0)) >= 1 - tol  <=>  s >= x0 + log((1 - tol) / tol) / k
            return max(
                0,
                math.ceil(self.logistic_midpoint + math.log((1.0 - tolerance) / tolerance) / self.logistic_k),
            )
        assert self.total_steps is not None
        return math.ceil(self.total_steps / self.cycles * self.cycle_ratio * (1.0 - tolerance))


@dataclass(frozen=True)
class LRDecay:
    """Learning-rate decay on a validation plateau, the schedule He et al. (2019) and Li et al. (2019) train
    their text VAEs with (their code: halve the rate after 5 epochs without improvement, from the 15th epoch on,
    going back to the best weights each time; stop at the 5th decay).

    Their rule, after each validation: an ELBO worse than the reference (the last one that was not worse, or
    the one at the last decay) counts an epoch without improvement, any other resets the count. After
    ``patience`` of them (once ``min_epochs`` epochs are trained) every learning rate is multiplied by
    ``factor``; with ``restore_best`` the weights go back to the best validation's and the optimiser forgets
    its moments (they build new optimisers there). The ``max_decays``-th decay ends training instead, at the
    best weights. ``patience`` counts validations, as Lightning's ``EarlyStopping`` does: one per epoch unless
    ``trainer.val_check_interval`` validates more often. Autoencoder-pretraining epochs do not count. A
    checkpoint keeps the rule's counts and, with ``restore_best``, a copy of the best weights (so a resumed run
    decays as the uninterrupted one would).
    """

    factor: float = 0.5
    patience: int = 5
    max_decays: int = 5
    restore_best: bool = True
    min_epochs: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"lr_decay.factor must be in (0, 1), got {self.factor}")
        if self.patience < 1 or self.max_decays < 1 or self.min_epochs < 0:
            raise ValueError(f"lr_decay needs patience >= 1, max_decays >= 1 and min_epochs >= 0, got patience "
                             f"{self.patience}, max_decays {self.max_decays}, min_epochs {self.min_epochs}")


class PlateauDecay:
    """The bookkeeping of :class:`LRDecay`: :meth:`after_validation` takes each validation ELBO (higher is
    better) and the number of epochs trained, and says what to do: ``"improved"`` (the best so far: keep these
    weights), ``"decay"``, ``"stop"`` (the last decay) or ``None``. A non-finite ELBO is worse than any."""

    def __init__(self, decay: LRDecay):
        self.decay = decay
        self.best = -math.inf
        self.reference = -math.inf
        self.wait = 0
        self.decays = 0

    def after_validation(self, score: float, epochs_trained: int) -> str | None:
        improved = score > self.best
        if improved:
            self.best = score
        if score >= self.reference:  # no worse: the new reference
            self.reference, self.wait = score, 0
            return "improved" if improved else None
        self.wait += 1
        if self.wait < self.decay.patience or epochs_trained < self.decay.min_epochs:
            return None
        self.wait = 0
        self.decays += 1
        if math.isfinite(score):
            self.reference = score
        return "stop" if self.decays >= self.decay.max_decays else "decay"

    def state_dict(self) -> dict:
        return {"best": self.best, "reference": self.reference, "wait": self.wait, "decays": self.decays}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.reference = float(state["best"]), float(state["reference"])
        self.wait, self.decays = int(state["wait"]), int(state["decays"])
