"""Search-based generation of verified reasoning: Monte Carlo tree search over steps.

A node is a partial solution (a list of steps). Each iteration selects a leaf by UCT
(mean reward + c·sqrt(ln N_parent / N_child)), expands it by one sampled next step
(progressive widening: at most `max_children` per node), rolls the new node out to a
full solution, scores the rollout with the task's own verifier (1 if it reaches the
gold answer, else 0) and backpropagates the reward to the root. A step that states its
answer ("#### x") is a terminal node, verified directly. Every verified path (steps +
rollout) is a candidate CoT row marked `search`.

The first iteration rolls out the root itself (`root_rollout`): a problem the model solves
outright then costs one request, and the tree grows only where that sample failed. A
rollout that finishes without a final answer gets cot_traces' answer-only request
(`forcing`); its path carries an `answer_forced` verdict. Either way the task's verifier
decides, and a rollout that states two different answers is rejected (`hedged`).

Iterations run in lockstep over all problems, so each phase is one engine batch. Every
token the search spends (prompt and completion, forcing included) is counted, so it can be
compared with plain sampling at the same budget (`sample_at_budget`, forced the same way).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth_lib.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ModelIdentity,
    SamplingParams,
)
from synth_lib.engines.output_checks import generation_verdict
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.answers import extract_answer, hedged
from synth_lib.reasoning.cot import AnswerForcing, CotOutcome, force_answers
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.reasoning.tasks import DIFFICULTY_LEVELS, Problem, check_answer

STAGE = "search_traces"
STEP_TEMPLATE = "reasoning_step"
ROLLOUT_TEMPLATE = "reasoning_rollout"
SAMPLE_TEMPLATE = "reasoning_cot"
TEMPLATES = (STEP_TEMPLATE, ROLLOUT_TEMPLATE, SAMPLE_TEMPLATE)


_FORCING = AnswerForcing()


@dataclass(frozen=True)
class SearchSettings:
    iterations: int = 6
    max_children: int = 2
    max_depth: int = 4
    exploration: float = 1.4
    max_paths: int = 1  # a problem with this many verified paths stops searching
    root_rollout: bool = True
    step_sampling: SamplingParams = field(  # a step is one line
        default_factory=lambda: SamplingParams(temperature=0.9, max_tokens=64, stop=("\n",))
    )
    rollout_sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.7, max_tokens=256)
    )
    forcing: AnswerForcing | None = _FORCING
    seed: int = 0


@dataclass
class Node:
    steps: tuple[str, ...]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0
    terminal: bool = False
    reward: float | None = None

    def uct(self, c: float) -> float:
        if not self.visits:
            return math.inf
        parent_visits = self.parent.visits if self.parent else self.visits
        return self.value / self.visits + c * math.sqrt(
            math.log(max(parent_visits, 1)) / self.visits
        )


@dataclass(frozen=True)
class VerifiedPath:
    """A solution the verifier accepted: the steps the tree chose plus the finishing text."""

    problem_id: str
    steps: tuple[str, ...]
    completion: str
    predicted: str | None
    score: float
    checker: str
    iteration: int
    forced: bool = False

    @property
    def text(self) -> str:
        return "\n".join([*self.steps, self.completion]).strip()


@dataclass
class SearchResult:
    """Per problem: its tree, the verified paths found, and the tokens spent."""

    problem: Problem
    root: Node
    paths: list[VerifiedPath] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    failed_requests: int = 0
    forced_answers: int = 0


def _tokens(result: GenerationResult) -> int:
    return result.prompt_tokens + result.completion_tokens


def _select(root: Node, settings: SearchSettings) -> Node:
    """Descend by UCT until a node that can still grow (or a terminal one)."""
    node = root
    while not node.terminal:
        can_grow = (
            len(node.children) < settings.max_children and len(node.steps) < settings.max_depth
        )
        if can_grow or not node.children:
            return node
        node = max(node.children, key=lambda child: child.uct(settings.exploration))
    return node


def _backpropagate(node: Node | None, reward: float) -> None:
    while node is not None:
        node.visits += 1
        node.value += reward
        node = node.parent


def _verify(problem: Problem, text: str) -> tuple[float, str | None, float, str]:
    """Reward 1 only if the task's verifier accepts the one final answer the text states."""
    predicted = extract_answer(text)
    ok, score, checker = check_answer(problem, predicted)
    if ok and hedged(text) is not None:  # two answers: rewarding the last would reward hedging
        return 0.0, predicted, score, "single_final_answer"
    return float(ok), predicted, score, checker


class _Meter:
    """The engine, counting what every request costs per problem: cot's forcing builds its
    own requests, and a reply that yields no answer is dropped there but was still paid for.
    Every request id starts with its problem's id and a colon (forcing appends ':force')."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.identity = engine.identity
        self.tokens: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = self.engine.generate(requests) if requests else []
        for request, result in zip(requests, results, strict=True):
            problem_id = request.request_id.split(":", 1)[0]
            self.tokens[problem_id] += result.prompt_tokens + result.completion_tokens
            self.requests[problem_id] += 1
        return results


def _finish(
    attempts: Sequence[tuple[Problem, GenerationRequest, GenerationResult]],
    engine: Engine,
    forcing: AnswerForcing | None,
) -> list[tuple[GenerationResult, bool]]:
    """cot_traces' answer forcing: each result (with '#### x' appended when forced) and
    whether it was forced."""
    done = force_answers(attempts, engine, forcing, CotOutcome())
    return [(result, reply is not None) for result, reply in done]


def _steps_text(steps: Sequence[str]) -> str:
    return "\n".join(steps) if steps else "(none yet)"


def search(
    problems: Sequence[Problem], engine: Engine, settings: SearchSettings | None = None
) -> list[SearchResult]:
    """Run MCTS on every problem; each iteration is two batches (expand, then roll out)."""
    settings = settings or SearchSettings()
    step_t, rollout_t = load_template(STEP_TEMPLATE), load_template(ROLLOUT_TEMPLATE)
    meter = _Meter(engine)
    results = [SearchResult(p, Node(steps=())) for p in problems]
    for iteration in range(settings.iterations):
        leaves, rollouts = [], []
        for r in results:
            if len(r.paths) >= settings.max_paths:
                continue
            leaf = _select(r.root, settings)
            if leaf.terminal:  # already scored: re-visiting it still informs the averages
                _backpropagate(leaf, leaf.reward or 0.0)
            elif leaf is r.root and not leaf.visits and settings.root_rollout:
                rollouts.append((r, leaf))
            else:
                leaves.append((r, leaf))
        if not leaves and not rollouts:
            break
        expand = [
            GenerationRequest(
                f"{r.problem.id}:step:{iteration}",
                step_t.render(question=r.problem.question, steps=_steps_text(leaf.steps)),
                settings.step_sampling,
                stable_seed(settings.seed, r.problem.id, "step", iteration),
            )
            for r, leaf in leaves
        ]
        for (r, leaf), result in zip(leaves, meter.generate(expand), strict=True):
            step = result.text.strip()
            if not generation_verdict(result).passed or not step:
                r.failed_requests += 1
                dead = Node((*leaf.steps, step or "(failed step)"), leaf, terminal=True, reward=0.0)
                leaf.children.append(dead)
                _backpropagate(dead, 0.0)
                continue
            child = Node((*leaf.steps, step), leaf)
            leaf.children.append(child)
            if "####" in step:
                reward, predicted, score, checker = _verify(r.problem, step)
                child.terminal, child.reward = True, reward
                if reward:
                    path = (child.steps[:-1], step, predicted, score, checker, iteration)
                    r.paths.append(VerifiedPath(r.problem.id, *path))
                _backpropagate(child, reward)
                continue
            rollouts.append((r, child))
        requests = [
            GenerationRequest(
                f"{r.problem.id}:rollout:{iteration}",
                rollout_t.render(question=r.problem.question, steps=_steps_text(child.steps)),
                settings.rollout_sampling,
                stable_seed(settings.seed, r.problem.id, "rollout", iteration),
            )
            for r, child in rollouts
        ]
        attempts = [(r.problem, request, result) for (r, _), request, result in
                    zip(rollouts, requests, meter.generate(requests), strict=True)]  # fmt: skip
        finished = _finish(attempts, meter, settings.forcing)
        for (r, child), (result, forced) in zip(rollouts, finished, strict=True):
            r.forced_answers += forced
            reward = 0.0
            if generation_verdict(result).passed:
                reward, predicted, score, checker = _verify(r.problem, result.text)
                if reward:
                    path = (child.steps, result.text.strip(), predicted, score, checker)
                    r.paths.append(VerifiedPath(r.problem.id, *path, iteration, forced))
            else:
                r.failed_requests += 1
            if len(child.steps) >= settings.max_depth:  # deep enough: its rollout is its value
                child.terminal, child.reward = True, reward
            _backpropagate(child, reward)
    for r in results:
        r.tokens, r.requests = meter.tokens[r.problem.id], meter.requests[r.problem.id]
    return results


@dataclass
class SamplingBaseline:
    """Plain sampling of whole solutions until each problem has spent its token budget."""

    tokens: int = 0
    samples: int = 0
    verified_samples: int = 0
    solved_problems: int = 0
    solved: list[bool] = field(default_factory=list)  # per problem, in order


def sample_at_budget(
    problems: Sequence[Problem],
    engine: Engine,
    budgets: Sequence[int],
    sampling: SamplingParams,
    seed: int = 0,
    max_rounds: int = 64,
    forcing: AnswerForcing | None = _FORCING,
) -> SamplingBaseline:
    """Sample one solution per problem per round until each problem's tokens reach its budget
    (the tokens its search spent): the comparison at equal tokens. `forcing` must be the
    search's (the default is SearchSettings'), so both sides complete answerless solutions
    the same way."""
    template = load_template(SAMPLE_TEMPLATE)
    meter = _Meter(engine)
    solved = [False] * len(problems)
    out = SamplingBaseline()
    for round_ in range(max_rounds):
        active = [i for i, p in enumerate(problems) if meter.tokens[p.id] < budgets[i]]
        if not active:
            break
        requests = [
            GenerationRequest(
                f"{problems[i].id}:sample:{round_}",
                template.render(question=problems[i].question),
                sampling,
                stable_seed(seed, problems[i].id, "sample", round_),
            )
            for i in active
        ]
        attempts = [(problems[i], request, result) for i, request, result in
                    zip(active, requests, meter.generate(requests), strict=True)]  # fmt: skip
        for i, (result, _) in zip(active, _finish(attempts, meter, forcing), strict=True):
            out.samples += 1
            if generation_verdict(result).passed and _verify(problems[i], result.text)[0]:
                out.verified_samples += 1
                solved[i] = True
    out.tokens = sum(meter.tokens[p.id] for p in problems)
    out.solved, out.solved_problems = solved, sum(solved)
    return out


def search_candidates(rows: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The `n` problem rows worth a tree: easiest difficulty first, then one of each task
    type in turn (rows in id order within a task), so a few trees cover several tasks.

    The default model solves few problems past the easiest level, where a search spends its
    whole budget and finds nothing."""

    def level(row: Mapping[str, Any]) -> int:
        return DIFFICULTY_LEVELS.get(str(row.get("difficulty")), len(DIFFICULTY_LEVELS))

    cells: dict[tuple[int, str], int] = Counter()
    ranked = []
    for row in sorted(rows, key=lambda r: (level(r), str(r.get("task_type")), r["id"])):
        cell = (level(row), str(row.get("task_type")))
        ranked.append(((cell[0], cells[cell], cell[1]), row))
        cells[cell] += 1
    return [row for _, row in sorted(ranked, key=lambda pair: pair[0])[:n]]


def _count_nodes(node: Node) -> int:
    return 1 + sum(_count_nodes(child) for child in node.children)


def search_rows(
    results: Sequence[SearchResult],
    identity: ModelIdentity,
    ctx: RowContext,
    settings: SearchSettings,
) -> list[dict[str, Any]]:
    """One CoT row per verified path, in cot_traces' payload, marked `search` (method mcts)."""
    cot_prompt, rollout = load_template(SAMPLE_TEMPLATE), load_template(ROLLOUT_TEMPLATE)
    rows = []
    for r in results:
        nodes = _count_nodes(r.root)
        for index, path in enumerate(r.paths):
            payload = {
                "prompt": cot_prompt.render(question=r.problem.question),
                "response": path.text,
                "question": r.problem.question,
                "gold": r.problem.gold,
                "predicted": path.predicted,
                "correct": True,
                "rationalized": False,
                "task_type": r.problem.task_type,
                "difficulty": r.problem.difficulty,
                "problem_id": r.problem.id,
                "sample_index": index,
                "method": "mcts",
                "search_steps": len(path.steps),
            }
            verdicts = [
                Verdict("final_answer", True),
                Verdict(path.checker, True, path.score, f"predicted={path.predicted!r} "
                        f"gold={r.problem.gold!r}"),
                Verdict("search", True, float(path.iteration),
                        f"mcts: found at iteration {path.iteration}, {nodes} nodes, "
                        f"{r.tokens} tokens"),
            ]  # fmt: skip
            if path.forced:
                verdicts.append(Verdict("answer_forced", True, None, "answer-only request"))
            generator = generator_for(
                identity, rollout, settings.rollout_sampling,
                stable_seed(settings.seed, r.problem.id, "rollout", path.iteration),
            )  # fmt: skip
            row = make_row(stage=STAGE, payload=payload, ctx=ctx, parents=[r.problem.row],
                           generator=generator, verdicts=verdicts)  # fmt: skip
            row["accepted"] = True
            rows.append(row)
    return rows
