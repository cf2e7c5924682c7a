"""Progress output for people (one line per step and host) and event capture for --json."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.apply.runner import HostResult
    from reconciler.plan.model import Step


class Printer:
    """Prints to stderr when --json owns stdout, else to stdout; keeps events for JSON output."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.events: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def _out(self, text: str) -> None:
        stream = sys.stderr if self.json_mode else sys.stdout
        print(text, file=stream, flush=True)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.t0:6.1f}s]"

    # observe progress
    def host_observed(self, host: str, status: str) -> None:
        self.events.append({"event": "observed", "host": host, "status": status})
        self._out(f"{self._stamp()} observe {host}: {status}")

    def message(self, text: str) -> None:
        self.events.append({"event": "message", "text": text})
        self._out(f"{self._stamp()} {text}")

    # executor hooks
    def step_started(self, steps: list[Step]) -> None:
        for s in steps:
            self.events.append({"event": "step_started", "step": s.id})
            self._out(f"{self._stamp()} {s.describe()} on {s.host} ...")

    def host_done(self, step: Step, result: HostResult) -> None:
        status = ("changed" if result.changed else "ok") if result.ok else "FAILED"
        self.events.append({"event": "step_done", "step": step.id, "host": step.host, "ok": result.ok,
                            "changed": result.changed, "seconds": round(result.seconds, 2),
                            "message": result.message})
        line = f"{self._stamp()} {step.describe()} on {step.host}: {status} ({result.seconds:.1f}s)"
        if not result.ok:
            line += f"\n    {result.message}"
        self._out(line)
