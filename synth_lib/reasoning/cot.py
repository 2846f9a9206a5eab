"""Verified chain-of-thought: sample K solutions per problem, keep those that reach the gold answer.

Problems no sample solves get one STaR rationalization (Zelikman et al., 2022): the model
sees the gold answer as a hint and must derive it. Such rows keep the hint-free prompt
(training teaches question -> rationale), are marked `rationalized` in the payload and by
a verdict of that name, and must still reach the gold answer without echoing the hint.

Answer forcing: a sample that finishes without stating a final answer gets one short
answer-only request (question + its own solution, "reply with the answer only"; the
two-stage answer extraction of Kojima et al., 2022). The reply is appended as '#### x' and
verified like any answer, so a wrong one is still rejected; such rows carry an
`answer_forced` verdict so they can be filtered out.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, SamplingParams
from synth_lib.engines.output_checks import generation_verdict
from synth_lib.prompts import Template, load_template
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.answers import extract_answer, forced_answer, hedged
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.reasoning.tasks import Problem, check_answer

STAGE = "cot_traces"
FORCE_TEMPLATE = "reasoning_force_answer"
TEMPLATES = ("reasoning_cot", "reasoning_rationalize", FORCE_TEMPLATE)
PAYLOAD_SCHEMA: dict[str, pl.DataType] = {
    "prompt": pl.Utf8(),
    "response": pl.Utf8(),
    "question": pl.Utf8(),
    "gold": pl.Utf8(),
    "predicted": pl.Utf8(),
    "correct": pl.Boolean(),
    "rationalized": pl.Boolean(),
    "task_type": pl.Utf8(),
    "difficulty": pl.Utf8(),
    "problem_id": pl.Utf8(),
    "sample_index": pl.Int64(),
}
# Annotations added after the row exists (they do not change its content id).
FRAME_SCHEMA: dict[str, pl.DataType] = {
    **PAYLOAD_SCHEMA,
    "score": pl.Float64(),
    "weight": pl.Float64(),
    "accepted": pl.Boolean(),
    "drop_reason": pl.Utf8(),
}
_HINT_ECHO = re.compile(r"\bhint\b|\bI was told\b|correct final answer is", re.IGNORECASE)
_WORDS = re.compile(r"\w+")


@dataclass
class CotOutcome:
    """Kept (correct or rationalized) rows, failed rows (wrong answer), and counts."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)
    correct_samples: Counter[str] = field(default_factory=Counter)
    rationalization_attempts: int = 0
    rationalized: int = 0
    forced_attempts: int = 0
    forced_answers: int = 0
    forced_correct: int = 0


@dataclass(frozen=True)
class AnswerForcing:
    """How a finished sample without a final answer is asked for one.

    The engines take a user prompt, not a partial assistant turn, so the model is shown its
    own solution and asked for the answer alone: greedy, one line, a few tokens.
    """

    max_tokens: int = 12
    temperature: float = 0.0

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, 1.0, self.max_tokens, stop=("\n",))


def _rationale_verdict(text: str, min_words: int) -> Verdict:
    """A rationale must reason (enough words before its answer) and must not cite the hint."""
    if _HINT_ECHO.search(text):
        return Verdict("rationale_independent", False, reason="mentions_hint")
    body = text.split("####")[0]
    words = len(_WORDS.findall(body))
    if words < min_words:
        return Verdict("rationale_independent", False, float(words), "too_short")
    return Verdict("rationale_independent", True, float(words))


def _trace_row(
    problem: Problem,
    result: GenerationResult,
    *,
    request: GenerationRequest,
    template: Template,
    identity: Any,
    ctx: RowContext,
    sample_index: int,
    rationalized: bool,
    min_rationale_words: int,
    forced: GenerationResult | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a checked sample, or (None, reason) when the output is unusable."""
    generation = generation_verdict(result)
    if not generation.passed:
        return None, (generation.reason or "generation").split(":")[0]
    predicted = extract_answer(result.text)
    ok, score, checker = check_answer(problem, predicted)
    verdicts = [
        generation,
        Verdict("final_answer", predicted is not None, None, None if predicted else "missing"),
        Verdict(checker, ok, score, f"predicted={predicted!r} gold={problem.gold!r}"),
    ]
    reason = None if ok else ("no_final_answer" if predicted is None else "wrong_answer")
    if forced is not None:
        reply = forced.text.strip()[:80]
        verdicts.append(Verdict("answer_forced", True, None, f"answer-only request: {reply!r}"))
    hedge = hedged(result.text)
    if hedge is not None:  # two different answers: scoring the last would reward hedging
        verdicts.append(Verdict("single_final_answer", False, None, hedge))
        ok, reason = False, "hedged_answer"
    if rationalized:
        independent = _rationale_verdict(result.text, min_rationale_words)
        verdicts.append(independent)
        if ok and not independent.passed:
            ok, reason = False, f"rationale_{independent.reason}"
        if ok:
            verdicts.append(
                Verdict("rationalized", True, None, "STaR: generated with the gold answer as hint")
            )
    payload = {
        "prompt": load_template("reasoning_cot").render(question=problem.question),
        "response": result.text.strip(),
        "question": problem.question,
        "gold": problem.gold,
        "predicted": predicted,
        "correct": ok,
        "rationalized": rationalized and ok,
        "task_type": problem.task_type,
        "difficulty": problem.difficulty,
        "problem_id": problem.id,
        "sample_index": sample_index,
    }
    row = make_row(
        stage=STAGE,
        payload=payload,
        ctx=ctx,
        parents=[problem.row],
        generator=generator_for(identity, template, request.sampling, request.seed),
        verdicts=verdicts,
    )
    row.update(score=None, weight=1.0, drop_reason=reason)
    return row, reason


def solve(
    problems: Sequence[Problem],
    engine: Engine,
    ctx: RowContext,
    *,
    k: int = 4,
    sampling: SamplingParams | None = None,
    rationalize: bool = True,
    base_seed: int = 0,
    min_rationale_words: int = 8,
    forcing: AnswerForcing | None = None,
) -> CotOutcome:
    """K samples per problem in one batch, then one rationalization batch for the unsolved;
    with `forcing`, one answer-only batch after each for the samples that state no answer.

    Pass rates count every sample; rows keep one copy of each distinct response."""
    sampling = sampling or SamplingParams(temperature=0.8, max_tokens=256)
    cot = load_template("reasoning_cot")
    planned = [
        (
            problem,
            index,
            GenerationRequest(
                request_id=f"{problem.id}:{index}",
                prompt=cot.render(question=problem.question),
                sampling=sampling,
                seed=stable_seed(base_seed, problem.id, index),
            ),
        )
        for problem in problems
        for index in range(k)
    ]
    outcome = CotOutcome()
    results = engine.generate([request for _, _, request in planned])
    attempts = [(p, r, res) for (p, _, r), res in zip(planned, results, strict=True)]
    forced = force_answers(attempts, engine, forcing, outcome)
    seen: set[tuple[str, str]] = set()
    common = {"identity": engine.identity, "ctx": ctx, "min_rationale_words": min_rationale_words}
    for (problem, index, request), (result, reply) in zip(planned, forced, strict=True):
        row, reason = _trace_row(
            problem,
            result,
            request=request,
            template=cot,
            sample_index=index,
            rationalized=False,
            forced=reply,
            **common,
        )
        if row is None:
            outcome.drops[f"sample_{reason}"] += 1
            continue
        outcome.correct_samples[problem.id] += row["correct"]
        outcome.forced_correct += reply is not None and row["correct"]
        if (problem.id, row["response"]) in seen:
            outcome.drops["duplicate_response"] += 1
        elif row["correct"]:
            outcome.kept.append(row)
        else:
            outcome.failed.append(row)
            outcome.drops[f"sample_{reason}"] += 1
        seen.add((problem.id, row["response"]))
    if rationalize:
        unsolved = [p for p in problems if outcome.correct_samples[p.id] == 0]
        _rationalize(unsolved, engine, outcome, sampling, base_seed, k, common, forcing)
    return outcome


def force_answers(
    attempts: Sequence[tuple[Problem, GenerationRequest, GenerationResult]],
    engine: Engine,
    forcing: AnswerForcing | None,
    outcome: CotOutcome,
) -> list[tuple[GenerationResult, GenerationResult | None]]:
    """Each result with the answer-only reply that completed it (None: not forced).

    Only finished samples are forced: a truncated one stopped mid-thought, and appending an
    answer to it would teach cutting reasoning short. A reply without a usable answer
    (prose, an unfinished calculation, a cut-off reply) leaves the sample as it was."""
    out: list[tuple[GenerationResult, GenerationResult | None]] = [(r, None) for *_, r in attempts]
    if forcing is None:
        return out
    todo = [
        i
        for i, (_, _, result) in enumerate(attempts)
        if generation_verdict(result).passed and extract_answer(result.text) is None
    ]
    if not todo:
        return out
    template = load_template(FORCE_TEMPLATE)
    requests = [
        GenerationRequest(
            request_id=f"{attempts[i][1].request_id}:force",
            prompt=template.render(
                question=attempts[i][0].question, solution=attempts[i][2].text.strip()
            ),
            sampling=forcing.sampling,
            seed=attempts[i][1].seed,
        )
        for i in todo
    ]
    outcome.forced_attempts += len(requests)
    for i, reply in zip(todo, engine.generate(requests), strict=True):
        answer = forced_answer(reply.text) if generation_verdict(reply).passed else None
        if answer is None:
            continue
        sample = attempts[i][2]
        merged = replace(
            sample,
            text=f"{sample.text.rstrip()}\n#### {answer}",
            prompt_tokens=sample.prompt_tokens + reply.prompt_tokens,
            completion_tokens=sample.completion_tokens + reply.completion_tokens,
        )
        out[i] = (merged, reply)
        outcome.forced_answers += 1
    return out


def _rationalize(
    problems: Sequence[Problem],
    engine: Engine,
    outcome: CotOutcome,
    sampling: SamplingParams,
    base_seed: int,
    k: int,
    common: dict[str, Any],
    forcing: AnswerForcing | None,
) -> None:
    template = load_template("reasoning_rationalize")
    requests = [
        GenerationRequest(
            request_id=f"{p.id}:rationalize",
            prompt=template.render(question=p.question, gold=p.gold),
            sampling=sampling,
            seed=stable_seed(base_seed, p.id, "rationalize"),
        )
        for p in problems
    ]
    outcome.rationalization_attempts += len(requests)
    attempts = list(zip(problems, requests, engine.generate(requests), strict=True))
    forced = force_answers(attempts, engine, forcing, outcome)
    for (problem, request, _), (result, reply) in zip(attempts, forced, strict=True):
        row, reason = _trace_row(
            problem,
            result,
            request=request,
            template=template,
            sample_index=k,
            rationalized=True,
            forced=reply,
            **common,
        )
        if row is not None and row["correct"]:
            outcome.kept.append(row)
            outcome.rationalized += 1
        else:
            outcome.drops[f"rationalization_{reason}"] += 1


def pass_table(problems: Sequence[Problem], outcome: CotOutcome, k: int) -> list[dict[str, Any]]:
    """Per (task type, difficulty): problems, sample pass rate, pass@K, rationalized count."""
    cells: dict[tuple[str, str], list[Problem]] = defaultdict(list)
    for problem in problems:
        cells[(problem.task_type, problem.difficulty)].append(problem)
    rationalized = Counter(r["problem_id"] for r in outcome.kept if r["rationalized"])
    table = []
    for (task, difficulty), members in sorted(cells.items()):
        correct = sum(outcome.correct_samples[p.id] for p in members)
        solved = sum(outcome.correct_samples[p.id] > 0 for p in members)
        table.append(
            {
                "task_type": task,
                "difficulty": difficulty,
                "problems": len(members),
                "sample_pass_rate": round(correct / (len(members) * k), 4) if k else 0.0,
                "pass_at_k": round(solved / len(members), 4),
                "rationalized": sum(rationalized[p.id] for p in members),
            }
        )
    return table


def cot_summary(problems: Sequence[Problem], outcome: CotOutcome, k: int) -> dict[str, Any]:
    """The headline numbers: pass@K, sample pass rate, rationalization yield."""
    total = len(problems)
    solved = sum(outcome.correct_samples[p.id] > 0 for p in problems)
    attempts = outcome.rationalization_attempts
    return {
        "problems": total,
        "k": k,
        "pass_at_k": round(solved / total, 4) if total else 0.0,
        "sample_pass_rate": round(sum(outcome.correct_samples.values()) / (total * k), 4)
        if total and k
        else 0.0,
        "rationalization_attempts": attempts,
        "rationalized": outcome.rationalized,
        "rationalization_yield": round(outcome.rationalized / attempts, 4) if attempts else 0.0,
        "forced_attempts": outcome.forced_attempts,
        "forced_answers": outcome.forced_answers,
        "forced_correct_samples": outcome.forced_correct,
    }
