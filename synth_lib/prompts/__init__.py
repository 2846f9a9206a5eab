"""Versioned prompt templates: files beside this module, hashed into provenance and code_version."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from synth_lib.provenance.hashing import sha256_hex


@dataclass(frozen=True)
class Template:
    """A prompt template; `hash` changes whenever the file's text does."""

    name: str
    text: str
    hash: str

    def render(self, **fields: object) -> str:
        return self.text.format(**fields)


@cache
def load_template(name: str) -> Template:
    """Load `name` (without extension; .txt, else .md) from the packaged prompts folder."""
    folder = resources.files(__package__)
    for ext in (".txt", ".md"):
        path = folder / f"{name}{ext}"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            return Template(name=name, text=text, hash=sha256_hex(text)[:16])
    raise FileNotFoundError(f"no prompt template named {name!r} in {folder}")


def templates_hash(*names: str) -> str:
    """One short hash over several templates, for an asset's code_version."""
    return sha256_hex("".join(load_template(n).hash for n in names))[:12]
