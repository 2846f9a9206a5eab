"""Search-based generation of verified reasoning: Monte Carlo tree search over steps.

A node is a partial solution (a list of steps). Each iteration selects a leaf by UCT
(mean reward + c·sqrt(ln N_parent / N_child)), expands it by one sampled next step
(progressive widening: at most `max_children` per node), rolls the new node out to a
full solution, scores the rollout with the task's own verifier (1 if it reaches the
gold answer, else 0) and backpropagates the reward to the root. A step that states its
answer ("#### x") is a terminal node, verified directly. Every verified path (steps +
rollout) is a candidate CoT row marked `search`.

Iterations run in lockstep over all problems, so each phase is one engine batch. Every
token the search spends (prompt and completion) is counted, so it can be compared with
plain sampling at the same budget (`sample_at_budget`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from synth_lib.reasoning.answers import extract_answer
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.reasoning.tasks import Problem, check_answer

STAGE = "search_traces"
STEP_TEMPLATE = "reasoning_step"
ROLLOUT_TEMPLATE = "reasoning_rollout"
SAMPLE_TEMPLATE = "reasoning_cot"
TEMPLATES = (STEP_TEMPLATE, ROLLOUT_TEMPLATE, SAMPLE_TEMPLATE)


@dataclass(frozen=True)
class SearchSettings:
    iterations: int = 6
    max_children: int = 2
    max_depth: int = 4
    exploration: float = 1.4
    max_paths: int = 1  # a problem with this many verified paths stops searching
    step_sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.9, max_tokens=64)
    )
    rollout_sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.7, max_tokens=256)
    )
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
    predicted = extract_answer(text)
    ok, score, checker = check_answer(problem, predicted)
    return float(ok), predicted, score, checker


def _steps_text(steps: Sequence[str]) -> str:
    return "\n".join(steps) if steps else "(none yet)"


def search(
    problems: Sequence[Problem], engine: Engine, settings: SearchSettings | None = None
) -> list[SearchResult]:
    """Run MCTS on every problem; each iteration is two batches (expand, then roll out)."""
    settings = settings or SearchSettings()
    step_t, rollout_t = load_template(STEP_TEMPLATE), load_template(ROLLOUT_TEMPLATE)
    results = [SearchResult(p, Node(steps=())) for p in problems]
    for iteration in range(settings.iterations):
        leaves = []
        for r in results:
            if len(r.paths) >= settings.max_paths:
                continue
            leaf = _select(r.root, settings)
            if leaf.terminal:  # already scored: re-visiting it still informs the averages
                _backpropagate(leaf, leaf.reward or 0.0)
            else:
                leaves.append((r, leaf))
        if not leaves:
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
        rollouts = []
        for (r, leaf), result in zip(leaves, engine.generate(expand), strict=True):
            r.tokens += _tokens(result)
            r.requests += 1
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
                    r.paths.append(
                        VerifiedPath(
                            r.problem.id,
                            child.steps[:-1],
                            step,
                            predicted,
                            score,
                            checker,
                            iteration,
                        )
                    )
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
        for (r, child), result in zip(rollouts, engine.generate(requests), strict=True):
            r.tokens += _tokens(result)
            r.requests += 1
            reward = 0.0
            if generation_verdict(result).passed:
                reward, predicted, score, checker = _verify(r.problem, result.text)
                if reward:
                    r.paths.append(
                        VerifiedPath(
                            r.problem.id,
                            child.steps,
                            result.text.strip(),
                            predicted,
                            score,
                            checker,
                            iteration,
                        )
                    )
            else:
                r.failed_requests += 1
            if len(child.steps) >= settings.max_depth:  # deep enough: its rollout is its value
                child.terminal, child.reward = True, reward
            _backpropagate(child, reward)
    return results


@dataclass
class SamplingBaseline:
    """Plain sampling of whole solutions until each problem has spent its token budget."""

    tokens: int = 0
    samples: int = 0
    verified_samples: int = 0
    solved_problems: int = 0


def sample_at_budget(
    problems: Sequence[Problem],
    engine: Engine,
    budgets: Sequence[int],
    sampling: SamplingParams,
    seed: int = 0,
    max_rounds: int = 64,
) -> SamplingBaseline:
    """Sample one solution per problem per round until each problem's tokens reach its budget
    (the tokens its search spent): the comparison at equal tokens."""
    template = load_template(SAMPLE_TEMPLATE)
    spent = [0] * len(problems)
    solved = [False] * len(problems)
    out = SamplingBaseline()
    for round_ in range(max_rounds):
        active = [i for i, p in enumerate(problems) if spent[i] < budgets[i]]
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
        for i, result in zip(active, engine.generate(requests), strict=True):
            spent[i] += _tokens(result)
            out.samples += 1
            if generation_verdict(result).passed and _verify(problems[i], result.text)[0]:
                out.verified_samples += 1
                solved[i] = True
    out.tokens = sum(spent)
    out.solved_problems = sum(solved)
    return out


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
            generator = generator_for(
                identity, rollout, settings.rollout_sampling,
                stable_seed(settings.seed, r.problem.id, "rollout", path.iteration),
            )  # fmt: skip
            row = make_row(stage=STAGE, payload=payload, ctx=ctx, parents=[r.problem.row],
                           generator=generator, verdicts=verdicts)  # fmt: skip
            row["accepted"] = True
            rows.append(row)
    return rows
