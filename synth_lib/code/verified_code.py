"""Execution-verified code, after the Llama 3 recipe: only code that passes its tests is kept.

From a stdlib function the engine writes a problem statement; for each problem it writes N
candidate solutions with unit tests. Candidates go through static gates (code blocks,
`compile`, ruff's fatal rules, then `verifier`'s gates against gaming) and then run in the
sandbox, where the tests run in a trusted runner and the candidate in its own process
(`verifier`, `trusted_runner`): passing means assertions ran, the tests call the function
asked for and fail against stubs of it, and (where the seed has an input generator and the
candidate keeps its name) the candidate agrees with the seed on generated inputs. Each
failing candidate goes back to the engine once, with what went wrong, for a repair. Every
attempt's verdicts stay in the row's provenance, kept or rejected, so the metadata can
say exactly why the pass rate is what it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from synth_lib.code.lint import Program, compile_check, lint_check, split_program
from synth_lib.code.verifier import CodeVerdict, Reference, judge, prepare, reference_for
from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, SamplingParams
from synth_lib.engines.output_checks import generation_verdict
from synth_lib.prompts import Template, load_template
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.sandbox.host import SandboxResult

PROBLEM_STAGE = "code_problems"
STAGE = "verified_code"
PROBLEM_TEMPLATE, SOLUTION_TEMPLATE, REPAIR_TEMPLATE = (
    "code_problem",
    "code_solution",
    "code_repair",
)
TEMPLATES = (PROBLEM_TEMPLATE, SOLUTION_TEMPLATE, REPAIR_TEMPLATE)
MIN_PROBLEM_CHARS = 40
FEEDBACK_CHARS = 1500
# Outcomes worth a repair: the model wrote something that did not pass. Not repaired:
# engine failures (nothing to fix) and sandbox_error (infrastructure, not the code).
REPAIRABLE = {
    "no_code_block",
    "no_tests",
    "compile_error",
    "lint_error",
    "failed",
    "error",
    "timeout",
    "resource_limit",
    "unsafe_solution",
    "no_target",
    "bad_tests",
    "weak_tests",
    "disagrees_with_reference",
}


class SandboxLike(Protocol):
    mode: str

    def run_many(self, codes: Sequence[str]) -> list[SandboxResult]: ...


@dataclass
class CodeOutcome:
    """Kept rows, rejected rows (with reasons) and the figures the asset reports."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Attempt:
    request: GenerationRequest
    result: GenerationResult
    template: Template
    prefix: str
    problem: str = ""
    reference: Reference | None = None
    program: Program | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    outcome: str = ""
    feedback: str = ""
    rejection: str = ""
    agreement: float | None = None

    def fail(self, check: str, outcome: str, reason: str, key: str = "") -> None:
        self.verdicts.append(Verdict(f"{self.prefix}{check}", False, reason=reason[:500]))
        self.outcome, self.feedback = outcome, f"{outcome}: {reason}"[:FEEDBACK_CHARS]
        self.rejection = key or outcome


def generation_check(result: GenerationResult) -> Verdict:
    """`generation_verdict`, except that a truncated answer goes on to the next checks.

    Hitting max_tokens after the code (or mid-statement) is common and harmless here: code
    blocks must be complete to be extracted, and the tests decide the rest.
    """
    if result.finish_reason == "length" and result.text.strip():
        return Verdict("generation", True, reason="truncated at max_tokens; later checks decide")
    return generation_verdict(result)


def write_problems(
    seeds: Sequence[Mapping[str, Any]],
    engine: Engine,
    ctx: RowContext,
    *,
    sampling: SamplingParams | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One problem statement per code seed; every row kept, with `accepted` and verdicts."""
    sampling = sampling or SamplingParams(temperature=0.7, max_tokens=256)
    template = load_template(PROBLEM_TEMPLATE)
    requests = [
        GenerationRequest(
            f"{row['id']}:problem",
            template.render(name=row["name"], source=row["text"]),
            sampling,
            seed,
        )
        for row in seeds
    ]
    rows = []
    for row, req, result in zip(seeds, requests, engine.generate(requests), strict=True):
        text = result.text.strip()
        verdicts = [generation_check(result)]
        if verdicts[0].passed:
            long_enough = len(text) >= MIN_PROBLEM_CHARS
            verdicts.append(Verdict("problem_length", long_enough, float(len(text))))
        out = make_row(
            stage=PROBLEM_STAGE,
            payload={"problem": text, "function": row["name"]},
            ctx=ctx,
            parents=[row],
            verdicts=verdicts,
            generator=generator_for(engine.identity, template, sampling, req.seed),
        )
        out["accepted"] = all(v.passed for v in verdicts)
        rows.append(out)
    return rows


def _check(attempts: Sequence[_Attempt], sandbox: SandboxLike) -> None:
    """Static gates, then one sandbox batch for everything that passed them."""
    for att in attempts:
        gen = generation_check(att.result)
        att.verdicts.append(Verdict(f"{att.prefix}{gen.name}", gen.passed, reason=gen.reason))
        if not gen.passed:
            att.outcome = "generation_failed"
            continue
        att.program, why = split_program(att.result.text)
        if att.program is None:
            att.fail("extract", why, "expected a solution block and a block of assert tests")
            continue
        att.verdicts.append(Verdict(f"{att.prefix}extract", True))
        compiled = compile_check(att.program.source())
        if not compiled.passed:
            att.fail("compile", "compile_error", compiled.reason)
            continue
        att.verdicts.append(Verdict(f"{att.prefix}compile", True))
    static_ok = [a for a in attempts if not a.outcome]
    for att, lint in zip(
        static_ok, lint_check([a.program.source() for a in static_ok]), strict=True
    ):
        if lint.passed:
            att.verdicts.append(Verdict(f"{att.prefix}lint", True))
        else:
            att.fail("lint", "lint_error", lint.reason)
    prepared = []
    for att in [a for a in attempts if not a.outcome]:
        ready, rejected = prepare(att.program, att.problem, att.reference)
        if rejected is not None:
            att.fail("verifier_gate", rejected.verdict, rejected.reason, rejected.key)
            continue
        att.verdicts.append(Verdict(f"{att.prefix}verifier_gate", True))
        prepared.append((att, ready))
    results = sandbox.run_many([ready.program for _, ready in prepared])
    for (att, ready), res in zip(prepared, results, strict=True):
        verdict = judge(res, ready)
        _record_tests(att, verdict, res)


def _record_tests(att: _Attempt, verdict: CodeVerdict, res: SandboxResult) -> None:
    reason = f"{verdict.verdict} [{res.mode}] {verdict.reason}"
    if verdict.agreement is not None:
        att.agreement = verdict.agreement
        att.verdicts.append(
            Verdict(f"{att.prefix}reference_agreement", verdict.agreement == 1.0, verdict.agreement)
        )
    att.verdicts.append(
        Verdict(f"{att.prefix}tests", verdict.accepted, float(verdict.asserts), reason[:500])
    )
    att.outcome, att.rejection = verdict.verdict, ("" if verdict.accepted else verdict.key)
    att.feedback = f"tests {verdict.verdict}: {verdict.reason}".strip()[: FEEDBACK_CHARS * 2]


@dataclass(frozen=True)
class ResponseCheck:
    """What `verify_responses` found for one model response."""

    outcome: str
    reason: str
    verdicts: list[Verdict]

    @property
    def accepted(self) -> bool:
        return self.outcome == "passed"


def verify_responses(
    texts: Sequence[str],
    sandbox: SandboxLike,
    *,
    problem: str = "",
    reference: Reference | None = None,
) -> list[ResponseCheck]:
    """Model responses through exactly the checks `verify_code` applies to its candidates
    (one sandbox batch); each with its outcome and the reason of its last failed check."""
    template = load_template(SOLUTION_TEMPLATE)
    attempts = [
        _Attempt(
            GenerationRequest(f"response-{i}", problem, SamplingParams()),
            GenerationResult(f"response-{i}", text, "stop"),
            template,
            "",
            problem,
            reference,
        )
        for i, text in enumerate(texts)
    ]
    _check(attempts, sandbox)
    checks = []
    for att in attempts:
        failed = [v for v in att.verdicts if not v.passed]
        reason = (failed[-1].reason or "") if failed else att.verdicts[-1].reason or ""
        checks.append(ResponseCheck(att.outcome, reason, att.verdicts))
    return checks


def _repair_request(
    att: _Attempt, problem: Mapping[str, Any], template: Template
) -> GenerationRequest:
    program = att.program or Program(att.result.text.strip()[:FEEDBACK_CHARS], "")
    prompt = template.render(
        problem=problem["problem"],
        solution=program.solution,
        tests=program.tests,
        feedback=att.feedback,
    )
    return GenerationRequest(
        f"{att.request.request_id}:repair", prompt, att.request.sampling, att.request.seed
    )


def verify_code(
    problems: Sequence[Mapping[str, Any]],
    engine: Engine,
    sandbox: SandboxLike,
    ctx: RowContext,
    *,
    candidates: int = 4,
    sampling: SamplingParams | None = None,
    seed: int = 0,
) -> CodeOutcome:
    """Generate, gate, test and repair once; keep only candidates whose tests pass."""
    sampling = sampling or SamplingParams(temperature=0.8, max_tokens=512)
    solve, fix = load_template(SOLUTION_TEMPLATE), load_template(REPAIR_TEMPLATE)
    usable = [p for p in problems if p.get("accepted", True)]
    plan = [(p, k) for p in usable for k in range(candidates)]
    references = {p["id"]: reference_for(p.get("function") or "", seed=seed) for p in usable}
    requests = [
        GenerationRequest(f"{p['id']}:c{k}", solve.render(problem=p["problem"]), sampling, seed + k)
        for p, k in plan
    ]
    first = [
        _Attempt(req, res, solve, "", p["problem"], references[p["id"]])
        for (p, _), req, res in zip(plan, requests, engine.generate(requests), strict=True)
    ]
    _check(first, sandbox)
    to_fix = [i for i, att in enumerate(first) if att.outcome in REPAIRABLE]
    fix_requests = [_repair_request(first[i], plan[i][0], fix) for i in to_fix]
    second: dict[int, _Attempt] = {
        i: _Attempt(req, res, fix, "repair_", first[i].problem, first[i].reference)
        for i, req, res in zip(to_fix, fix_requests, engine.generate(fix_requests), strict=True)
    }
    _check(list(second.values()), sandbox)
    outcome = CodeOutcome()
    for i, (problem, k) in enumerate(plan):
        final = second.get(i, first[i])
        program = final.program or Program(final.result.text.strip(), "")
        row = make_row(
            stage=STAGE,
            payload={
                "prompt": problem["problem"],
                "response": program.solution,
                "tests": program.tests,
                "function": problem["function"],
                "candidate": k,
            },
            ctx=ctx,
            parents=[problem],
            generator=generator_for(engine.identity, final.template, sampling, final.request.seed),
            verdicts=first[i].verdicts + (second[i].verdicts if i in second else []),
        )
        row["repaired"] = i in second
        row["accepted"] = final.outcome == "passed"
        row["reject_reason"] = None if row["accepted"] else final.outcome
        row["reject_detail"] = None if row["accepted"] else final.rejection
        row["sandbox_mode"] = sandbox.mode
        (outcome.rows if row["accepted"] else outcome.rejected).append(row)
    outcome.metadata = _metadata(first, second, outcome, len(usable), len(problems), sandbox.mode)
    outcome.metadata["problem_rejections"] = problem_rejections(problems)
    return outcome


def problem_rejections(problems: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Why problems were not used: the first failed verdict of each (e.g. `truncated`)."""
    reasons: Counter[str] = Counter()
    for problem in problems:
        if not problem.get("accepted", True):
            failed = next((v for v in problem["verdicts"] if not v["passed"]), None)
            reasons[(failed and (failed["reason"] or failed["name"])) or "rejected"] += 1
    return dict(reasons)


def _metadata(
    first: Sequence[_Attempt],
    second: Mapping[int, _Attempt],
    outcome: CodeOutcome,
    usable: int,
    problems: int,
    mode: str,
) -> dict[str, Any]:
    finals = [second.get(i, att).outcome for i, att in enumerate(first)]
    infra = finals.count("sandbox_error")
    scorable = len(first) - infra
    kept = len(outcome.rows)
    repaired_ok = sum(1 for att in second.values() if att.outcome == "passed")
    final_attempts = [second.get(i, att) for i, att in enumerate(first)]
    compared = [a.agreement for a in final_attempts if a.agreement is not None]
    return {
        "rejection_reasons": dict(Counter(a.rejection for a in final_attempts if a.rejection)),
        "reference_compared": len(compared),
        "reference_agreed": sum(1 for x in compared if x == 1.0),
        "reference_agreement_rate": round(sum(compared) / len(compared), 4) if compared else None,
        "problems": problems,
        "problems_usable": usable,
        "candidates": len(first),
        "first_attempt_verdicts": dict(Counter(att.outcome for att in first)),
        "repair_verdicts": dict(Counter(att.outcome for att in second.values())),
        "final_verdicts": dict(Counter(finals)),
        "passed_first_try": sum(1 for att in first if att.outcome == "passed"),
        "repairs_attempted": len(second),
        "repairs_succeeded": repaired_ok,
        "repair_success_rate": round(repaired_ok / len(second), 4) if second else 0.0,
        "kept": kept,
        "rejected": len(outcome.rejected),
        "sandbox_errors": infra,
        "pass_rate": round(kept / scorable, 4) if scorable else 0.0,
        "sandbox_mode": mode,
    }
