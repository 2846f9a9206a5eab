"""Multi-turn conversations grounded in a seed, stored as TRL's conversational `messages`.

Conversations are written turn by turn (UltraChat's simulated user and assistant): every
user question and every assistant answer is its own short request, batched across seeds,
one engine batch per turn and role. A whole transcript in one request fails on a small
model: the default 135M model ran past its budget or never wrote the second role (no
conversation accepted). The user turn asks for one question for the row's persona,
starting with a given word (a different one each turn, so a follow-up does not copy the
first question), and lists the questions already asked; the assistant turn sees the
passage, the earlier exchanges and the question. Both prompts live in one template file
(`=== user ===` / `=== assistant ===` sections), so one hash covers the pair.

A turn that fails (truncated, empty, refused, an error, a question longer than one line,
or one the turn-content gate below rejects: it repeats an earlier turn or ends unfinished)
ends its conversation there, and no further turn is asked for. The complete exchanges
before it are kept and checked like any conversation, and the row says so in a
`tail_dropped` verdict (which turn, why); with no complete exchange nothing is kept
(counted in `lost`).

Every kept conversation is checked: user and assistant alternate, starting with the user
and ending with the assistant; the number of exchanges is inside the configured range; no
turn is empty, repeats an earlier one, or ends unfinished (on a colon or comma: an answer
that stopped at its own lead-in); and the conversation stays on the seed's topic
(embedding cosine to the seed). `accepted` says whether every verdict passed.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synth_lib.curation.anchor_filter import Embedder, embed
from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, SamplingParams
from synth_lib.engines.output_checks import generation_verdict, shingle_jaccard
from synth_lib.prompts import Template, load_template
from synth_lib.provenance.hashing import canonical_json
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.text.personas import Persona, PersonaSet

STAGE = "dialogues"
TEMPLATE = "dialogue"
ROLES = ("user", "assistant")
OPENERS = ("What", "How", "Why", "When", "Which", "Can")
# a turn ends where the model starts the next labelled line, and by default at a blank line
LABEL_STOPS = ("\nUser:", "\nAssistant:", "\nQuestion:", "\nAnswer:")
TURN_STOPS = ("\n\n", *LABEL_STOPS)
_LABEL = re.compile(r"^\s*\**\s*(question|answer|user|assistant)\s*\**\s*:\s*", re.I)
_HISTORY_LABELS = {"user": "Question", "assistant": "Answer"}
MAX_REPEAT_JACCARD = 0.8
UNFINISHED_ENDINGS = (":", ",")

Message = dict[str, str]


def turn_sampling(temperature: float, max_tokens: int, paragraphs: bool = False) -> SamplingParams:
    """Sampling of one turn. `paragraphs`: the turn may run past a blank line (multi-paragraph
    answers, code blocks: stronger models), stopping only at the next role label."""
    return SamplingParams(
        temperature, max_tokens=max_tokens, stop=LABEL_STOPS if paragraphs else TURN_STOPS
    )


@dataclass(frozen=True)
class DialogueSettings:
    """Sampling per role, the range of exchanges (user + assistant turn) and the thresholds."""

    question: SamplingParams = field(default_factory=lambda: turn_sampling(0.3, 48))
    answer: SamplingParams = field(default_factory=lambda: turn_sampling(0.3, 96))
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
    tails_dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class _Talk:
    """One conversation being written: its seed, plan and the turns so far."""

    row: Mapping[str, Any]
    persona: Persona | None
    requested: int
    seed: int
    openers: tuple[str, ...]
    messages: list[Message] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: str | None = None  # "turn 2 user: truncated"


def turn_templates(template: Template) -> dict[str, str]:
    """The user and assistant prompts of the dialogue template, by role."""
    _, rest = template.text.split("=== user ===\n", 1)
    user, assistant = rest.split("=== assistant ===\n", 1)
    return {"user": user, "assistant": assistant}


def turn_text(result: GenerationResult, role: str) -> tuple[str, str | None]:
    """The turn's content without a leading role label, or why the turn failed."""
    generated = generation_verdict(result)
    if not generated.passed:
        return "", (generated.reason or "failed").split(":")[0]
    text = _LABEL.sub("", result.text.strip(), count=1).strip()
    if not text:
        return "", "empty"
    if role == "user" and "\n" in text:
        return "", "question_not_one_line"
    return text, None


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
    """No empty turn, no turn that repeats an earlier one (word 3-gram Jaccard), and no
    turn that ends on a lead-in (a colon or comma: what should follow it is missing)."""
    seen: list[str] = []
    for i, message in enumerate(messages):
        content = message["content"].strip()
        if not content:
            return Verdict("turn_content", False, float(i), "empty_turn")
        if content.endswith(UNFINISHED_ENDINGS):
            return Verdict("turn_content", False, float(i), "unfinished_turn")
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


def _prompt(prompts: Mapping[str, str], talk: _Talk, role: str, turn: int) -> str:
    text = talk.row["text"]
    if role == "user":
        asked = [m["content"] for m in talk.messages if m["role"] == "user"]
        listed = "; ".join(f'"{q}"' for q in asked)
        return prompts["user"].format(
            persona=talk.persona.text if talk.persona else "a curious user",
            opener=talk.openers[turn],
            asked=f" It must differ from the questions already asked: {listed}." if asked else "",
            text=text,
        )
    *earlier, question = talk.messages
    lines = [f"{_HISTORY_LABELS[m['role']]}: {m['content']}" for m in earlier]
    history = "\nEarlier in the conversation:\n" + "\n".join(lines) + "\n" if lines else ""
    return prompts["assistant"].format(text=text, history=history, question=question["content"])


def _write_turns(
    talks: Sequence[_Talk], engine: Engine, prompts: Mapping[str, str], settings: DialogueSettings
) -> None:
    """Every turn of every conversation, one engine batch per turn and role."""
    sampling = {"user": settings.question, "assistant": settings.answer}
    for turn in range(max((t.requested for t in talks), default=0)):
        for role in ROLES:
            active = [t for t in talks if t.stopped is None and t.requested > turn]
            requests = [
                GenerationRequest(
                    f"{t.row['id']}:dialogue:{turn}:{role}",
                    _prompt(prompts, t, role, turn),
                    sampling[role],
                    stable_seed(t.seed, turn, role),
                )
                for t in active
            ]
            for talk, result in zip(
                active, engine.generate(requests) if requests else [], strict=True
            ):
                talk.prompt_tokens += result.prompt_tokens
                talk.completion_tokens += result.completion_tokens
                content, failure = turn_text(result, role)
                if failure is None:  # the earlier turns passed: only the new one can fail
                    candidate = [*talk.messages, {"role": role, "content": content}]
                    checked = content_verdict(candidate)
                    if checked.passed:
                        talk.messages = candidate
                        continue
                    failure = checked.reason
                talk.stopped = f"turn {turn + 1} {role}: {failure}"
                if role == "assistant":  # the question nobody answered goes too
                    talk.messages.pop()


def generate_dialogues(
    seeds: Sequence[Mapping[str, Any]],
    engine: Engine,
    ctx: RowContext,
    embedder: Embedder,
    *,
    personas: PersonaSet | None,
    settings: DialogueSettings | None = None,
) -> DialogueOutcome:
    """One conversation per seed row (rows need `id`, `text`), written turn by turn, checked."""
    settings = settings or DialogueSettings()
    template = load_template(TEMPLATE)
    talks = []
    for row in seeds:
        pick = stable_seed("turns", row["id"], settings.seed)
        start = stable_seed("opener", row["id"], settings.seed)
        talks.append(
            _Talk(
                row=row,
                persona=personas.pick(row["id"], STAGE, settings.seed) if personas else None,
                requested=settings.requested_turns[pick % len(settings.requested_turns)],
                seed=stable_seed(settings.seed, row["id"], "dialogue"),
                openers=tuple(OPENERS[(start + k) % len(OPENERS)] for k in range(len(OPENERS))),
            )
        )
    _write_turns(talks, engine, turn_templates(template), settings)
    outcome = DialogueOutcome()
    kept = []
    for talk in talks:
        if talk.messages:
            kept.append(talk)
        else:
            outcome.lost[(talk.stopped or "failed").split(": ")[-1]] += 1
    scores = topic_scores([t.messages for t in kept], [t.row["text"] for t in kept], embedder)
    roles = {"user": settings.question, "assistant": settings.answer}
    sampling = canonical_json({role: params.as_dict() for role, params in roles.items()})
    generator = generator_for(engine.identity, template, settings.answer, 0)
    persona_set = personas.label if personas else None
    for talk, score in zip(kept, scores, strict=True):
        exchanges = sum(1 for m in talk.messages if m["role"] == "assistant")
        checks = [Verdict("generation", True)]
        if talk.stopped:
            checks.append(Verdict("tail_dropped", True, float(exchanges), talk.stopped))
            outcome.tails_dropped[talk.stopped.split(": ")[-1]] += 1
        on_topic = score >= settings.min_topic_cosine
        checks += [
            role_verdict(talk.messages),
            turns_verdict(talk.messages, settings.min_turns, settings.max_turns),
            content_verdict(talk.messages),
            Verdict("on_topic", on_topic, round(score, 4), None if on_topic else "off_topic"),
        ]
        payload = {
            "messages": talk.messages,
            "turns": exchanges,
            "requested_turns": talk.requested,
            "persona_id": talk.persona.id if talk.persona else None,
            "persona": talk.persona.text if talk.persona else None,
            "persona_set": persona_set,
        }
        out = make_row(
            stage=STAGE,
            payload=payload,
            ctx=ctx,
            parents=[talk.row],
            generator=dataclasses.replace(generator, sampling=sampling, seed=talk.seed),
            verdicts=checks,
        )
        failed = [v for v in checks if not v.passed]
        out["accepted"] = not failed
        out["prompt_tokens"] = talk.prompt_tokens
        out["completion_tokens"] = talk.completion_tokens
        outcome.rows.append(out)
        outcome.turns[str(exchanges)] += 1
        if failed:
            outcome.rejection_reasons[failed[0].reason or "rejected"] += 1
    return outcome
