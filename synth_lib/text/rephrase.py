"""WRAP-style rephrasing of text seeds in four styles (easy, Wikipedia-like, hard, Q&A).

Each (seed, style) pair is one request; every response becomes a row that carries its
verdicts, accepted or not, so the asset is a full audit of what the model produced.
Beyond "complete" and "not a copy", a rewrite must carry its own passage's content and
must not be the same text the model wrote for other passages (`content_gate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth_lib.engines.base import Engine, GenerationRequest, SamplingParams
from synth_lib.engines.output_checks import generation_verdict, novelty_verdict
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, generator_for, make_row
from synth_lib.text.content_gate import (
    ContentThresholds,
    canned_groups,
    canned_verdict,
    content_verdict,
)

STAGE = "rephrasings"
STYLE_TEMPLATES: dict[str, str] = {
    "easy": "rephrase_easy",
    "wikipedia": "rephrase_wikipedia",
    "hard": "rephrase_hard",
    "qa": "rephrase_qa",
}


@dataclass
class RephraseOutcome:
    """Rows for every complete response (accepted or not) and the counts the asset reports.

    Responses that never completed (engine error, truncation, content filter) are not rows:
    the engine's failure log records them.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejection_reasons: Counter[str] = field(default_factory=Counter)
    accepted_by_style: Counter[str] = field(default_factory=Counter)
    requested_by_style: Counter[str] = field(default_factory=Counter)


def rephrase_requests(
    seeds: Sequence[Mapping[str, Any]], styles: Sequence[str], sampling: SamplingParams, seed: int
) -> list[tuple[GenerationRequest, Mapping[str, Any], str]]:
    """One request per (seed row, style); the request id is the seed id plus the style."""
    out = []
    for row in seeds:
        for style in styles:
            template = load_template(STYLE_TEMPLATES[style])
            request = GenerationRequest(
                request_id=f"{row['id']}:{style}",
                prompt=template.render(text=row["text"]),
                sampling=sampling,
                seed=seed,
            )
            out.append((request, row, style))
    return out


def rephrase(
    seeds: Sequence[Mapping[str, Any]],
    engine: Engine,
    ctx: RowContext,
    *,
    styles: Sequence[str] = tuple(STYLE_TEMPLATES),
    sampling: SamplingParams | None = None,
    seed: int = 0,
    max_copy_jaccard: float = 0.7,
    content: ContentThresholds | None = None,
) -> RephraseOutcome:
    """Generate every rephrasing in one batch and check each response."""
    unknown = set(styles) - set(STYLE_TEMPLATES)
    if unknown:
        raise ValueError(
            f"unknown rephrase styles {sorted(unknown)}; known: {list(STYLE_TEMPLATES)}"
        )
    sampling = sampling or SamplingParams(max_tokens=256)
    planned = rephrase_requests(seeds, styles, sampling, seed)
    results = engine.generate([request for request, _, _ in planned])
    outcome = RephraseOutcome()
    identity = engine.identity
    complete = [i for i, r in enumerate(results) if r.ok]
    canned = {
        complete[k]
        for k in canned_groups(
            [results[i].text for i in complete],
            [planned[i][1]["id"] for i in complete],
            max_copy_jaccard,
        )
    }
    for index, ((request, parent, style), result) in enumerate(zip(planned, results, strict=True)):
        template = load_template(STYLE_TEMPLATES[style])
        outcome.requested_by_style[style] += 1
        verdicts = [generation_verdict(result)]
        if not result.ok:
            outcome.rejection_reasons[(verdicts[0].reason or "failed").split(":")[0]] += 1
            continue
        if verdicts[0].passed:
            checks = [
                novelty_verdict(result.text, parent["text"], max_copy_jaccard),
                canned_verdict(index in canned),
                content_verdict(result.text, parent["text"], content or ContentThresholds()),
            ]
            for verdict in checks:  # recorded up to the first that fails: that is the reason
                verdicts.append(verdict)
                if not verdict.passed:
                    break
        failed = [v for v in verdicts if not v.passed]
        generator = generator_for(identity, template, sampling, request.seed)
        row = make_row(
            stage=STAGE,
            payload={"text": result.text.strip(), "style": style},
            ctx=ctx,
            parents=[parent],
            generator=generator,
            verdicts=verdicts,
        )
        row["accepted"] = not failed
        row["prompt_tokens"] = result.prompt_tokens
        row["completion_tokens"] = result.completion_tokens
        outcome.rows.append(row)
        if failed:
            outcome.rejection_reasons[(failed[0].reason or "rejected").split(":")[0]] += 1
        else:
            outcome.accepted_by_style[style] += 1
    return outcome
