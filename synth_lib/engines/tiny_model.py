"""The offline smoke model: a tiny random-weight causal LM with a tokenizer trained on seed text.

No weights can be downloaded in tests or on a fresh laptop, so the default engine builds
this once and caches it. Its output is noise by construction; its identity says so
(`is_smoke_model`, and a model name that starts with `smoke-random-`) so every row it
produces is labelled in provenance and the gates are expected to reject most of it.

Random weights almost never pick the end-of-text token, so every answer would be
truncated and no gate past "truncated" would ever run. Its generation config therefore
also stops at sentence-ending tokens: answers end after a few dozen tokens and the
stages' real checks (novelty, answer verification, tests) get noise to reject.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from synth_lib.provenance.hashing import sha256_hex

SMOKE_MODEL_NAME = "smoke-random-llama-2x64"
_SENTENCE_ENDS = (".", "?", "!")
VOCAB_SIZE = 2048
_MARKER = "smoke_model.json"


def _training_text() -> Iterable[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]


def _build(target: Path, seed: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    vocab = fast.convert_ids_to_tokens(list(range(tok.get_vocab_size())))
    stops = [
        i
        for i, t in enumerate(vocab)
        if fast.convert_tokens_to_string([t]).strip().endswith(_SENTENCE_ENDS)
    ]
    model.generation_config.eos_token_id = [fast.eos_token_id, *stops]
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(target)
    fast.save_pretrained(target)


def weights_digest(model_dir: Path) -> str:
    """sha256 over the weights and generation defaults: the `revision` of a local model."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    files += sorted(model_dir.glob("generation_config.json"))
    return sha256_hex(b"".join(sha256_hex(f.read_bytes()).encode() for f in files))[:16]


def ensure_smoke_model(cache_dir: str | Path, seed: int = 0) -> Path:
    """Return the smoke model's directory, building it atomically the first time."""
    target = Path(cache_dir) / SMOKE_MODEL_NAME
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        _build(staging, seed)
        info = {"name": SMOKE_MODEL_NAME, "seed": seed, "digest": weights_digest(staging)}
        (staging / _MARKER).write_text(json.dumps(info))
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def is_smoke_model_dir(model_dir: str | Path) -> bool:
    return (Path(model_dir) / _MARKER).is_file()
