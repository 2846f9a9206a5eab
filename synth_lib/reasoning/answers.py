"""Final-answer extraction from a chain of thought, and answer equivalence.

Model output is untrusted text (a random-weight smoke model emits pure noise), so every
function here returns a value instead of raising: an unparseable answer is simply wrong.
Equivalence goes from cheap to expensive: normalised string, exact rational number,
then `math-verify` (LaTeX and symbolic forms, via sympy), then exact arithmetic. Nothing
here passes model text to `eval` or `sympify` (both execute code).
"""

from __future__ import annotations

import ast
import operator as op
import re
import threading
from fractions import Fraction

MAX_ANSWER_CHARS = 80

_BOXED = re.compile(r"\\boxed\s*\{")
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*([^\n]+)", re.IGNORECASE
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?$")
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}")
_RESULT = re.compile(r"=\s*([-+]?\$?\d[\d,]*(?:\.\d+)?)\s*\.?\s*$")  # '2 + 9 = 11': 11
_SINGLE_WORD = re.compile(r"[^\W_][\w.\-]*")
_ALTERNATIVES = re.compile(r"\s+(?:or|and/or)\s+", re.IGNORECASE)


def _braced(text: str, start: int) -> str | None:
    """The text from `start` to its matching close brace, honouring nesting; None if unbalanced."""
    depth = 1
    for pos in range(start, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[start:pos]
    return None


def _boxed_contents(text: str) -> str | None:
    """Contents of the last \\boxed{...}, honouring nested braces; None if unbalanced."""
    matches = list(_BOXED.finditer(text))
    return _braced(text, matches[-1].end()) if matches else None


def extract_answer(text: str | None) -> str | None:
    """The final answer a trace commits to, or None when it commits to none.

    Only explicit markers count (\\boxed{}, '#### x', 'the answer is x'): a trace that
    never states its answer is not usable training data, so there is no last-number guess.
    The last marker wins, as traces often revise themselves.
    """
    if not text:
        return None
    candidates: list[tuple[int, str]] = []
    boxed = _boxed_contents(text)
    if boxed is not None:
        candidates.append((text.rfind("\\boxed"), boxed))
    for pattern in (_HASHES, _ANSWER_IS):
        found = list(pattern.finditer(text))
        if found:
            candidates.append((found[-1].start(), found[-1].group(1)))
    if not candidates:
        return None
    answer = normalize_answer(max(candidates)[1])
    return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None


def forced_answer(reply: str | None) -> str | None:
    """The answer in a reply to "state the final answer" (its first line only), or None.

    A marked answer ('#### 7', 'The answer is 7') counts, and so does a bare one, or the
    number a one-line calculation ends in ('2 + 9 = 11'); either way it must be a number
    or a single word, since the request asked for nothing else. Prose is not an answer,
    and no number is guessed out of it.
    """
    line = (reply or "").strip().split("\n")[0]
    result = _RESULT.search(line)
    answer = extract_answer(line) or normalize_answer(result.group(1) if result else line)
    answer = answer.strip(" \"'`")
    if len(answer) > MAX_ANSWER_CHARS:
        return None
    if _as_fraction(answer) is not None or _SINGLE_WORD.fullmatch(answer):
        return answer
    return None


def stated_answers(text: str | None) -> list[str]:
    """Every final answer the text states, in order: each \\boxed{}, each '#### x', and each
    'the answer is x' whose x (up to the end of its clause) is a number or one word, or
    alternatives of those ('17 or 18'): prose after 'the answer is' is not an answer."""
    if not text:
        return []
    found: list[tuple[int, str]] = []
    for match in _BOXED.finditer(text):
        inner = _braced(text, match.end())
        if inner is not None:
            found.append((match.start(), inner))
    found += [(m.start(), m.group(1)) for m in _HASHES.finditer(text)]
    for match in _ANSWER_IS.finditer(text):
        value = normalize_answer(re.split(r"####|\\boxed|[;,]\s|\.\s", match.group(1))[0])
        parts = _ALTERNATIVES.split(value)
        if _as_fraction(value) is not None or all(len(p.split()) == 1 for p in parts):
            found.append((match.start(), value))
    answers = [normalize_answer(value) for _, value in sorted(found)]
    return [a for a in answers if a and len(a) <= MAX_ANSWER_CHARS]


def hedged(text: str | None) -> str | None:
    """Why the text hedges between final answers ('17' then '18', '17 or 18'), or None.

    One final answer, stated once or repeated in equivalent forms, is not hedging."""
    answers = stated_answers(text)
    for answer in answers:
        parts = _ALTERNATIVES.split(answer)
        if len(parts) > 1 and not all(answers_match(p, parts[0]) for p in parts[1:]):
            return f"one answer offers alternatives: {answer!r}"
    for answer in answers[1:]:
        if not answers_match(answer, answers[0]):
            return f"states different final answers: {answers[0]!r} and {answer!r}"
    return None


def normalize_answer(answer: str) -> str:
    """Strip the decoration around an answer: $, units in \\text{}, commas, trailing period."""
    out = _TEXT_WRAPPER.sub(r"\1", answer.strip())
    out = out.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("**", "")
    out = _THOUSANDS.sub("", out)
    out = re.sub(r"^([-+])\s+(?=\d)", r"\1", out.strip())
    out = out.rstrip(".").strip()
    if out.startswith("\\(") and out.endswith("\\)"):
        out = out[2:-2].strip()
    return out


def _as_fraction(text: str) -> Fraction | None:
    candidate = text.replace(" ", "").rstrip("%")
    if not _NUMBER.match(candidate):
        return None
    try:
        return Fraction(candidate)
    except (ValueError, ZeroDivisionError):
        return None


def _math_verify(pred: str, gold: str) -> bool | None:
    """math-verify's verdict on both sides read as LaTeX math; None if either is unreadable.

    Its timeouts use SIGALRM, which only the main thread may set: elsewhere
    (threaded executors) it runs without one, the inputs being capped in length.
    """
    try:
        from math_verify import parse, verify

        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:
        return None


_ARITHMETIC_OPS = {ast.Add: op.add, ast.Sub: op.sub, ast.Mult: op.mul, ast.Div: op.truediv}


def _arithmetic(node: ast.AST) -> Fraction:
    """Exact value of + - * / arithmetic on number literals; anything else raises."""
    if isinstance(node, ast.Expression):
        return _arithmetic(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC_OPS:
        return _ARITHMETIC_OPS[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise ValueError("not plain arithmetic")


def _arithmetic_equal(pred: str, gold: str) -> bool:
    """Numeric fallback without eval: both sides as exact +-*/ arithmetic (no powers, no names)."""
    try:
        return _arithmetic(ast.parse(pred, mode="eval")) == _arithmetic(
            ast.parse(gold, mode="eval")
        )
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return False


def answers_match(pred: str | None, gold: str | None) -> bool:
    """True when `pred` and `gold` denote the same value ('1,000' == '1000', '0.5' == '1/2')."""
    if not pred or not gold:
        return False
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g or len(p) > MAX_ANSWER_CHARS or len(g) > MAX_ANSWER_CHARS:
        return False
    if p == g or p.lower() == g.lower():
        return True
    pf, gf = _as_fraction(p), _as_fraction(g)
    if pf is not None and gf is not None:
        return pf == gf
    verdict = _math_verify(p, g)
    if verdict is not None:
        return verdict
    return _arithmetic_equal(p, g)
