"""Rejection sampling at a per-group percentile, and inverse weighting of rare problems."""

from __future__ import annotations

import numpy as np
import pytest

from synth_lib.reasoning.selection import (
    hashing_embed,
    inverse_weights,
    knn_density,
    percentile_filter,
    rarity,
)


def test_percentile_filter_keeps_the_top_of_each_group_and_records_thresholds() -> None:
    rows = [{"prompt": "p1", "score": float(s), "n": s} for s in range(1, 11)]
    rows += [{"prompt": "p2", "score": 3.0, "n": 100}, {"prompt": "p2", "score": None, "n": 101}]
    rows += [{"prompt": "p3", "score": None, "n": 200}]
    kept, dropped, thresholds = percentile_filter(rows, percentile=90.0)
    by_group = {t.group: t for t in thresholds}
    # linear interpolation by hand: rank 0.9 * (10 - 1) = 8.1 lies between 9.0 and 10.0
    assert by_group["p1"].threshold == pytest.approx(9.1)
    assert [r["n"] for r in kept if r["prompt"] == "p1"] == [10]
    assert [r["n"] for r in kept if r["prompt"] == "p2"] == [100]
    assert 101 in [r["n"] for r in dropped]
    assert by_group["p3"].threshold is None and [r["n"] for r in kept if r["prompt"] == "p3"]
    assert len(kept) + len(dropped) == len(rows)


def test_lower_percentile_keeps_more() -> None:
    rows = [{"prompt": "p", "score": float(s)} for s in range(10)]
    assert len(percentile_filter(rows, percentile=50.0)[0]) == 5
    assert len(percentile_filter(rows, percentile=0.0)[0]) == 10


def test_hashing_embed_is_normalised_and_similarity_tracks_overlap() -> None:
    vectors = hashing_embed(["the cat sat", "the cat sat down", "integrals of polynomials"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_knn_density_skips_self() -> None:
    reference = np.eye(3, dtype=np.float32)
    assert np.allclose(knn_density(reference, reference, k=1), 0.0)


def test_rarity_flags_outliers_and_rare_task_types() -> None:
    texts = [f"how many apples does Tom have if he buys {n} apples" for n in range(40)]
    texts += ["compute the greatest common divisor of 84 and 36", "zebra puzzle about houses"]
    types = ["gsm8k"] * 41 + ["zebra_puzzles"]
    reasons = rarity(texts, types, list(range(42)), low_density_quantile=0.05)
    assert reasons[40] == "low_density"
    assert reasons[41] == "rare_task_type"
    assert reasons[:40].count(None) >= 38


def test_rarity_uses_an_injected_embedder() -> None:
    def embed(texts):
        vectors = np.zeros((len(texts), 2), dtype=np.float32)
        vectors[:, 0] = 1.0
        vectors[-1] = [0.0, 1.0]
        return vectors

    reasons = rarity(["a"] * 10, ["t"] * 10, [0, 9], embed=embed, low_density_quantile=0.2)
    assert reasons == [None, "low_density"]


def test_inverse_weights() -> None:
    weights = inverse_weights(["a", "b", "c"], {"a": "low_density", "b": None}, multiplier=5.0)
    assert weights == [(5.0, "low_density"), (1.0, None), (1.0, None)]


def test_curate_scores_filters_and_weights_cot_traces() -> None:
    from synth_lib.provenance.schema import RowContext, rows_to_frame
    from synth_lib.reasoning.cot import FRAME_SCHEMA, solve
    from synth_lib.reasoning.curate import curate
    from synth_lib.reasoning.judge import Judge
    from synth_lib.reasoning.tasks import problems_from_rows, reasoning_gym_rows
    from tests.scripted_engine import ScriptedEngine

    ctx = RowContext("test-run")
    row = reasoning_gym_rows(["gcd"], ["easy"], 1, ctx)[0]
    gold = row["gold"]
    answers = [f"Euclid: {gold}.\n#### {gold}", f"Factor both: {gold}.\n#### {gold}", "#### -1"]
    answers.append(f"Guess {gold}.\n#### {gold}")
    solver = ScriptedEngine(lambda r: answers[int(r.request_id.rsplit(":", 1)[1])])
    problems = problems_from_rows([row])
    outcome = solve(problems, solver, ctx, k=4)
    assert len(outcome.kept) == 3 and len(outcome.failed) == 1

    def judge_reply(request):
        if "Euclid" in request.prompt:
            return "Score: 9"
        return "Score: 5" if "Factor" in request.prompt else "unreadable"

    distribution = [(row["id"], row["question"], "gcd")]
    distribution += [(f"m{i}", f"how many apples {i}", "gsm8k") for i in range(30)]
    curated = curate(
        outcome, problems, distribution, judge=Judge(ScriptedEngine(judge_reply)), percentile=90.0
    )
    accepted = [r for r in curated.rows if r["accepted"]]
    assert [r["response"].split(":")[0] for r in accepted] == ["Euclid"]
    assert accepted[0]["weight"] == 5.0 and curated.weighted["rare_task_type"] == 1
    names = [v["name"] for v in accepted[0]["verdicts"]]
    assert names[-2:] == ["rejection_sampling", "inverse_weight"]
    assert curated.thresholds[0].threshold == pytest.approx(5.0 + 0.9 * (9.0 - 5.0))
    assert curated.unscored == 1 and curated.drops["below_group_percentile"] == 2
    dropped = {r["response"].split(":")[0]: r["drop_reason"] for r in curated.rows}
    assert dropped["Factor both"] == "below_group_percentile"
    assert dropped["#### -1"] == "wrong_answer"
    frame = rows_to_frame(curated.rows, FRAME_SCHEMA)
    assert frame.filter("accepted").height == 1 and frame.height == 4
