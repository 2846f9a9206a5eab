"""Personas: who is asking, one short description per row, to widen what a prompt produces.

Persona-driven generation (Ge et al., 2024, "Scaling Synthetic Data Creation with 1,000,000,000
Personas") conditions each request on a different reader, so the same seed passage yields
different instructions and conversations. The personas are a versioned file beside the
prompts; its sha256 and the persona's own id go into every row that used one, so a row
can be traced to the exact persona text and a persona set can be rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from synth_lib.provenance.hashing import sha256_hex
from synth_lib.reasoning.seeding import stable_seed

DEFAULT_PERSONAS = "personas_v1"


@dataclass(frozen=True)
class Persona:
    """One persona: `id` hashes its text, so it survives reordering of the file."""

    id: str
    text: str


@dataclass(frozen=True)
class PersonaSet:
    """A versioned persona file: `label` (name@hash) is what rows record."""

    name: str
    hash: str
    personas: tuple[Persona, ...]

    @property
    def label(self) -> str:
        return f"{self.name}@{self.hash}"

    def pick(self, *key: object) -> Persona:
        """The persona for `key` (e.g. seed id, stage, seed): stable across runs and orders."""
        return self.personas[stable_seed(self.name, *key) % len(self.personas)]


def parse_personas(name: str, text: str) -> PersonaSet:
    """Personas from file text: one per line, `#` comments and blank lines skipped.

    A duplicate persona is an error naming both lines: it would silently double its weight.
    """
    seen: dict[str, int] = {}
    personas = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = " ".join(line.split())
        if not entry or entry.startswith("#"):
            continue
        if entry in seen:
            raise ValueError(f"{name}: line {number} repeats the persona on line {seen[entry]}")
        seen[entry] = number
        personas.append(Persona(sha256_hex(entry)[:12], entry))
    if not personas:
        raise ValueError(f"{name}: no personas in the file")
    return PersonaSet(name, sha256_hex(text)[:16], tuple(personas))


@cache
def load_personas(name: str = DEFAULT_PERSONAS) -> PersonaSet:
    """The packaged persona file `name` (without .txt) from the prompts folder."""
    path = resources.files("synth_lib.prompts") / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no persona file named {name!r} in synth_lib/prompts")
    return parse_personas(name, path.read_text(encoding="utf-8"))
