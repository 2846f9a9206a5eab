"""Code data: Llama 3 style verified code and sandbox-run execution traces.

- `verified_code`: candidates + tests, lint, sandboxed tests, one repair round
- `execution_traces`: stdlib functions run on generated inputs (input -> output, no model)
- `lint`: static checks a model-written program passes before it is run
"""
