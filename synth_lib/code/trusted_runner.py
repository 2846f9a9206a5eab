"""The test runner of `verified_code`: the sample's tests run here, the candidate elsewhere.

The host sends this file's text to the sandbox as the program, followed by `main(SPEC)`
(and imports it only for its constants). It uses the standard library only. Two
processes, both inside the sandbox:

- the trusted runner (this program's main process) holds the tests, the run's nonce and
  the only descriptor the verdict is written to. It makes itself non-dumpable (no other
  process of the uid can read its memory or descriptors; seccomp denies ptrace anyway);
- the candidate: a *fresh* interpreter (exec, so nothing of the runner's memory, tests
  or nonce survives) with no descriptor but its request and response pipes and /dev/null.
  It imports the solution as module `solution` and answers calls: name + arguments in,
  a return value or an exception out, both as tagged plain data.

The tests (already gated and rewritten by the host: each `assert` became a call to
`__synth_assert__`, so the runner counts the assertions that ran) run against proxies of
the solution's functions. A return value crosses only as plain data (None, bool, int,
float, complex, str, bytes, list, tuple, dict, set, frozenset), so an object with an
always-true `__eq__` cannot: it is refused. The candidate exiting, dying or answering
garbage fails the run. Then the same tests run against two stubs of the target function
(returns None; raises): tests that pass a stub test nothing. Last, with a reference, the
candidate and the reference are called on generated inputs and must agree, type-strictly.
"""

import builtins
import json
import os
import sys

MAX_LINE = 1 << 20
MAX_DEPTH = 40
MAX_ITEMS = 10_000  # an iterator's items are sent as a list, up to this many
SAFE_MODULES = frozenset((
    "math", "string", "re", "collections", "itertools", "functools", "fractions", "decimal",
    "statistics", "heapq", "bisect", "operator", "copy", "json", "random", "datetime",
    "textwrap", "typing", "dataclasses", "enum",
))  # fmt: skip
UNSAFE_BUILTINS = frozenset((
    "open", "exec", "eval", "compile", "globals", "locals", "vars", "input", "breakpoint",
    "exit", "quit", "help", "memoryview", "getattr", "setattr", "delattr", "__loader__",
    "__spec__", "copyright", "credits", "license",
))  # fmt: skip
EXIT_EXCEPTIONS = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")
# Attributes of safe modules that turn strings into objects or code: not in the tests' view.
GADGETS = frozenset((
    "Formatter", "attrgetter", "methodcaller", "get_type_hints", "ForwardRef",
    "get_annotations", "evaluate_forward_ref",
))  # fmt: skip


# ---- tagged plain data: the only thing that crosses between the two processes ----


class Items(list):
    """An iterator's items, drawn in the candidate process (its errors are the call's)."""


def encode(value, depth=0):
    """A JSON-able tagged form of plain data; TypeError for anything else."""
    kind = type(value)
    if depth > MAX_DEPTH:
        raise TypeError("nested too deeply")
    if value is None or kind is bool or kind is str:
        return [kind.__name__, value]
    if kind is int:
        return ["int", str(value)]
    if kind is float or kind is complex:
        return [kind.__name__, repr(value)]
    if kind is bytes:
        return ["bytes", value.hex()]
    if kind in (list, tuple, set, frozenset):
        items = sorted(value, key=repr) if kind in (set, frozenset) else value
        return [kind.__name__, [encode(item, depth + 1) for item in items]]
    if kind is dict:
        return ["dict", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    if kind.__module__ in ("fractions", "decimal") and kind.__name__ in ("Fraction", "Decimal"):
        return [kind.__name__, str(value)]
    if kind is Items and depth == 0:
        return ["iterator", [encode(item, 1) for item in value]]
    raise TypeError(f"{kind.__name__} is not plain data")


def decode(tagged, depth=0):
    """Plain data back from `encode`'s form; ValueError for anything malformed."""
    if depth > MAX_DEPTH or type(tagged) is not list or len(tagged) != 2:
        raise ValueError("malformed value")
    tag, body = tagged
    scalars = {"NoneType": type(None), "bool": bool, "str": str}
    if tag in scalars and type(body) is scalars[tag]:
        return body
    if tag == "int" and type(body) is str:
        return int(body)
    if tag in ("float", "complex") and type(body) is str:
        return (float if tag == "float" else complex)(body)
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag in ("list", "tuple", "set", "frozenset") and type(body) is list:
        kind = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag]
        return kind(decode(item, depth + 1) for item in body)
    if tag == "dict" and type(body) is list:
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
    if tag in ("Fraction", "Decimal") and type(body) is str:
        import decimal
        import fractions

        return fractions.Fraction(body) if tag == "Fraction" else decimal.Decimal(body)
    if tag == "iterator" and depth == 0 and type(body) is list:
        return iter([decode(item, 1) for item in body])
    raise ValueError(f"malformed value tagged {str(tag)[:20]!r}")


def _describe(exc):
    base = next(
        (c.__name__ for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c),
        "Exception",
    )
    try:
        message = str(exc)[:300]
    except Exception:
        message = "<unprintable>"
    return [type(exc).__name__, base, message]


# ---- the candidate process ----


def serve():
    """Candidate side: load the solution from fd 0, then answer calls until EOF."""
    requests, responses = os.fdopen(0, "rb"), os.fdopen(3, "wb")

    def send(obj):
        responses.write(json.dumps(obj).encode() + b"\n")
        responses.flush()

    module = type(sys)("solution")
    module.__file__ = "solution.py"
    sys.modules["solution"] = module
    try:
        exec(compile(json.loads(requests.readline()), "solution.py", "exec"), module.__dict__)
    except BaseException as exc:
        send({"load_error": _describe(exc)})
        return
    send({"loaded": True})
    for line in requests:
        call = json.loads(line)
        try:
            function = module.__dict__[call["name"]]
            value = function(*decode(call["args"]), **decode(call["kwargs"]))
            if hasattr(value, "__next__") and hasattr(value, "__iter__"):
                items = Items()
                for item in value:
                    if len(items) == MAX_ITEMS:
                        raise TypeError(f"iterator with more than {MAX_ITEMS} items")
                    items.append(item)
                value = items
        except BaseException as exc:
            send({"raised": _describe(exc)})
            continue
        try:
            send({"value": encode(value)})
        except (TypeError, ValueError, RecursionError) as exc:
            send({"unplain": str(exc)[:200]})


# ---- the trusted runner ----


class CandidateFailed(BaseException):
    """The candidate exited, died, or answered something that is not plain data."""


class StubCalled(Exception):
    """Raised by the raising stub of the target function."""


class Candidate:
    """The candidate process and its two pipes."""

    def __init__(self, solution, runner_source):
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                import fcntl

                devnull = os.open("/dev/null", os.O_RDWR)
                high = [
                    fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (req_r, devnull, devnull, resp_w)
                ]
                for target, fd in enumerate(high):
                    os.dup2(fd, target)
                os.closerange(4, 1 << 16)
                argv = [sys.executable, "-S", "-P", "-B", "-c", runner_source + "\nserve()\n"]
                os.execv(sys.executable, argv)
            finally:
                os._exit(70)
        os.close(req_r)
        os.close(resp_w)
        self.pid = pid
        self.requests = os.fdopen(req_w, "wb")
        self.responses = os.fdopen(resp_r, "rb")
        self.failure = None
        self._send(json.dumps(solution))
        self.loaded = self._receive()

    def _send(self, text):
        try:
            self.requests.write(text.encode() + b"\n")
            self.requests.flush()
        except OSError as exc:
            self._fail(f"the candidate process ended ({exc.strerror})")

    def _receive(self):
        line = self.responses.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            self._fail("the candidate process ended" if not line else "answer too long")
        try:
            answer = json.loads(line)
        except ValueError:
            self._fail("the candidate wrote garbage on its answer channel")
        if type(answer) is not dict:
            self._fail("the candidate wrote garbage on its answer channel")
        return answer

    def _fail(self, why):
        self.failure = self.failure or why
        raise CandidateFailed(why)

    def call(self, name, args, kwargs):
        """("value", plain data) or ("raised", [type name, builtin base, message])."""
        if self.failure:
            raise CandidateFailed(self.failure)
        try:
            message = json.dumps({"name": name, "args": encode(args), "kwargs": encode(kwargs)})
        except TypeError as exc:
            raise TypeError(f"argument to {name}() is not plain data: {exc}") from None
        self._send(message)
        answer = self._receive()
        if "value" in answer:
            try:
                return "value", decode(answer["value"])
            except (ValueError, TypeError, RecursionError):
                self._fail("the candidate sent a malformed value")
        if "unplain" in answer:
            self._fail(f"{name}() returned a value that is not plain data: {answer['unplain']}")
        raised = answer.get("raised")
        if type(raised) is not list or len(raised) != 3 or not all(type(x) is str for x in raised):
            self._fail("the candidate wrote garbage on its answer channel")
        return "raised", raised


class Session:
    """One pass of the tests: counters, and the proxies the tests see."""

    def __init__(self, candidate, spec, stub):
        self.candidate, self.spec, self.stub = candidate, spec, stub
        self.asserts = 0
        self.target_calls = 0
        self.exceptions = {
            name: type(name, (getattr(builtins, base, Exception),), {})
            for name, base in spec["exceptions"].items()
        }

    def check(self, condition, line, message, text):
        self.asserts += 1
        if not condition:
            detail = ""
            try:
                said = message()
                detail = "" if said is None else ": " + str(said)[:200]
            except Exception:
                detail = ""
            raise AssertionError(f"line {line} `{text}` failed{detail}")

    def proxy(self, name):
        def call(*args, **kwargs):
            if name == self.spec["target"]:
                self.target_calls += 1
                if self.stub == "none":
                    return None
                if self.stub == "raise":
                    raise StubCalled("stub")
            outcome, answer = self.candidate.call(name, args, kwargs)
            if outcome == "value":
                return answer
            kind, base, message = answer
            if kind in EXIT_EXCEPTIONS:
                self.candidate._fail(f"{name}() tried to exit ({kind})")
            if kind in self.exceptions:
                raise self.exceptions[kind](message)
            error = getattr(builtins, base, None)
            if not (isinstance(error, type) and issubclass(error, Exception)):
                error = RuntimeError
            raise error(f"{kind}: {message}" if kind != base else message)

        call.__name__ = name
        return call

    def namespace(self):
        safe = {k: v for k, v in vars(builtins).items() if k not in UNSAFE_BUILTINS}
        safe["__import__"] = _safe_import
        names = {name: self.proxy(name) for name in self.spec["functions"]}
        return {
            "__builtins__": safe,
            "__name__": "__main__",
            "__synth_assert__": self.check,
            **self.exceptions,
            **names,
        }

    def run(self, code):
        """{"status": passed|failed|error|candidate_failed, ...} for one pass of the tests."""
        namespace = self.namespace()
        outcome = {"status": "passed", "reason": ""}
        try:
            exec(code, namespace)
            for name, test in list(namespace.items()):
                code_of = getattr(test, "__code__", None)
                if name.startswith("test") and getattr(code_of, "co_filename", "") == "tests.py":
                    test()
        except CandidateFailed as exc:
            outcome = {"status": "candidate_failed", "reason": str(exc)}
        except AssertionError as exc:
            outcome = {"status": "failed", "reason": str(exc)[:300]}
        except BaseException as exc:
            outcome = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        if self.candidate.failure and outcome["status"] != "candidate_failed":
            outcome = {"status": "candidate_failed", "reason": self.candidate.failure}
        outcome.update(asserts=self.asserts, target_calls=self.target_calls)
        return outcome


class _Raises:
    """`pytest.raises(E)` for tests written for pytest."""

    def __init__(self, expected, match=None):
        self.expected, self.match = expected, match

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            raise AssertionError(f"did not raise {self.expected}")
        if not issubclass(kind, self.expected):
            return False
        if self.match is not None:
            import re

            if not re.search(self.match, str(exc)):
                raise AssertionError(f"{exc!s} does not match {self.match!r}")
        return True


class _Approx:
    """`pytest.approx(x)`: equal within 1e-6 relative (1e-12 absolute), like pytest's."""

    def __init__(self, expected, rel=1e-6, abs=1e-12):
        self.expected, self.rel, self.abs = expected, rel, abs

    def __eq__(self, other):
        import math

        if isinstance(self.expected, (list, tuple)):
            return (
                isinstance(other, (list, tuple))
                and len(other) == len(self.expected)
                and all(
                    _Approx(e, self.rel, self.abs) == o
                    for e, o in zip(self.expected, other, strict=True)
                )
            )
        try:
            return math.isclose(other, self.expected, rel_tol=self.rel, abs_tol=self.abs)
        except TypeError:
            return False

    def __repr__(self):
        return f"approx({self.expected!r})"


def _pytest_shim():
    shim = type(sys)("pytest")
    shim.raises, shim.approx = _Raises, _Approx
    return shim


def _safe_import(name, globals=None, locals=None, fromlist=(), level=0):
    """Only SAFE_MODULES, and only a view of their public, non-module attributes."""
    if name == "pytest" and not level:
        return _pytest_shim()
    if level or name not in SAFE_MODULES:
        raise ImportError(f"tests may not import {name}")
    module = __import__(name)
    view = type(sys)(name)
    for key, value in vars(module).items():
        if not key.startswith("_") and key not in GADGETS and type(value) is not type(sys):
            setattr(view, key, value)
    return view


def _differential(candidate, spec):
    """Agreement of the target and the reference on generated inputs (type-strict)."""
    import importlib
    import math
    import signal

    ref = spec["reference"]
    module_name, _, function_name = ref["function"].rpartition(".")
    reference = getattr(importlib.import_module(module_name), function_name)

    def alarm(signum, frame):
        raise TimeoutError("reference call timed out")

    signal.signal(signal.SIGALRM, alarm)
    agreed, disagreements = 0, []
    for expression in ref["calls"]:
        args, kwargs = eval(f"(lambda *a, **k: (a, k))({expression})", {})
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        try:
            expected = ["value", encode(reference(*args, **kwargs))]
        except TimeoutError:
            continue
        except Exception as exc:
            expected = ["raises", type(exc).__name__]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        outcome, got = candidate.call(spec["target"], args, kwargs)
        got = ["value", encode(got)] if outcome == "value" else ["raises", got[0]]
        if _same(got, expected, math):
            agreed += 1
        else:
            disagreements.append(f"{spec['target']}({expression}): {got} != {expected}"[:300])
    return {"calls": len(ref["calls"]), "agreed": agreed, "disagreements": disagreements[:5]}


def _same(a, b, math):
    if type(a) is not type(b):
        return False
    if type(a) is list:
        if len(a) == 2 and a[0] in ("float", "complex") and b[0] == a[0]:
            x, y = complex(a[1]), complex(b[1])
            return (
                a[1] == b[1] or x == y or math.isclose(abs(x - y), 0, abs_tol=1e-9 * max(1, abs(y)))
            )
        return len(a) == len(b) and all(_same(x, y, math) for x, y in zip(a, b, strict=True))
    return a == b


def main(spec):
    """Run everything; write exactly one line, `<nonce> <json>`, to the verdict descriptor."""
    import ctypes

    verdict_fd = os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)  # the tests' prints go nowhere; nothing else reaches fd 1
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    result = {"loaded": False}
    try:
        candidate = Candidate(spec["solution"], spec["runner"])
    except CandidateFailed as exc:
        candidate = None
        result["load_error"] = ["CandidateFailed", "Exception", str(exc)]
    if candidate is None:
        pass
    elif "load_error" in candidate.loaded:
        result["load_error"] = candidate.loaded["load_error"]
    else:
        result["loaded"] = True
        code = compile(spec["tests"], "tests.py", "exec")
        result["real"] = Session(candidate, spec, None).run(code)
        if result["real"]["status"] == "passed":
            result["stub_none"] = Session(candidate, spec, "none").run(code)["status"]
            result["stub_raise"] = Session(candidate, spec, "raise").run(code)["status"]
            if spec.get("reference"):
                try:
                    result["differential"] = _differential(candidate, spec)
                except CandidateFailed as exc:
                    result["differential"] = {"failed": str(exc)}
    os.write(verdict_fd, f"{spec['nonce']} {json.dumps(result)}\n".encode())
