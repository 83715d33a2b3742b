"""textvae-train: train, validate and test a textvae model from a recipe (LightningCLI).

    textvae-train fit --config recipes/quickstart.yaml [--trainer.max_epochs 3] [--export DIR]

Any option of the recipe can be overridden with a dotted flag. The resolved config is saved in the
run folder; after ``fit`` the model is exported (config JSON + safetensors + tokenizer) to ``--export``
(default: ``<run folder>/export``), which every other textvae tool loads with ``--model DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from pytorch_lightning.cli import LightningCLI

from textvae.data.records import DataError
from textvae.export import save_export
from textvae.lightning import TextDataModule, TextVAESystem


class TrainCLI(LightningCLI):
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

    def after_fit(self):
        export = self.config[self.subcommand].get("export") or str(Path(self.trainer.log_dir or ".") / "export")
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        if best and getattr(checkpoint, "monitor", None):
            # export the best model by the monitored validation metric, not the last one
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            self.model.load_state_dict(state)
            print(f"textvae-train: exporting the best checkpoint by {checkpoint.monitor}: {best}")
        if self.trainer.is_global_zero:
            data = self.datamodule
            info = {"data": {k: v for k, v in data.paths.items() if v}}
            if data.kind == "sentences":
                save_export(export, self.model.model, data.tokenizer, kind="sentences", labels=data.labels.names,
                            info=info)
            else:
                # what the model was trained to read: the dialogue tools default to the same context and turn length
                save_export(export, self.model.model, data.tokenizer, kind="dialogues", max_context=data.max_context,
                            max_len=data.max_len, acts=data.acts.names, emotions=data.emotions.names,
                            topics=data.topics.names, info=info)
            print(f"textvae-train: model exported to {export}")


def main(argv: list[str] | None = None) -> None:
    try:
        TrainCLI(TextVAESystem, TextDataModule, args=argv, save_config_kwargs={"overwrite": True},
                 auto_configure_optimizers=False)
    except DataError as err:
        print(f"textvae-train: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
