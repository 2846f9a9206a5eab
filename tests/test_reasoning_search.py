"""MCTS over reasoning steps: UCT, backpropagation, verified paths, the equal-budget baseline."""

from synth_lib.engines.base import GenerationRequest
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.reasoning.search import SearchSettings, sample_at_budget, search
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
    settings = SearchSettings(iterations=10, max_children=2, max_paths=99)
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
    [result] = search([PROBLEM], engine, SearchSettings(iterations=3))
    assert result.paths[0].completion.endswith("#### 7") and result.paths[0].steps == ()
    assert not any("Continuation:" in r.prompt for r in engine.seen)
