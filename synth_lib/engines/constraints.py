"""Constrained decoding to a fixed set of strings (`SamplingParams.choices`) for transformers.

A 135M judge asked to reply "Score: 7" mostly writes something else, and an unreadable
verdict rejects the row it judges. Here each choice is tokenised once into a trie; at every
step the logits processor keeps only the tokens that continue some choice from what the
row has generated so far, and the end-of-turn token once a whole choice is written. Every
completion is then exactly one choice, and costs its few tokens, never the full budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Encode = Callable[[str], list[int]]


class ChoiceTrie:
    """Token-id prefixes of the choices; `allowed` says which tokens may come next."""

    def __init__(self, sequences: Sequence[Sequence[int]], end_ids: Sequence[int]) -> None:
        if not sequences or any(not s for s in sequences):
            raise ValueError("a choice trie needs at least one non-empty token sequence")
        if not end_ids:
            raise ValueError("a choice trie needs the end-of-turn token ids")
        self.end_ids = sorted(set(end_ids))
        self._children: list[dict[int, int]] = [{}]
        self._terminal: list[bool] = [False]
        for sequence in sequences:
            node = 0
            for token in sequence:
                child = self._children[node].get(token)
                if child is None:
                    child = self._children[node][token] = len(self._children)
                    self._children.append({})
                    self._terminal.append(False)
                node = child
            self._terminal[node] = True
        self.longest = max(len(s) for s in sequences)

    @classmethod
    def from_choices(
        cls, choices: Sequence[str], encode: Encode, end_ids: Sequence[int]
    ) -> ChoiceTrie:
        return cls([encode(c) for c in choices], end_ids)

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """Tokens that may follow `generated`; only the end tokens once a choice is complete
        or the row has left the trie (a finished row padded on, or an end token already out)."""
        node = 0
        for token in generated:
            node = self._children[node].get(token, -1)
            if node < 0:
                return list(self.end_ids)
        nexts = list(self._children[node])
        return nexts + self.end_ids if self._terminal[node] else nexts


class ChoiceLogitsProcessor:
    """A `transformers` logits processor: every token not allowed by the trie gets -inf.

    `prompt_length` is the padded prompt width of the batch, so each row's generated
    tokens are `input_ids[row, prompt_length:]`. Runs before temperature and top-p, so
    sampling only ever picks among allowed tokens.
    """

    def __init__(self, trie: ChoiceTrie, prompt_length: int) -> None:
        self.trie = trie
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        keep = torch.zeros_like(scores, dtype=torch.bool)
        for row, generated in enumerate(input_ids[:, self.prompt_length :].tolist()):
            keep[row, self.trie.allowed(generated)] = True
        return scores.masked_fill(~keep, float("-inf"))
