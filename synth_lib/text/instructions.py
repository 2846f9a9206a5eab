"""Instruction–response pairs grounded in seed passages and code, evolved and judged.

Phi-4's recipe rewrites useful content into exercises, discussions and structured
reasoning tasks; here the engine writes one task per seed (of a kind chosen per row,
for a persona chosen per row), evolves it Evol-Instruct style (`evolution.py`), answers
it with the seed as reference, and every response is checked: cheap checks first
(complete, no refusal, answers the task, not a copy of the task or the seed), then an LLM
judge scores it against the constitution. Every complete response is a row with its
verdicts; `accepted` says whether all of them passed. Each phase is one batch.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth_lib.curation.anchor_filter import Embedder
from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, SamplingParams
from synth_lib.engines.output_checks import generation_verdict, novelty_verdict, shingle_jaccard
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.judge import Judge
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.text.diversity import diversity_gain
from synth_lib.text.evolution import (
    OPERATORS,
    clean_instruction,
    evolution_verdict,
    pick_operator,
)
from synth_lib.text.personas import PersonaSet

STAGE = "instructions"
SEED_TEMPLATE = "instruction_seed"
RESPONSE_TEMPLATE = "instruction_response"
TEMPLATES = (SEED_TEMPLATE, *OPERATORS.values(), RESPONSE_TEMPLATE)
# Phi-4: "rewrite the useful content into exercises, discussions, or structured reasoning tasks".
KINDS: dict[str, str] = {
    "exercise": "an exercise that asks the learner to apply what the passage describes",
    "discussion": "a discussion question about why the passage's idea works the way it does",
    "reasoning": "a step-by-step reasoning problem built on a fact from the passage",
}
_CONTENT_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]{3,}")
_STOPWORDS = frozenset((
    "that", "this", "with", "from", "what", "which", "when", "where", "there", "their",
    "about", "into", "your", "have", "will", "would", "should", "could", "been", "does",
    "using", "used", "each", "they", "them", "then", "than", "also", "only", "more", "most",
    "such", "task", "passage", "answer", "explain", "describe", "write", "give",
))  # fmt: skip


@dataclass(frozen=True)
class InstructionSettings:
    """Sampling, evolution depth and the gates' thresholds."""

    # 96 tokens truncated 5 of 6 persona-conditioned tasks of the 135M default model
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=192))
    response_sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(max_tokens=192)
    )
    seed: int = 0
    depth: int = 1
    operators: tuple[str, ...] = tuple(OPERATORS)
    min_response_words: int = 5
    min_shared_words: int = 1
    max_copy_jaccard: float = 0.7
    min_judge_score: float = 6.0


@dataclass
class InstructionOutcome:
    """Rows for every complete response, and the counts the asset reports."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejection_reasons: Counter[str] = field(default_factory=Counter)
    evolution_steps: Counter[str] = field(default_factory=Counter)
    evolution_failures: Counter[str] = field(default_factory=Counter)
    lost_before_response: Counter[str] = field(default_factory=Counter)


@dataclass
class _Draft:
    """One seed's instruction while it is being written and evolved."""

    seed_row: Mapping[str, Any]
    kind: str
    persona: Any
    instruction: str = ""
    first: str = ""
    operators: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    evolving: bool = True


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _CONTENT_WORD.findall(text)} - _STOPWORDS


def answers_verdict(instruction: str, response: str, min_words: int, min_shared: int) -> Verdict:
    """Cheap check that a response addresses its instruction: long enough, on its words, no echo."""
    words = len(response.split())
    if words < min_words:
        return Verdict("answers_instruction", False, float(words), "too_short")
    if shingle_jaccard(instruction, response) > 0.8:
        return Verdict("answers_instruction", False, None, "echoes_instruction")
    shared = len(content_words(instruction) & content_words(response))
    if shared < min_shared:
        return Verdict("answers_instruction", False, float(shared), "off_instruction")
    return Verdict("answers_instruction", True, float(shared))


def seed_request(
    row: Mapping[str, Any],
    personas: PersonaSet | None,
    sampling: SamplingParams,
    seed: int,
    variant: int = 0,
) -> tuple[GenerationRequest, str, Any]:
    """The request that writes a seed's first instruction; variants > 0 are diversity probes."""
    kind = list(KINDS)[stable_seed("kind", row["id"], seed) % len(KINDS)]
    persona = personas.pick(row["id"], STAGE, seed, variant) if personas else None
    line = f"\nThe task is for {persona.text}." if persona else ""
    prompt = load_template(SEED_TEMPLATE).render(
        persona_line=line, kind=KINDS[kind], text=row["text"]
    )
    tag = f"{'p' if persona else 'n'}{variant}"
    request = GenerationRequest(
        f"{row['id']}:instruction:{tag}",
        prompt,
        sampling,
        stable_seed(seed, row["id"], "instruction", variant),
    )
    return request, kind, persona


def _write(
    drafts: list[_Draft],
    engine: Engine,
    settings: InstructionSettings,
    personas: PersonaSet | None,
    outcome: InstructionOutcome,
) -> list[_Draft]:
    planned = [seed_request(d.seed_row, personas, settings.sampling, settings.seed) for d in drafts]
    results = engine.generate([request for request, _, _ in planned])
    kept = []
    for draft, result in zip(drafts, results, strict=True):
        verdict = generation_verdict(result)
        text = clean_instruction(result.text) if verdict.passed else ""
        if not text:
            outcome.lost_before_response[
                f"instruction_{verdict.reason or 'empty'}".split(":")[0]
            ] += 1
            continue
        draft.instruction = draft.first = text
        kept.append(draft)
    return kept


def _evolve(drafts: list[_Draft], engine: Engine, settings: InstructionSettings) -> None:
    """`depth` rounds; each round evolves every draft whose previous step passed."""
    for step in range(1, settings.depth + 1):
        active = [d for d in drafts if d.evolving]
        if not active:
            return
        requests, ops = [], []
        for d in active:
            op = pick_operator(d.seed_row["id"], step, settings.seed, settings.operators)
            ops.append(op)
            prompt = load_template(OPERATORS[op]).render(
                text=d.seed_row["text"], instruction=d.instruction
            )
            requests.append(
                GenerationRequest(
                    f"{d.seed_row['id']}:evolve:{step}",
                    prompt,
                    settings.sampling,
                    stable_seed(settings.seed, d.seed_row["id"], "evolve", step),
                )
            )
        for d, op, result in zip(active, ops, engine.generate(requests), strict=True):
            generated = generation_verdict(result)
            after = clean_instruction(result.text) if generated.passed else ""
            verdict = (
                evolution_verdict(step, op, d.instruction, after)
                if generated.passed
                else Verdict(f"evolution_{step}_{op}", False, reason=generated.reason)
            )
            d.verdicts.append(verdict)
            if verdict.passed:
                d.instruction = after
                d.operators.append(op)
            else:
                d.evolving = False


def _judge_verdict(score: float | None, minimum: float, constitution: str) -> Verdict:
    if score is None:
        return Verdict("judge", False, None, "unparseable_judge_output")
    if score < minimum:
        return Verdict("judge", False, score, "low_score")
    return Verdict("judge", True, score, f"constitution {constitution}")


@dataclass
class _Answer:
    draft: _Draft
    request: GenerationRequest
    result: GenerationResult
    checks: list[Verdict]


def _answer(
    drafts: list[_Draft], engine: Engine, settings: InstructionSettings, outcome: InstructionOutcome
) -> list[_Answer]:
    template = load_template(RESPONSE_TEMPLATE)
    requests = [
        GenerationRequest(
            f"{d.seed_row['id']}:response",
            template.render(text=d.seed_row["text"], instruction=d.instruction),
            settings.response_sampling,
            stable_seed(settings.seed, d.seed_row["id"], "response"),
        )
        for d in drafts
    ]
    answers = []
    for d, request, result in zip(drafts, requests, engine.generate(requests), strict=True):
        generated = generation_verdict(result)
        if not result.ok:
            outcome.lost_before_response[(generated.reason or "failed").split(":")[0]] += 1
            continue
        checks = [generated]
        if generated.passed:
            text = result.text.strip()
            checks += [
                answers_verdict(
                    d.instruction, text, settings.min_response_words, settings.min_shared_words
                ),
                novelty_verdict(text, d.seed_row["text"], settings.max_copy_jaccard),
            ]
        answers.append(_Answer(d, request, result, checks))
    return answers


def generate_instructions(
    seeds: Sequence[Mapping[str, Any]],
    engine: Engine,
    ctx: RowContext,
    *,
    personas: PersonaSet | None,
    settings: InstructionSettings | None = None,
    judge: Judge | None = None,
    stage: str = STAGE,
) -> InstructionOutcome:
    """Write, evolve, answer and judge one instruction per seed row (rows need `id`, `text`).

    A failed evolution step only stops evolving (its verdict is kept); a failed response
    check or a low judge score rejects the row. The judge only sees responses that passed
    the cheap checks.
    """
    settings = settings or InstructionSettings()
    unknown = set(settings.operators) - set(OPERATORS)
    if unknown:
        raise ValueError(f"unknown evolution operators {sorted(unknown)}; known: {list(OPERATORS)}")
    outcome = InstructionOutcome()
    drafts = []
    for row in seeds:
        _, kind, persona = seed_request(row, personas, settings.sampling, settings.seed)
        drafts.append(_Draft(row, kind, persona))
    drafts = _write(drafts, engine, settings, personas, outcome)
    _evolve(drafts, engine, settings)
    for d in drafts:
        outcome.evolution_steps[str(len(d.operators))] += 1
        for v in d.verdicts:
            if not v.passed:
                outcome.evolution_failures[v.reason or "failed"] += 1
    answers = _answer(drafts, engine, settings, outcome)
    judge = judge or Judge(engine, seed=settings.seed)
    judged = [a for a in answers if all(v.passed for v in a.checks)]
    scores = judge.score(
        [(a.draft.seed_row["id"], a.draft.instruction, a.result.text.strip()) for a in judged]
    )
    for a, score in zip(judged, scores, strict=True):
        a.checks.append(_judge_verdict(score, settings.min_judge_score, judge.constitution_hash))
    template = load_template(RESPONSE_TEMPLATE)
    persona_set = personas.label if personas else None
    for a in answers:
        d, persona = a.draft, a.draft.persona
        payload = {
            "prompt": d.instruction,
            "response": a.result.text.strip(),
            "instruction_kind": d.kind,
            "seed_instruction": d.first,
            "evolution": list(d.operators),
            "evol_depth": len(d.operators),
            "persona_id": persona.id if persona else None,
            "persona": persona.text if persona else None,
            "persona_set": persona_set,
        }
        generator = generator_for(engine.identity, template, a.request.sampling, a.request.seed)
        row = make_row(
            stage=stage,
            payload=payload,
            ctx=ctx,
            parents=[d.seed_row],
            generator=generator,
            verdicts=[*d.verdicts, *a.checks],
        )
        failed = [v for v in a.checks if not v.passed]
        row["accepted"] = not failed
        row["prompt_tokens"] = a.result.prompt_tokens
        row["completion_tokens"] = a.result.completion_tokens
        outcome.rows.append(row)
        if failed:
            outcome.rejection_reasons[(failed[0].reason or "rejected").split(":")[0]] += 1
    return outcome


def persona_probe(
    seeds: Sequence[Mapping[str, Any]],
    engine: Engine,
    personas: PersonaSet,
    embedder: Embedder,
    *,
    variants: int = 2,
    settings: InstructionSettings | None = None,
) -> dict[str, Any]:
    """The persona diversity gain: first instructions for the same seeds and sampling seeds,
    `variants` per seed, with a persona and without one. Variant 0 with personas is the
    request the stage itself makes, so it comes from the response cache."""
    settings = settings or InstructionSettings()
    sides: dict[bool, list[tuple[str, str]]] = {True: [], False: []}
    planned = [
        (use, row["id"], seed_request(row, personas if use else None, settings.sampling,
                                      settings.seed, variant)[0])
        for use in (True, False)
        for row in seeds
        for variant in range(variants)
    ]  # fmt: skip
    results = engine.generate([request for _, _, request in planned])
    lost: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for (use, group, _), result in zip(planned, results, strict=True):
        verdict = generation_verdict(result)
        text = clean_instruction(result.text) if verdict.passed else ""
        if text:
            sides[use].append((group, text))
        else:
            lost[use][(verdict.reason or "empty").split(":")[0]] += 1
    out = diversity_gain(sides[True], sides[False], embedder)
    # a side that loses more requests is measured on fewer rows: say so beside the ratios
    out["lost_with_personas"] = dict(lost[True])
    out["lost_without_personas"] = dict(lost[False])
    return out
