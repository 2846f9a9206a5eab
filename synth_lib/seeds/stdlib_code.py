"""Code seeds: pure-Python standard library functions with their docstrings."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator

from synth_lib.provenance.schema import Source
from synth_lib.seeds.cleaning import RawSeed

LICENSE = "PSF-2.0"
DATASET = "cpython-stdlib"
DEFAULT_MODULES = (
    "bisect",
    "calendar",
    "colorsys",
    "difflib",
    "fnmatch",
    "fractions",
    "heapq",
    "html",
    "json.encoder",
    "keyword",
    "ntpath",
    "posixpath",
    "quopri",
    "shlex",
    "statistics",
    "string",
    "textwrap",
    "uu",
    "base64",
    "ipaddress",
    "glob",
    "filecmp",
    "urllib.parse",
)


def stdlib_functions(
    modules: tuple[str, ...] = DEFAULT_MODULES, min_chars: int = 150, max_chars: int = 3000
) -> Iterator[RawSeed]:
    """Top-level functions defined in `modules` that have a docstring and a sane length."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, func in sorted(inspect.getmembers(module, inspect.isfunction)):
            if func.__module__ != module.__name__ or name.startswith("_") or not func.__doc__:
                continue
            try:
                source = inspect.getsource(func)
            except (OSError, TypeError):
                continue
            if not min_chars <= len(source) <= max_chars:
                continue
            qualname = f"{module_name}.{name}"
            yield RawSeed(
                payload={"text": source, "name": qualname, "module": module_name},
                source=Source(DATASET, f"{qualname} (CPython {version})", LICENSE),
                text_fields=("text",),
            )
