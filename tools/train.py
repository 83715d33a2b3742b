"""textvae-train: train, validate and test a textvae model from a recipe (LightningCLI).

    textvae-train fit --config recipes/quickstart.yaml [--trainer.max_epochs 3] [--run DIR] [--export DIR]

Any option of the recipe can be overridden with a dotted flag. The resolved config is saved in the
run folder; after ``fit`` the model is exported (config JSON + safetensors + tokenizer) to ``--export``
(default: ``<run folder>/export``), which every other textvae tool loads with ``--model DIR``. ``--run DIR``
names the run's one folder: logs, checkpoints and the export go there together, wherever the recipe put them.

What would otherwise fail late or silently fails at the start, in one line (``textvae-train: error: ...``,
exit code 2): a ``--ckpt_path`` that is not a local checkpoint loading with ``weights_only=True``, an output
folder (runs, logs, checkpoints, the data cache, the export's parent) that cannot be written, an optimiser
setting no run can train with, and an export folder another run is exporting to (its lock, ``DIR.lock``, is
held from the start of training until the export is written). A non-finite loss or gradient stops training
in one line naming the step and the term, and nothing is exported.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from textvae.data.records import DataError, DataWarning
from textvae.export import check_export_target, export_lock, save_export
from textvae.guards import (
    NonFiniteError,
    SetupError,
    all_finite,
    check_checkpoint,
    check_writable_folder,
    is_url,
)
from textvae.lightning import TextDataModule, TextVAESystem
from tools import print_warning, restore_interrupt
from tools._cli import Progress


class OneLineParser(LightningArgumentParser):
    """A user's mistake on the command line is one line, as in every textvae tool: ``textvae-train: error: ...``
    (exit code 2), instead of jsonargparse's whole usage and a tip before it."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse parsing a part leniently: the error is its to catch
            return super().error(message, ex)
        self.exit(2, f"textvae-train: error: {' '.join(str(message).split())}\n")


class TrainCLI(LightningCLI):
    def __init__(self, *args, resources: ExitStack, **kwargs):
        self.resources = resources  # what the run holds until it ends: the export folder's lock
        self.export_target: Path | None = None
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.vocab_size", "model.model.init_args.vocab_size", apply_on="instantiate")
        # The corpus' dialog act and topic inventories and its speaker profiles, for the models that take
        # them (CVAE/kgCVAE). jsonargparse skips a link whose target the chosen model class lacks
        # (SentenceVAE, HRED, VHRED).
        parser.link_arguments("data.num_acts", "model.model.init_args.num_acts", apply_on="instantiate")
        parser.link_arguments("data.num_topics", "model.model.init_args.num_topics", apply_on="instantiate")
        parser.link_arguments("data.profile_dim", "model.model.init_args.profile_dim", apply_on="instantiate")
        # the data module's batch sampler splits length buckets across DDP ranks itself
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        parser.add_argument("--export", type=str | None, default=None,
                            help="export folder for the trained model (default: <run folder>/export)")
        parser.add_argument("--run", type=str | None, default=None,
                            help="the run's one folder: the trainer's root, every logger's save_dir, the checkpoints "
                                 "(under the logs) and the export (<run>/export unless --export) all go there")

    def parse_arguments(self, parser, args):
        """Refuse an unsafe ``--ckpt_path`` before Lightning reads it, and load every checkpoint with
        ``weights_only=True`` (tensors and plain data: nothing in the file can run code)."""
        super().parse_arguments(parser, args)
        given = sys.argv[1:] if args is None else args
        self._export_given = isinstance(given, list) and any(
            isinstance(a, str) and (a == "--export" or a.startswith("--export=")) for a in given)
        config = self.config.get(self.config.get("subcommand") or "", None)
        if config is None:
            return
        if "weights_only" in config:
            if config.get("weights_only") is False:
                raise SetupError("--weights_only false is not supported: textvae-train loads checkpoints with "
                                 "weights_only=True only")
            config["weights_only"] = True
        if config.get("ckpt_path"):
            check_checkpoint(str(config["ckpt_path"]))

    def before_instantiate_classes(self):
        """``--run DIR`` moves every output of the run there; the data module writes its cache as it is built:
        check the folder first."""
        self._one_run_folder(self.config[self.subcommand], export_given=getattr(self, "_export_given", False))
        data = self.config[self.subcommand].get("data")
        if data is not None and data.get("train") and Path(data["train"]).is_file():  # else: the data's own error
            cache = data.get("cache_dir") or TextDataModule.default_cache_dir(data["train"])
            check_writable_folder(cache, f"the data cache folder {cache}",
                                  "give a writable one with --data.cache_dir DIR")

    @staticmethod
    def _one_run_folder(config, *, export_given: bool) -> None:
        """With ``--run DIR``: the trainer's root, the loggers' save_dir (the checkpoints follow the first
        logger's folder), a checkpoint callback's explicit dirpath and the export (unless ``--export`` is on the
        command line), all under DIR, so a run on other data never writes into the recipe's ``runs/NAME``."""
        run = config.get("run")
        if not run:
            return
        trainer = config["trainer"]
        trainer["default_root_dir"] = run
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                init_args["save_dir"] = run
        for callback in trainer.get("callbacks") or []:
            init_args = getattr(callback, "init_args", None)
            if init_args is not None and init_args.get("dirpath"):
                init_args["dirpath"] = os.path.join(run, "checkpoints")
        if not export_given:  # the recipe's export moves with the run; one given on the command line stays
            config["export"] = os.path.join(run, "export")

    def instantiate_classes(self):
        """A setting the model, the data module or the trainer refuses (a ValueError in its constructor) is
        one line, not a traceback."""
        try:
            super().instantiate_classes()
        except DataError:
            raise
        except (ValueError, MisconfigurationException) as err:
            raise SetupError(f"invalid configuration: {err}") from None

    def after_instantiate_classes(self):
        """Check every folder the run will write before it starts, not when it first writes there, and that the
        trainer runs as many processes as a launcher (torchrun, SLURM) started."""
        trainer = self.trainer
        launched = os.environ.get("WORLD_SIZE", "")
        if launched.isdigit() and int(launched) != trainer.world_size:  # each process would train alone
            raise SetupError(f"the launcher started {launched} processes (WORLD_SIZE), but the trainer runs "
                             f"{trainer.world_size} ({trainer.num_nodes} node(s) x {trainer.num_devices} device(s)); "
                             "give --trainer.devices the processes per node, --trainer.num_nodes the nodes and "
                             "--trainer.strategy ddp")
        fix = "choose another with --trainer.default_root_dir"
        check_writable_folder(trainer.default_root_dir, f"the run folder {trainer.default_root_dir}", fix)
        for logger in trainer.loggers:
            if getattr(logger, "save_dir", None):
                check_writable_folder(logger.save_dir, f"the {type(logger).__name__} folder {logger.save_dir}",
                                      "set the logger's save_dir (--trainer.logger) to a writable folder")
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "dirpath", None) and not is_url(str(callback.dirpath)):
                check_writable_folder(callback.dirpath, f"the checkpoint folder {callback.dirpath}",
                                      "set the checkpoint callback's dirpath to a writable folder")
        if self.subcommand == "fit":
            export = self.config["fit"].get("export") or str(Path(trainer.log_dir or ".") / "export")
            self.export_target = Path(export)
            try:
                check_export_target(self.export_target)
            except DataError as err:
                raise SetupError(f"--export {err}") from None
            check_writable_folder(self.export_target.absolute().parent, f"--export {export}", "choose another --export")

    def before_fit(self):
        """Hold the export folder's lock from now until the export is written: a second run exporting there
        is refused at its start instead of silently overwriting this one's model (rank 0 exports, rank 0 locks)."""
        if self.trainer.is_global_zero:
            self.resources.enter_context(export_lock(self.export_target))

    def after_fit(self):
        export = str(self.export_target)
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        if best and getattr(checkpoint, "monitor", None):
            # export the best model by the monitored validation metric, not the last one
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            self.model.load_state_dict(state)
            print(f"textvae-train: exporting the best checkpoint by {checkpoint.monitor}: {best}")
        if not all_finite(list(self.model.parameters())):  # e.g. a last step with a finite loss, to inf weights
            raise NonFiniteError("the trained weights hold non-finite values (NaN or inf); no model was exported. "
                                 f"Lower --model.lr (now {self.model.lr:g})")
        if self.trainer.is_global_zero:
            try:
                self._export(export)
            except OSError as err:  # e.g. a full disk: the previous export, if any, is still in place
                raise SetupError(f"cannot write the export {export} ({err.strerror or err}); the trained model "
                                 "is in the run's checkpoints") from None
            print(f"textvae-train: model exported to {export}")

    def _export(self, export: str) -> None:
        data = self.datamodule
        info = {"data": {k: v for k, v in data.paths.items() if v}}
        if data.kind == "sentences":
            info["label_key"] = data.label_key  # where the label names came from
            save_export(export, self.model.model, data.tokenizer, kind="sentences", labels=data.labels.names,
                        info=info)
        else:
            # what the model was trained to read: the dialogue tools default to the same context and turn length
            save_export(export, self.model.model, data.tokenizer, kind="dialogues", max_context=data.max_context,
                        max_len=data.max_len, acts=data.acts.names, emotions=data.emotions.names,
                        topics=data.topics.names, info=info)


def _data_warnings_in_one_line() -> None:
    """A data warning (lines cut to max_len, records skipped) prints as ``textvae-train: warning: ...``, as the
    other tools print theirs, not with the file and source line of the code that noticed it."""
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print_warning("textvae-train", message)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line


def main(argv: list[str] | None = None) -> None:
    restore_interrupt()  # Lightning handles Ctrl-C in training (stops, exports nothing, exit code 1)
    _data_warnings_in_one_line()
    # Lightning 2.6's own isinstance check on a torch class that newer torch deprecates: nothing a user can change
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
    TextDataModule.progress = partial(Progress, "textvae-train")  # the first cache build of a large corpus, on a terminal
    try:
        with ExitStack() as resources:
            TrainCLI(TextVAESystem, TextDataModule, args=argv, parser_class=OneLineParser,
                     save_config_kwargs={"overwrite": True},
                     auto_configure_optimizers=False, resources=resources)
    except (DataError, SetupError, NonFiniteError) as err:
        message = " ".join(str(err).split())  # one line, whatever the message held
        print(f"textvae-train: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
