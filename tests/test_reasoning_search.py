"""MCTS over reasoning steps: UCT, backpropagation, verified paths, the equal-budget baseline."""

from synth_lib.engines.base import GenerationRequest
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.reasoning.cot import AnswerForcing
from synth_lib.reasoning.search import (
    SearchSettings,
    sample_at_budget,
    search,
    search_candidates,
    search_rows,
)
from synth_lib.reasoning.tasks import problems_from_rows
from tests.scripted_engine import ScriptedEngine

CTX = RowContext("test-run")
ROW = make_row(
    stage="math_seeds",
    payload={"question": "Tom has 3 apples and gets 4 more. How many now?", "answer": "",
             "gold": "7"},
    ctx=CTX,
    source=Source("gsm8k", "train.jsonl:1", "MIT"),
)  # fmt: skip
[PROBLEM] = problems_from_rows([ROW])
GOOD, BAD = "Add 3 and 4 to get 7 apples.", "Multiply 3 and 4 to get 12 apples."


def scripted(request: GenerationRequest) -> str:
    prompt = request.prompt
    if "Next step:" in prompt:  # the model proposes good and bad steps by seed
        return GOOD if request.seed % 3 == 0 else BAD
    if "Continuation:" in prompt:  # rollouts follow the step they continue
        return "So the total is 7.\n#### 7" if "get 7" in prompt else "So 12.\n#### 12"
    return "Multiply them: 12.\n#### 12"  # a single plain sample is always wrong


def test_mcts_finds_a_verified_path_a_single_sample_missed():
    engine = ScriptedEngine(scripted)
    [result] = search([PROBLEM], engine, SearchSettings(iterations=12, max_children=3))
    assert result.paths, "search found no verified path"
    path = result.paths[0]
    assert path.steps[-1] == GOOD and path.predicted == "7" and path.checker == "math_verify"
    assert path.text.endswith("#### 7")
    assert result.tokens == sum(len(r.prompt.split()) for r in engine.seen) + sum(
        len(scripted(r).split()) for r in engine.seen
    )
    baseline = sample_at_budget([PROBLEM], ScriptedEngine(scripted), [result.tokens],
                                SearchSettings().rollout_sampling)  # fmt: skip
    assert baseline.verified_samples == 0 and baseline.tokens >= result.tokens


def test_uct_prefers_the_branch_whose_rollouts_verify():
    settings = SearchSettings(iterations=10, max_children=2, max_paths=99, root_rollout=False)
    [result] = search([PROBLEM], ScriptedEngine(scripted), settings)
    root = result.root
    assert root.visits == 10  # every iteration backpropagated to the root once
    good = [c for c in root.children if c.steps[0] == GOOD]
    bad = [c for c in root.children if c.steps[0] == BAD]
    assert good and bad
    assert good[0].visits > bad[0].visits
    assert good[0].value / good[0].visits > bad[0].value / bad[0].visits
    assert sum(c.visits for c in root.children) == root.visits


def test_search_stops_once_a_problem_has_its_paths():
    engine = ScriptedEngine(scripted)
    [result] = search([PROBLEM], engine, SearchSettings(iterations=30, max_children=3))
    assert len(result.paths) == 1
    assert result.requests == len(engine.seen) < 30


def test_a_terminal_step_is_verified_without_a_rollout():
    engine = ScriptedEngine(lambda r: "3 + 4 = 7.\n#### 7" if "Next step" in r.prompt else "x")
    [result] = search([PROBLEM], engine, SearchSettings(iterations=3, root_rollout=False))
    assert result.paths[0].completion.endswith("#### 7") and result.paths[0].steps == ()
    assert not any("Continuation:" in r.prompt for r in engine.seen)


def test_a_problem_the_root_rollout_solves_costs_one_request():
    engine = ScriptedEngine(lambda r: "3 + 4 = 7.\n#### 7")
    [result] = search([PROBLEM], engine, SearchSettings(iterations=6))
    assert [p.steps for p in result.paths] == [()] and result.requests == len(engine.seen) == 1
    assert "Continuation:" in engine.seen[0].prompt and not result.root.children


def _no_answer_rollouts(request: GenerationRequest) -> str:
    if "Next step:" in request.prompt:
        return GOOD
    if "and nothing else" in request.prompt:  # cot_traces' answer-only request
        return "#### 7" if "seven" in request.prompt else "I am not sure."
    return "So the total is seven apples." if "get 7" in request.prompt else "Done."


def test_a_rollout_without_an_answer_is_forced_and_every_token_counted():
    engine = ScriptedEngine(_no_answer_rollouts)
    [result] = search([PROBLEM], engine, SearchSettings(iterations=4))
    [path] = result.paths
    assert path.forced and path.steps == (GOOD,) and path.text.endswith("#### 7")
    forced = [r for r in engine.seen if r.request_id.endswith(":force")]
    assert len(forced) == 2  # the root's rollout too, whose reply gave no answer
    assert result.requests == len(engine.seen) == 5  # root rollout + force, step, rollout + force
    assert result.tokens == sum(
        len(r.prompt.split()) + len(_no_answer_rollouts(r).split()) for r in engine.seen
    )
    [row] = search_rows([result], engine.identity, CTX, SearchSettings())
    assert {v["name"] for v in row["verdicts"]} >= {"answer_forced", "math_verify", "search"}
    unforced = search([PROBLEM], ScriptedEngine(_no_answer_rollouts),
                      SearchSettings(iterations=4, forcing=None))  # fmt: skip
    assert not unforced[0].paths


def test_a_rollout_that_hedges_between_answers_is_not_a_path():
    hedging = ScriptedEngine(lambda r: "It is 12.\n#### 12\nNo, it is 7.\n#### 7")
    [result] = search([PROBLEM], hedging, SearchSettings(iterations=3))
    assert not result.paths
    assert result.root.visits == 3 and result.root.value == 0.0


def test_sampling_at_budget_forces_answers_like_the_search():
    engine = ScriptedEngine(lambda r: "#### 7" if "and nothing else" in r.prompt else "Seven.")
    sampling = SearchSettings().rollout_sampling
    forced = sample_at_budget([PROBLEM], engine, [1], sampling)  # SearchSettings' forcing
    assert forced.solved == [True] and forced.samples == 1 and len(engine.seen) == 2
    assert forced.tokens == sum(len(r.prompt.split()) for r in engine.seen) + 3
    plain = sample_at_budget([PROBLEM], ScriptedEngine(lambda r: "Seven."), [1], sampling,
                             forcing=None)  # fmt: skip
    assert plain.solved == [False]
    assert SearchSettings().forcing == AnswerForcing()


def _task_row(task: str, difficulty: str, rid: str) -> dict:
    return {"id": rid, "task_type": task, "difficulty": difficulty}


def test_search_candidates_take_the_easiest_problems_one_task_at_a_time():
    rows = [_task_row("gcd", "medium", "a"), _task_row("gcd", "easy", "d"),
            _task_row("gcd", "easy", "b"), _task_row("lcm", "easy", "c"),
            _task_row("lcm", "medium", "e")]  # fmt: skip
    assert [r["id"] for r in search_candidates(rows, 3)] == ["b", "c", "d"]
    assert [r["id"] for r in search_candidates(rows, 4)][-1] == "a"
    assert search_candidates(rows, 0) == []
