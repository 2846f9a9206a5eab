"""The code sandbox as a Dagster resource: limits and isolation mode, no logic.

The default mode needs bubblewrap (Debian/Ubuntu package `bubblewrap`); without it the
resource refuses to start unless `mode="rlimit_only"` is chosen explicitly, and that
weaker mode is then named in every verdict and in the assets' metadata.
"""

import dagster as dg
from pydantic import Field, PrivateAttr

from synth_lib.sandbox.host import Sandbox, SandboxLimits


class CodeSandbox(dg.ConfigurableResource):
    """Where model-written code runs: one verdict per sample, nothing reaches the host."""

    mode: str = Field(
        default="bwrap",
        description="bwrap (namespaces + read-only interpreter + rlimits) or rlimit_only "
        "(rlimits and a scratch dir only: no filesystem, network or PID isolation).",
    )
    timeout_s: float = Field(default=10.0, description="Wall-clock limit per sample (seconds).")
    memory_mb: int = Field(default=512, description="Address-space limit per process (MiB).")
    max_processes: int = Field(default=16, description="Processes a sample may have at once.")
    tmpfs_mb: int = Field(default=128, description="Size of the sample's private /tmp (MiB).")
    output_bytes: int = Field(
        default=1 << 20, description="stdout / stderr cap per sample; beyond it: resource_limit."
    )
    concurrency: int = Field(default=2, description="Samples run at once (about one per core).")
    retries: int = Field(
        default=2, description="Re-runs of a sample whose sandbox failed (sandbox_error)."
    )

    _sandbox: Sandbox | None = PrivateAttr(default=None)

    def get(self) -> Sandbox:
        """The configured sandbox (built once; raises SandboxUnavailable if it cannot run)."""
        if self._sandbox is None:
            limits = SandboxLimits(
                timeout_s=self.timeout_s,
                memory_mb=self.memory_mb,
                max_processes=self.max_processes,
                tmpfs_mb=self.tmpfs_mb,
                output_bytes=self.output_bytes,
            )
            self._sandbox = Sandbox(
                limits, mode=self.mode, concurrency=self.concurrency, retries=self.retries
            )
        return self._sandbox

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
