"""Where OpenLineage events go: a JSONL file locally, any OpenLineage HTTP backend in production.

Config and client lifecycle only; the events themselves are built in
`synth_lib.lineage.openlineage_events` and emitted by the Parquet IO manager after each write.
"""

import fcntl
import os
from pathlib import Path
from typing import Any

import dagster as dg
from openlineage.client import OpenLineageClient
from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from pydantic import Field, PrivateAttr

from synth_lib.lineage.openlineage_events import DEFAULT_NAMESPACE, DEFAULT_PRODUCER

TRANSPORTS = ("file", "http", "console")


def default_events_file() -> Path:
    """`$SYNTH_HOME/openlineage/events.jsonl` (SYNTH_HOME defaults to `.synth` here)."""
    home = Path(os.environ.get("SYNTH_HOME", Path.cwd() / ".synth"))
    return home.resolve() / "openlineage" / "events.jsonl"


class OpenLineageEmitter(dg.ConfigurableResource):
    """Sends one START and one COMPLETE or FAIL event per asset materialization."""

    enabled: bool = Field(default=True, description="Emit events at all.")
    transport: str = Field(
        default="file",
        description=f"One of {TRANSPORTS}: 'file' appends JSON lines to file_path; 'http' posts "
        "to an OpenLineage backend (Marquez, or any that speaks the API); 'console' logs them.",
    )
    file_path: str = Field(
        default="",
        description="file: the JSONL file events are appended to. Empty: "
        "$SYNTH_HOME/openlineage/events.jsonl.",
    )
    url: str = Field(default="", description="http: backend base URL, e.g. http://marquez:5000.")
    endpoint: str = Field(default="api/v1/lineage", description="http: path events are posted to.")
    api_key: str = Field(
        default="",
        description="http: bearer token; set only via dg.EnvVar('OPENLINEAGE_API_KEY').",
    )
    timeout_s: float = Field(default=5.0, description="http: seconds per request.")
    retries: int = Field(
        default=2, description="http: retries on connection errors and 5xx before giving up."
    )
    namespace: str = Field(
        default=DEFAULT_NAMESPACE, description="Namespace of the jobs (one per asset) and runs."
    )
    producer: str = Field(
        default=DEFAULT_PRODUCER,
        description="URI naming this code location in events. Default: the repository URL "
        "of the installed package ([project.urls] in pyproject); a fork sets its own.",
    )

    _client: OpenLineageClient | None = PrivateAttr(default=None)
    _lock_path: Path | None = PrivateAttr(default=None)
    _setup_error: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if not self.enabled:
            return
        try:
            self._client = OpenLineageClient(transport=self._transport())
        except Exception as exc:
            # a lineage misconfiguration must not stop the data: every emit reports it instead
            self._setup_error = repr(exc)
            if context.log is not None:
                context.log.warning(f"OpenLineage disabled for this step: {exc!r}")

    def _transport(self) -> Any:
        if self.transport == "file":
            path = Path(self.file_path) if self.file_path else default_events_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_path = path
            return FileTransport(FileConfig(log_file_path=str(path), append=True))
        if self.transport == "http":
            if not self.url:
                raise ValueError("OpenLineage transport 'http' needs a url")
            params: dict[str, Any] = {
                "url": self.url,
                "endpoint": self.endpoint,
                "timeout": self.timeout_s,
                "retry": {"total": self.retries, "read": self.retries, "connect": self.retries},
            }
            if self.api_key:
                params["auth"] = {"type": "api_key", "apiKey": self.api_key}
            return HttpTransport(HttpConfig.from_dict(params))
        if self.transport == "console":
            return ConsoleTransport(ConsoleConfig())
        raise ValueError(f"unknown OpenLineage transport {self.transport!r}: one of {TRANSPORTS}")

    def emit(self, event: Any) -> None:
        """Send one event; raises on failure (the caller counts it and carries on)."""
        if self._client is None:
            raise RuntimeError(self._setup_error or "OpenLineageEmitter used before setup")
        if self._lock_path is None:
            self._client.emit(event)
            return
        # steps in parallel processes append to one file: one whole line at a time
        with open(self._lock_path, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            self._client.emit(event)
