"""Code explanations verified against execution (Llama 3's code-to-text recipe).

The engine explains a stdlib function step by step from its source. An explanation is
kept only if it carries what the code does: the model, shown the explanation but not the
code, must predict the result of a call that `execution_traces` ran in the sandbox, and
the prediction must match the sandbox's real result. Explanations that copy the source
instead of explaining it are rejected too. Every explanation is a row with its verdicts.

A small model can only pass that check on functions and calls it can follow, so the
stage asks the easiest ones (`choose_functions`, `call_ease`): short sources, short
value results. A call that returns its argument unchanged is never asked (`is_echo`): a
guess passes it without reading the explanation. An explanation cut at the token budget
is trimmed to its last full sentence and still judged, since the check is on what the
text lets the model predict; the trim is recorded in its generation verdict. Code
(fenced or not) is dropped from an explanation: the predictor must work from prose, not
from code the model wrote. A small model states its prediction in a sentence ("The value
of f(x) is `True` because ..."), so the answer is the one value its sentences state
(`stated_answer`); a hedged or contradictory reply states none. The match against the
sandbox stays exact.
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, SamplingParams
from synth_lib.engines.output_checks import generation_verdict, novelty_verdict
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.seeding import stable_seed

STAGE = "code_explanations"
EXPLAIN_TEMPLATE = "code_explain"
PREDICT_TEMPLATE = "code_explain_predict"
TEMPLATES = (EXPLAIN_TEMPLATE, PREDICT_TEMPLATE)
_LABEL = re.compile(r"^\s*(?:answer|output|result|returns?)\s*[:=-]\s*", re.IGNORECASE)
_RAISES = re.compile(r"^raises\s+([A-Za-z_][\w.]*)", re.IGNORECASE)
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_CODE_LINE = re.compile(
    r"^(?: {4}|\t|\s*(?:def |class |return |import |from \S+ import |>>>|\"\"\"|'''))"
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_CLAIM = re.compile(
    r"\b(returns?|raises?|is|will be|would be)\s*:?\s+(?:an?\s+|the\s+(?:value\s+)?)?"
    r"(`[^`\n]+`|'[^'\n]*'|\"[^\"\n]*\"|\([^()\n]*\)|\[[^\[\]\n]*\]|-?[\w.]*\w)",
    re.IGNORECASE,
)
_HEDGE = re.compile(r"^\W*(?:if|or|otherwise|when|unless|else|depending)\b", re.IGNORECASE)
TRIMMED = "trimmed_to_last_sentence_at_budget"
# what `ast.literal_eval` raises on text that is not one Python literal
_NOT_A_LITERAL = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


@dataclass(frozen=True)
class ExplanationSettings:
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=256))
    predict_sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.0, max_tokens=48)
    )
    seed: int = 0
    traces_per_function: int = 1
    max_copy_jaccard: float = 0.6
    min_words: int = 12


@dataclass
class ExplanationOutcome:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejection_reasons: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    functions_without_traces: int = 0


def clean_prediction(text: str) -> str:
    """The answer part of a prediction: first non-empty line, label and code quotes stripped."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = _LABEL.sub("", line.strip()).strip()
    if line.startswith("```"):
        line = line.strip("`").strip()
    if len(line) > 1 and line[0] == line[-1] == "`":
        line = line[1:-1].strip()
    return line


def outputs_match(predicted: str, expected: str) -> bool:
    """Same value (literal equality, so quote styles do not matter), or the same exception type."""
    predicted = clean_prediction(predicted)
    raised_expected, raised_predicted = _RAISES.match(expected), _RAISES.match(predicted)
    if raised_expected or raised_predicted:
        return bool(
            raised_expected
            and raised_predicted
            and raised_expected.group(1).rsplit(".", 1)[-1]
            == raised_predicted.group(1).rsplit(".", 1)[-1]
        )
    if predicted == expected:
        return True
    try:
        return ast.literal_eval(predicted) == ast.literal_eval(expected)
    except _NOT_A_LITERAL:
        return False


def is_echo(call: Mapping[str, Any]) -> bool:
    """The call returns its one argument unchanged: a guess passes without the explanation."""
    return call["expression"].endswith(f"({call['response']})")


def call_ease(call: Mapping[str, Any]) -> tuple[bool, int, int]:
    """Sort key, easiest call first: a value (not an exception), then the shortest result
    and the shortest call."""
    return (call["outcome"] != "value", len(call["response"]), len(call["expression"]))


def pick_traces(
    code_seeds: Sequence[Mapping[str, Any]],
    traces: Sequence[Mapping[str, Any]],
    per_function: int,
    seed: int,
) -> list[tuple[Mapping[str, Any], list[Mapping[str, Any]]]]:
    """(code seed, its `per_function` easiest traced calls, echoes left out) for every seed
    with such calls; ties in a stable hash order, so the choice does not depend on row order."""
    by_function: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in traces:
        if not is_echo(row):
            by_function[row["function"]].append(row)
    picked = []
    for code in code_seeds:
        calls = sorted(
            by_function.get(code["name"], []),
            key=lambda r: (call_ease(r), stable_seed(seed, r["id"])),
        )
        if calls:
            picked.append((code, calls[:per_function]))
    return picked


def choose_functions(
    code_seeds: Sequence[Mapping[str, Any]],
    traces: Sequence[Mapping[str, Any]],
    limit: int,
    max_source_chars: int = 900,
) -> list[Mapping[str, Any]]:
    """The `limit` code seeds (0: all) with a non-echo traced call that the model can most
    likely explain well enough: sources up to `max_source_chars` first (a longer one rarely
    fits the budget), then by the ease of their easiest call, then shortest source, then id."""
    best: dict[str, tuple[bool, int, int]] = {}
    for row in (r for r in traces if not is_echo(r)):
        ease = call_ease(row)
        best[row["function"]] = min(best.get(row["function"], ease), ease)
    ranked = sorted(
        (code for code in code_seeds if code["name"] in best),
        key=lambda c: (len(c["text"]) > max_source_chars, best[c["name"]], len(c["text"]), c["id"]),
    )
    return ranked[:limit] if limit else ranked


def prose_of(text: str) -> str:
    """The explanation without code: fenced blocks (an unclosed fence runs to the end) and
    unfenced code lines (indented, or opening with def, return, import, a docstring quote)."""
    lines = [ln for ln in _FENCED.sub("", text).splitlines() if not _CODE_LINE.match(ln)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def trim_to_sentence(text: str) -> str:
    """`text` up to its last full sentence; empty when it has none."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else ""


def explanation_text(result: GenerationResult, min_words: int) -> tuple[str, Verdict]:
    """The prose an explanation row keeps, and its generation verdict.

    A completion cut at the budget keeps its full sentences (the prediction check still
    decides whether they carry the function); the verdict records the trim."""
    truncated = result.finish_reason == "length"
    text = trim_to_sentence(prose_of(result.text)) if truncated else prose_of(result.text)
    generated = generation_verdict(replace(result, finish_reason="stop") if truncated else result)
    if not generated.passed:
        return text, generated
    if len(text.split()) < min_words:
        return text, Verdict("generation", False, reason="truncated" if truncated else "no_prose")
    return text, Verdict("generation", True, reason=TRIMMED) if truncated else generated


def _is_value(answer: str) -> bool:
    if _RAISES.match(answer):
        return True
    try:
        ast.literal_eval(answer)
    except _NOT_A_LITERAL:
        return False
    return True


def stated_answer(text: str, cut: bool = False) -> str:
    """What a prediction says the call gives.

    Its first line when that line is a value or "raises X" (a small model seldom replies
    with the value alone); else the value its statements give ("returns X", "is X",
    "raises X"; phrases that name no value, "returns a list", count for nothing) when they
    all agree and none is conditional ("returns True if ..." states no answer); else its
    first line. In a completion `cut` at the budget, text that runs into the cut counts
    for nothing."""
    first = clean_prediction(text) if not cut or "\n" in text.strip() else ""
    if _is_value(first):
        return first
    claims, end = [], len(text.rstrip())
    for claim in _CLAIM.finditer(text):
        if cut and claim.end() >= end:
            break
        if _HEDGE.match(text[claim.end() :]):
            return first
        value = claim.group(2).strip("`").strip()
        if claim.group(1).lower().startswith("raise"):
            claims += [f"raises {value}"] if value[:1].isupper() else []
        elif _is_value(value):
            claims.append(value)
    if claims and all(outputs_match(c, claims[0]) for c in claims):
        return claims[0]
    return first


def prediction_line(result: GenerationResult) -> str:
    """The answer of a prediction (`stated_answer`); an engine failure answers nothing."""
    if result.finish_reason not in ("stop", "length"):
        return ""
    return stated_answer(result.text, cut=result.finish_reason == "length")


def explain_code(
    code_seeds: Sequence[Mapping[str, Any]],
    traces: Sequence[Mapping[str, Any]],
    engine: Engine,
    ctx: RowContext,
    settings: ExplanationSettings | None = None,
) -> ExplanationOutcome:
    """Explain each traced code seed, then verify each explanation by predicting its calls."""
    settings = settings or ExplanationSettings()
    outcome = ExplanationOutcome()
    work = pick_traces(code_seeds, traces, settings.traces_per_function, settings.seed)
    outcome.functions_without_traces = len(code_seeds) - len(work)
    explain, predict = load_template(EXPLAIN_TEMPLATE), load_template(PREDICT_TEMPLATE)
    requests = [
        GenerationRequest(
            f"{code['id']}:explain",
            explain.render(code=code["text"]),
            settings.sampling,
            stable_seed(settings.seed, code["id"], "explain"),
        )
        for code, _ in work
    ]
    drafts = []
    for (code, calls), request, result in zip(
        work, requests, engine.generate(requests), strict=True
    ):
        if result.finish_reason not in ("stop", "length"):
            outcome.lost[(generation_verdict(result).reason or "failed").split(":")[0]] += 1
            continue
        text, generated = explanation_text(result, settings.min_words)
        checks = [generated]
        if generated.passed:
            # The raw text: code dropped from the prose is still a copy of the source.
            checks.append(novelty_verdict(result.text, code["text"], settings.max_copy_jaccard))
        drafts.append((code, calls, request, result, text, checks))
    probes = [
        (index, call, GenerationRequest(
            f"{code['id']}:predict:{call['id']}",
            predict.render(name=code["name"], explanation=text, expression=call["expression"]),
            settings.predict_sampling,
            stable_seed(settings.seed, code["id"], call["id"], "predict"),
        ))
        for index, (code, calls, _, _, text, checks) in enumerate(drafts)
        if all(v.passed for v in checks)
        for call in calls
    ]  # fmt: skip
    predictions: dict[int, list[tuple[Mapping[str, Any], str]]] = defaultdict(list)
    for (index, call, _), result in zip(
        probes, engine.generate([p[2] for p in probes]), strict=True
    ):
        predictions[index].append((call, prediction_line(result)))
    for index, (code, calls, request, result, text, checks) in enumerate(drafts):
        for call, predicted in predictions.get(index, []):
            ok = outputs_match(predicted, call["response"])
            reason = f"predicted {predicted!r}, sandbox {call['response']!r}"
            checks.append(Verdict("predicts_execution", ok, None, reason if not ok else None))
        payload = {
            "prompt": explain.render(code=code["text"]).rsplit("\n\nExplanation:", 1)[0],
            "response": text,
            "function": code["name"],
            "expressions": [c["expression"] for c, _ in predictions.get(index, [])],
            "expected": [c["response"] for c, _ in predictions.get(index, [])],
            "predicted": [p for _, p in predictions.get(index, [])],
        }
        row = make_row(
            stage=STAGE,
            payload=payload,
            ctx=ctx,
            parents=[code, *calls],
            generator=generator_for(engine.identity, explain, request.sampling, request.seed),
            verdicts=checks,
        )
        failed = [v for v in checks if not v.passed]
        row["accepted"] = not failed
        row["prompt_tokens"] = result.prompt_tokens
        row["completion_tokens"] = result.completion_tokens
        outcome.rows.append(row)
        if failed:
            reason = failed[0].reason or "rejected"
            key = "wrong_prediction" if failed[0].name == "predicts_execution" else reason
            outcome.rejection_reasons[key.split(":")[0]] += 1
    return outcome
