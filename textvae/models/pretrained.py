"""Pretrained Transformer backbones for the sentence VAE (Li et al. 2020, "Optimus"; LangVAE): the encoder from
any local Hugging Face encoder model (BERT-like), the decoder from any local causal LM (GPT-2-like), each
loaded from its folder and nothing downloaded (``transformers``: ``pip install -e ".[hf]"``).

* :class:`PretrainedEncoder`: the sentence's text through the encoder model's own tokenizer and the model;
  its pooled output (BERT's pooler; the first token's state for a model without one) is what the posterior
  reads. The batch holds the *decoder's* token ids (the data's tokenizer is the decoder's,
  :class:`~textvae.data.tokenizers.HuggingFaceTokenizer`), so the encoder turns each row back into text with
  the decoder's tokenizer and encodes that with its own, as Optimus feeds BERT and GPT-2 their own tokens.
* :class:`PretrainedDecoder`: the causal LM conditioned on z the two ways Optimus compares, or both:
  ``"memory"``, z projected to one extra key/value slot in every attention layer (the same vector as key and
  value, Optimus's ``past``); ``"embedding"``, z projected and added to every input embedding. It predicts
  textvae's ids: the LM's own vocabulary shifted by the four special ids, whose input embeddings and output rows
  are new parameters, initialised from the LM's own end-of-text token where it has one.

Both keep the interfaces of :class:`~textvae.models.modules.TransformerEncoder` and
:class:`~textvae.models.modules.TransformerDecoder`, so training, IW-NLL, sampling, homotopy and export work
on them unchanged. An export stores each backbone's configuration and tokenizer beside the weights
(:meth:`PretrainedEncoder.save_assets`), never the pickled model.

:func:`make_tiny_backbones` writes a tiny randomly initialised BERT-style encoder and GPT-2-style decoder, with
tokenizers trained on a corpus, to local folders: what the tests and the synthetic recipe use, and a way to try
the model with no download (``python -m textvae.models.pretrained --texts FILE --out DIR``).

Notation: B batch, T tokens, H the model's width, L layers, Z latent.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from textvae.data.records import DataError
from textvae.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    HuggingFaceTokenizer,
    load_huggingface_tokenizer,
)

OFFSET = len(SPECIAL_TOKENS)  # textvae id = the pretrained model's id + OFFSET
Injection = Literal["memory", "embedding", "both"]


def _transformers():
    try:
        import transformers
    except ImportError:
        raise DataError("pretrained backbones need transformers: pip install -e '.[hf]'") from None
    transformers.logging.set_verbosity_error()  # a tiny config's unused token ids are not the user's concern
    transformers.logging.disable_progress_bar()  # loading a local folder takes no time worth a bar
    return transformers


def _load_model(folder: str, kind: Literal["encoder", "causal"], load_weights: bool) -> nn.Module:
    """The model in a local folder: its weights (``load_weights``), or its configuration alone, randomly
    initialised (what an export rebuilds before loading its own weights). A DataError says what is wrong."""
    transformers = _transformers()
    auto = transformers.AutoModel if kind == "encoder" else transformers.AutoModelForCausalLM
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: no config.json; give the local folder of a Hugging Face "
                        f"{'encoder model (BERT-like)' if kind == 'encoder' else 'causal LM (GPT-2-like)'}")
    if load_weights and not any(path.glob("*.safetensors")):  # never a pickled checkpoint (pytorch_model.bin)
        raise DataError(f"{path}: no *.safetensors weights; textvae loads no pickled checkpoint (pytorch_model.bin): "
                        "save the model with save_pretrained(safe_serialization=True)")
    try:
        if load_weights:
            model = auto.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        else:
            model = auto.from_config(transformers.AutoConfig.from_pretrained(str(path), local_files_only=True))
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: cannot build the model ({str(err).splitlines()[0]})") from None
    return model.train()  # from_pretrained leaves it in eval mode; a new module is in training mode until eval()


def _save_assets(model: nn.Module, tokenizer: Any, folder: Path) -> None:
    """A backbone's configuration and tokenizer (JSON files), not its weights: the export's safetensors hold those."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


class PretrainedEncoder(nn.Module):
    """A Hugging Face encoder model over each sentence's text: (tokens (B, T), lengths (B,)) -> (B, H).

    Args:
        model: the encoder model's local folder (``config.json``, weights, tokenizer).
        text_tokenizer: the local folder of the tokenizer whose ids the batches hold (the decoder's).
        load_weights: load the pretrained weights (False: its configuration, randomly initialised).
        max_tokens: the encoder's tokens per sentence, its own specials included (default its position limit).
    """

    def __init__(self, model: str, text_tokenizer: str, *, load_weights: bool = True, max_tokens: int | None = None):
        super().__init__()
        self.model = _load_model(model, "encoder", load_weights)
        self.tokenizer = load_huggingface_tokenizer(model)
        self.text_tokenizer = HuggingFaceTokenizer(text_tokenizer)
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        self.max_tokens = min(max_tokens or limit, limit)
        self.output_dim = self.model.config.hidden_size

    def texts(self, tokens: Tensor) -> list[str]:
        """The text of each row of textvae ids (B, T) (BOS .. EOS, PAD after)."""
        return [self.text_tokenizer.decode(row) for row in tokens.tolist()]

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        encoded = self.tokenizer(self.texts(tokens), padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt")
        encoded = {name: value.to(tokens.device) for name, value in encoded.items()}
        out = self.model(**encoded)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]  # (B, H)

    def save_assets(self, folder: Path) -> None:
        _save_assets(self.model, self.tokenizer, folder)


class PretrainedState(NamedTuple):
    """Incremental decoding: each layer's keys and values so far (the memory slot first), the next position,
    and z's input-embedding term (None without embedding injection)."""

    cache: tuple[tuple[Tensor, Tensor], ...]
    position: int
    latent: Tensor | None


class PretrainedDecoder(nn.Module):
    """A Hugging Face causal LM that predicts textvae's ids, conditioned on z.

    Args:
        model: the causal LM's local folder (``config.json``, weights, tokenizer).
        vocab_size: textvae's vocabulary, the LM tokenizer's size + 4 special ids (the data's tokenizer).
        latent_dim: size of z; 0: no latent (a language model).
        injection: ``"memory"`` (an extra key/value slot in every attention layer), ``"embedding"`` (added to every
            input embedding) or ``"both"`` (Optimus's best).
        load_weights: load the pretrained weights (False: its configuration, randomly initialised).
    """

    def __init__(self, model: str, *, vocab_size: int, latent_dim: int = 0, injection: Injection = "both",
                 load_weights: bool = True):
        super().__init__()
        if injection not in ("memory", "embedding", "both"):
            raise ValueError(f"injection must be 'memory', 'embedding' or 'both', got {injection!r}")
        self.folder, self.load_weights = model, load_weights
        self.lm = _load_model(model, "causal", load_weights)
        self.tokenizer = load_huggingface_tokenizer(model)
        config = self.lm.config
        rows = self.lm.get_output_embeddings().weight.shape[0]
        if not OFFSET < vocab_size <= rows + OFFSET:
            raise ValueError(f"vocab_size {vocab_size} does not fit the LM's {rows} output rows + {OFFSET} special ids: "
                             f"train on the decoder's own tokenizer (data.tokenizer_dir: {model})")
        self.vocab_size, self.latent_dim = vocab_size, latent_dim
        width = config.hidden_size
        self.num_layers = config.num_hidden_layers
        heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or heads
        self.head_dim = getattr(config, "head_dim", None) or width // heads
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 1024)
        self.special_embedding = nn.Embedding(OFFSET, width)  # textvae's PAD, BOS, EOS, UNK as inputs
        self.special_output = nn.Linear(width, OFFSET)  # ... and as outputs
        memory = latent_dim and injection in ("memory", "both")
        embedding = latent_dim and injection in ("embedding", "both")
        self.latent_to_memory = nn.Linear(latent_dim, self.num_layers * self.kv_heads * self.head_dim) if memory else None
        self.latent_to_embedding = nn.Linear(latent_dim, width) if embedding else None
        self.embedding = self.lm.get_input_embeddings()  # what AE pretraining's decoder reset keeps apart
        self.init_range = getattr(config, "initializer_range", 0.02)
        self._cache_argument = "cache" if "cache" in inspect.signature(self.lm.base_model.forward).parameters \
            else "past_key_values"
        self._cache_class = _transformers().DynamicCache  # looked up once, not at every decoding step
        self._init_new()

    def _init_new(self) -> None:
        """The new parameters at the LM's own initial scale (``initializer_range``): z's term in the input embeddings
        starts as small as a token's embedding instead of drowning it. The special ids start from the LM's own
        end-of-text token (GPT-2's ``<|endoftext|>`` marks both ends of its documents) where it has one, so a
        pretrained LM knows from the first step where sentences start and end."""
        for layer in (self.special_embedding, self.special_output, self.latent_to_embedding):
            if layer is not None:
                nn.init.normal_(layer.weight, std=self.init_range)
        nn.init.zeros_(self.special_output.bias)
        if self.latent_to_embedding is not None:
            nn.init.zeros_(self.latent_to_embedding.bias)
        end = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.lm.config.eos_token_id
        rows = self.lm.get_output_embeddings().weight.shape[0]
        if isinstance(end, int) and 0 <= end < rows:
            with torch.no_grad():
                self.special_embedding.weight[BOS_ID] = self.embedding.weight[end]
                self.special_output.weight[EOS_ID] = self.lm.get_output_embeddings().weight[end]
        with torch.no_grad():
            self.special_output.bias[PAD_ID] = self.special_output.bias[BOS_ID] = -10.0  # never predicted

    def reset_parameters(self) -> None:
        """Back to the pretrained LM (its random initialisation when built without weights), as AE pretraining's
        decoder reset asks (Li et al. 2019): the LM is the decoder's prior knowledge, not something AE training taught it."""
        fresh = _load_model(self.folder, "causal", self.load_weights)
        self.lm.load_state_dict(fresh.state_dict())
        if self.latent_to_memory is not None:
            self.latent_to_memory.reset_parameters()
        self._init_new()

    # -- conditioning ---------------------------------------------------------------------------------

    def _latent(self, z: Tensor | None) -> tuple[tuple[tuple[Tensor, Tensor], ...], Tensor | None]:
        """z (B, Z) -> each layer's memory (key, value), each (B, heads, 1, head dim), and the embedding term (B, H)."""
        if (z is None) != (self.latent_dim == 0):
            raise ValueError("this decoder needs z (B, Z)" if z is None else "this decoder has no latent: pass z=None")
        if z is None:
            return (), None
        memory: tuple[tuple[Tensor, Tensor], ...] = ()
        if self.latent_to_memory is not None:
            slots = self.latent_to_memory(z).view(z.shape[0], self.num_layers, self.kv_heads, 1, self.head_dim)
            memory = tuple((slots[:, i], slots[:, i]) for i in range(self.num_layers))  # key = value (Optimus)
        embedding = self.latent_to_embedding(z) if self.latent_to_embedding is not None else None
        return memory, embedding

    def _embed(self, tokens: Tensor, latent: Tensor | None) -> Tensor:
        special = tokens < OFFSET
        x = torch.where(special.unsqueeze(-1), self.special_embedding(tokens.clamp(max=OFFSET - 1)),
                        self.embedding((tokens - OFFSET).clamp(min=0)))  # (B, T, H)
        return x if latent is None else x + latent.unsqueeze(1)

    def _run(self, tokens: Tensor, cache: tuple[tuple[Tensor, Tensor], ...], latent: Tensor | None,
             position: int) -> tuple[Tensor, tuple[tuple[Tensor, Tensor], ...]]:
        """The LM's final states (B, T, H) for ``tokens`` at positions ``position`` on, after ``cache``."""
        b, t = tokens.shape
        past = cache[0][0].shape[2] if cache else 0
        kwargs: dict[str, Any] = {}
        if cache:
            kwargs[self._cache_argument] = self._cache_class(ddp_cache_data=cache, config=self.lm.config)
        positions = torch.arange(position, position + t, device=tokens.device).expand(b, t)
        out = self.lm.base_model(inputs_embeds=self._embed(tokens, latent), position_ids=positions,
                                 attention_mask=tokens.new_ones(b, past + t), use_cache=True, **kwargs)
        layers = out.past_key_values.layers
        return out.last_hidden_state, tuple((layer.keys, layer.values) for layer in layers)

    # -- the TransformerDecoder interface -------------------------------------------------------------

    def features(self, inputs: Tensor, z: Tensor | None) -> Tensor:
        """(B, T) decoder inputs -> (B, T, H) final states; right padding needs no mask (causal attention)."""
        memory, latent = self._latent(z)
        return self._run(inputs, memory, latent, 0)[0]

    def project(self, h: Tensor) -> Tensor:
        """(..., H) -> (..., V): the special ids' rows, then the LM's own (cut to the tokenizer's size)."""
        own = self.lm.get_output_embeddings()(h)[..., : self.vocab_size - OFFSET]
        return torch.cat([self.special_output(h), own], -1)

    def softmax_logits(self, h: Tensor) -> Tensor:
        """:meth:`project` for a loss (the textvae decoders' interface; here exactly V columns)."""
        return self.project(h)

    def masked_logits(self, inputs: Tensor, z: Tensor | None, mask: Tensor) -> Tensor:
        return self.project(self.features(inputs, z)[mask])  # (N, V)

    def forward(self, inputs: Tensor, z: Tensor | None) -> Tensor:
        return self.project(self.features(inputs, z))  # (B, T, V)

    def start(self, z: Tensor | None, batch_size: int | None = None) -> PretrainedState:
        if z is None and batch_size is None:
            raise ValueError("start(z=None) needs batch_size")
        memory, latent = self._latent(z)
        return PretrainedState(memory, 0, latent)

    def step(self, tokens: Tensor, state: PretrainedState) -> tuple[Tensor, PretrainedState]:
        h, cache = self._run(tokens.unsqueeze(1), state.cache, state.latent, state.position)
        return self.project(h[:, 0]), PretrainedState(cache, state.position + 1, state.latent)  # (B, V)

    def reorder(self, state: PretrainedState, index: Tensor) -> PretrainedState:
        cache = tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in state.cache)
        latent = None if state.latent is None else state.latent.index_select(0, index)
        return PretrainedState(cache, state.position, latent)

    def save_assets(self, folder: Path) -> None:
        _save_assets(self.lm, self.tokenizer, folder)


# ---------------------------------------------------------------------------------------------------
# Tiny local backbones: tests, the synthetic recipe, trying the model without a download


def make_tiny_backbones(out: str | os.PathLike, texts: Iterable[str], *, vocab_size: int = 2000, width: int = 128,
                        layers: int = 2, heads: int = 4, max_positions: int = 128, seed: int = 0) -> tuple[Path, Path]:
    """A BERT-style encoder (WordPiece) in ``out/encoder`` and a GPT-2-style causal LM (byte-level BPE) in
    ``out/decoder``, randomly initialised, their tokenizers trained on ``texts`` (``vocab_size`` each), saved as
    a Hugging Face model folder is (config, safetensors, tokenizer): what a downloaded bert-base / gpt2 folder
    holds, at a size a test trains in seconds. Returns the two folders."""
    transformers = _transformers()
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = list(texts)
    if not texts:
        raise DataError("no texts to train the tiny backbones' tokenizers on")
    out = Path(out)
    torch.manual_seed(seed)

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    encoder_tokenizer = transformers.BertTokenizerFast(tokenizer_object=wordpiece)
    encoder_config = transformers.BertConfig(
        vocab_size=wordpiece.get_vocab_size(), hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * width, max_position_embeddings=max_positions, pad_token_id=0)
    encoder = transformers.BertModel(encoder_config)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    decoder_tokenizer = transformers.GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                                       bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    end = bpe.token_to_id("<|endoftext|>")
    decoder_config = transformers.GPT2Config(
        vocab_size=bpe.get_vocab_size(), n_embd=width, n_layer=layers, n_head=heads, n_positions=max_positions,
        bos_token_id=end, eos_token_id=end)
    decoder = transformers.GPT2LMHeadModel(decoder_config)

    folders = out / "encoder", out / "decoder"
    for folder, model, tokenizer in zip(folders, (encoder, decoder), (encoder_tokenizer, decoder_tokenizer), strict=True):
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    return folders


def _texts(path: Path) -> Iterable[str]:
    """The texts of a prepared JSONL file (``text``) or of a plain one (a sentence per line)."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)["text"] if path.suffix == ".jsonl" else line.rstrip("\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m textvae.models.pretrained",
                                     description="Write a tiny randomly initialised BERT-style encoder and GPT-2-style "
                                                 "decoder, tokenizers trained on TEXTS, to OUT/encoder and OUT/decoder.")
    parser.add_argument("--texts", type=Path, required=True, help="training texts: prepared JSONL or one per line")
    parser.add_argument("--out", type=Path, required=True, help="folder for encoder/ and decoder/")
    parser.add_argument("--vocab-size", type=int, default=2000, help="each tokenizer's vocabulary (default 2000)")
    parser.add_argument("--width", type=int, default=128, help="model width (default 128)")
    parser.add_argument("--layers", type=int, default=2, help="Transformer layers of each (default 2)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    args = parser.parse_args(argv)
    if not args.texts.is_file():
        parser.error(f"--texts {args.texts}: no such file")
    for name in ("vocab_size", "width", "layers", "heads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.width % args.heads:
        parser.error(f"--width {args.width} must be a multiple of --heads {args.heads}")
    try:
        encoder, decoder = make_tiny_backbones(args.out, _texts(args.texts), vocab_size=args.vocab_size,
                                               width=args.width, layers=args.layers, heads=args.heads)
    except (DataError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
        parser.error(f"--texts {args.texts}: {err}")
    print(f"wrote {encoder} and {decoder}")


if __name__ == "__main__":
    main()


__all__ = ["PretrainedDecoder", "PretrainedEncoder", "PretrainedState", "make_tiny_backbones"]
