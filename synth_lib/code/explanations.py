"""Code explanations verified against execution (Llama 3's code-to-text recipe).

The engine explains a stdlib function step by step from its source. An explanation is
kept only if it carries what the code does: the model, shown the explanation but not the
code, must predict the result of a call that `execution_traces` ran in the sandbox, and
the prediction must match the sandbox's real result. Explanations that copy the source
instead of explaining it are rejected too. Every explanation is a row with its verdicts.
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth_lib.engines.base import Engine, GenerationRequest, SamplingParams
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


@dataclass(frozen=True)
class ExplanationSettings:
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=256))
    predict_sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.0, max_tokens=48)
    )
    seed: int = 0
    traces_per_function: int = 1
    max_copy_jaccard: float = 0.6


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
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def pick_traces(
    code_seeds: Sequence[Mapping[str, Any]],
    traces: Sequence[Mapping[str, Any]],
    per_function: int,
    seed: int,
) -> list[tuple[Mapping[str, Any], list[Mapping[str, Any]]]]:
    """(code seed, traced calls) for every seed with traces; value results before exceptions,
    then a stable hash order, so the choice does not depend on row order."""
    by_function: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in traces:
        by_function[row["function"]].append(row)
    picked = []
    for code in code_seeds:
        calls = sorted(
            by_function.get(code["name"], []),
            key=lambda r: (r["outcome"] != "value", stable_seed(seed, r["id"])),
        )
        if calls:
            picked.append((code, calls[:per_function]))
    return picked


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
        generated = generation_verdict(result)
        if not result.ok:
            outcome.lost[(generated.reason or "failed").split(":")[0]] += 1
            continue
        text = result.text.strip()
        checks = [generated]
        if generated.passed:
            checks.append(novelty_verdict(text, code["text"], settings.max_copy_jaccard))
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
        predictions[index].append((call, clean_prediction(result.text) if result.ok else ""))
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
