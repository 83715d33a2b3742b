"""Data layer: prepared-corpus records, tokenizers, Hugging Face datasets loading and batching."""
