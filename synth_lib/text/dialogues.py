"""Multi-turn conversations grounded in a seed, stored as TRL's conversational `messages`.

One request per seed writes the whole conversation (UltraChat-style, for a persona chosen
per row), its transcript is parsed into `[{role, content}, ...]` and checked: user and
assistant alternate, starting with the user and ending with the assistant; the number of
exchanges is inside the configured range; no turn is empty or repeats an earlier one; and
the conversation stays on the seed's topic (embedding cosine to the seed). Every parsed
conversation is a row with its verdicts; `accepted` says whether all of them passed.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synth_lib.curation.anchor_filter import Embedder, embed
from synth_lib.engines.base import Engine, GenerationRequest, SamplingParams
from synth_lib.engines.output_checks import generation_verdict, shingle_jaccard
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.text.personas import PersonaSet

STAGE = "dialogues"
TEMPLATE = "dialogue"
PRIMED_ROLE = "user"  # the template ends with "User:", so the reply continues that turn
_ROLE_LINE = re.compile(r"^\s*\**\s*(user|human|assistant|ai|bot|system)\s*\**\s*:\s*", re.I)
_ROLE_NAMES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant",
               "bot": "assistant", "system": "system"}  # fmt: skip
MAX_REPEAT_JACCARD = 0.8

Message = dict[str, str]


@dataclass(frozen=True)
class DialogueSettings:
    """Sampling, the range of exchanges (user + assistant turn) and the gates' thresholds."""

    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=256))
    seed: int = 0
    min_turns: int = 2
    max_turns: int = 6
    requested_turns: tuple[int, ...] = (2, 3)
    min_topic_cosine: float = 0.3


@dataclass
class DialogueOutcome:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejection_reasons: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    turns: Counter[str] = field(default_factory=Counter)


def parse_transcript(text: str, primed_role: str | None = PRIMED_ROLE) -> list[Message]:
    """Messages from a 'User: … / Assistant: …' transcript; lines without a label continue
    the current message. A trailing user message nobody answered is dropped: it is the
    model starting an exchange it did not finish."""
    messages: list[Message] = []
    role = primed_role
    lines: list[str] = []

    def flush() -> None:
        content = "\n".join(lines).strip()
        primed_and_empty = role == primed_role and not messages and not content
        if role is not None and not primed_and_empty:
            messages.append({"role": role, "content": content})

    for line in text.splitlines():
        label = _ROLE_LINE.match(line)
        if label:
            flush()
            role, lines = _ROLE_NAMES[label.group(1).lower()], [line[label.end() :]]
        else:
            lines.append(line)
    flush()
    if len(messages) > 1 and messages[-1]["role"] == "user":
        messages.pop()
    return messages


def role_verdict(messages: Sequence[Mapping[str, str]]) -> Verdict:
    """Optional system message first, then user/assistant strictly alternating, ending with
    the assistant."""
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles:
        return Verdict("role_order", False, reason="no_messages")
    if roles[0] != "user":
        return Verdict("role_order", False, reason=f"starts_with_{roles[0]}")
    for i, (a, b) in enumerate(itertools.pairwise(roles)):
        if a == b or "system" in (a, b):
            return Verdict("role_order", False, float(i + 1), f"{b}_after_{a}")
    if roles[-1] != "assistant":
        return Verdict("role_order", False, reason="ends_with_user")
    return Verdict("role_order", True)


def turns_verdict(messages: Sequence[Mapping[str, str]], low: int, high: int) -> Verdict:
    exchanges = sum(1 for m in messages if m["role"] == "assistant")
    if not low <= exchanges <= high:
        return Verdict("turn_count", False, float(exchanges), f"turns_outside_{low}_{high}")
    return Verdict("turn_count", True, float(exchanges))


def content_verdict(messages: Sequence[Mapping[str, str]]) -> Verdict:
    """No empty turn, and no turn that repeats an earlier one (word 3-gram Jaccard)."""
    seen: list[str] = []
    for i, message in enumerate(messages):
        content = message["content"].strip()
        if not content:
            return Verdict("turn_content", False, float(i), "empty_turn")
        norm = " ".join(content.lower().split())
        for earlier in seen:
            if norm == earlier or shingle_jaccard(norm, earlier) >= MAX_REPEAT_JACCARD:
                return Verdict("turn_content", False, float(i), "repeated_turn")
        seen.append(norm)
    return Verdict("turn_content", True)


def transcript(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def topic_scores(
    dialogues: Sequence[Sequence[Mapping[str, str]]], seeds: Sequence[str], embedder: Embedder
) -> list[float]:
    """Cosine between each conversation's text and its seed."""
    if not dialogues:
        return []
    talk = embed(embedder, [transcript(d) for d in dialogues])
    sources = embed(embedder, list(seeds))
    return [float(x) for x in np.sum(talk * sources, axis=1)]


def generate_dialogues(
    seeds: Sequence[Mapping[str, Any]],
    engine: Engine,
    ctx: RowContext,
    embedder: Embedder,
    *,
    personas: PersonaSet | None,
    settings: DialogueSettings | None = None,
) -> DialogueOutcome:
    """One conversation per seed row (rows need `id`, `text`), parsed and checked."""
    settings = settings or DialogueSettings()
    template = load_template(TEMPLATE)
    planned = []
    for row in seeds:
        turns = settings.requested_turns[
            stable_seed("turns", row["id"], settings.seed) % len(settings.requested_turns)
        ]
        persona = personas.pick(row["id"], STAGE, settings.seed) if personas else None
        line = f"\nThe user is {persona.text}." if persona else ""
        request = GenerationRequest(
            f"{row['id']}:dialogue",
            template.render(persona_line=line, turns=turns, text=row["text"]),
            settings.sampling,
            stable_seed(settings.seed, row["id"], "dialogue"),
        )
        planned.append((request, row, persona, turns))
    results = engine.generate([p[0] for p in planned])
    outcome = DialogueOutcome()
    parsed = []
    for (request, row, persona, turns), result in zip(planned, results, strict=True):
        generated = generation_verdict(result)
        if not generated.passed:
            outcome.lost[(generated.reason or "failed").split(":")[0]] += 1
            continue
        messages = parse_transcript(result.text)
        checks = [
            generated,
            role_verdict(messages),
            turns_verdict(messages, settings.min_turns, settings.max_turns),
            content_verdict(messages),
        ]
        parsed.append((request, row, persona, turns, result, messages, checks))
    scores = topic_scores([p[5] for p in parsed], [p[1]["text"] for p in parsed], embedder)
    persona_set = personas.label if personas else None
    for (request, row, persona, turns, result, messages, checks), score in zip(
        parsed, scores, strict=True
    ):
        on_topic = score >= settings.min_topic_cosine
        checks.append(
            Verdict("on_topic", on_topic, round(score, 4), None if on_topic else "off_topic")
        )
        payload = {
            "messages": messages,
            "turns": sum(1 for m in messages if m["role"] == "assistant"),
            "requested_turns": turns,
            "persona_id": persona.id if persona else None,
            "persona": persona.text if persona else None,
            "persona_set": persona_set,
        }
        out = make_row(
            stage=STAGE,
            payload=payload,
            ctx=ctx,
            parents=[row],
            generator=generator_for(engine.identity, template, request.sampling, request.seed),
            verdicts=checks,
        )
        failed = [v for v in checks if not v.passed]
        out["accepted"] = not failed
        out["prompt_tokens"] = result.prompt_tokens
        out["completion_tokens"] = result.completion_tokens
        outcome.rows.append(out)
        outcome.turns[str(payload["turns"])] += 1
        if failed:
            outcome.rejection_reasons[failed[0].reason or "rejected"] += 1
    return outcome
