"""The bubblewrap sandbox that runs model-written code.

- `host`: `Sandbox`, `SandboxLimits`, `SandboxResult`, `SandboxUnavailable` (the API)
- `argv`: the bwrap command line and rlimit spec of a slot
- `zygote`: the host side of the per-slot fork server
- `boot`: the fork server itself (its source is run inside the sandbox)
- `process`: process-tree supervision, deadlines and capped pipes
"""
