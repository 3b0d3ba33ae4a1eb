"""The alert hook: tell someone when a client is flagged (a home-automation hub, a push service).

`client_watch.on_flag` runs a command (the alert as JSON on its standard input) or POSTs the JSON
to a URL. Either runs on one worker thread, never on the event loop, with a time limit; alerts
wait in a small bounded queue (a burst beyond it is counted in `dropped`, never queued without
bound), and a failing hook is reported on stderr and never touches DNS service.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import urllib.request
from typing import Any, TextIO

from resolverguard.config import AlertHookConfig

QUEUE_SIZE = 64


class AlertHook:
    def __init__(self, cfg: AlertHookConfig, stderr: TextIO | None = None) -> None:
        self.cfg, self._stderr = cfg, stderr
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self.sent = self.failed = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="resolverguard-alerts", daemon=True)
        self._thread.start()

    @classmethod
    def carried(cls, old: AlertHook | None, cfg: AlertHookConfig, stderr: TextIO | None) -> AlertHook | None:
        """The running hook when its settings did not change on reload; a new one (or none)."""
        if not cfg.enabled:
            return None
        return old if old is not None and old.cfg == cfg else cls(cfg, stderr)

    def submit(self, alert: dict[str, Any]) -> None:
        """Queues one alert; never blocks the caller (the event loop)."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def close(self, wait: float = 0.0) -> None:
        """Stops the worker once the queue is drained (waiting at most `wait` seconds)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if wait:
            self._thread.join(wait)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            try:
                self._deliver(json.dumps(alert).encode())
                self.sent += 1
            except Exception as err:  # noqa: BLE001 - a broken hook must never stop the resolver
                self.failed += 1
                print(f"resolverguard: client_watch.on_flag failed: {err}", file=self._stderr or sys.stderr, flush=True)

    def _deliver(self, body: bytes) -> None:
        cfg = self.cfg
        if cfg.command:
            done = subprocess.run(cfg.command, input=body, timeout=cfg.timeout, capture_output=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{cfg.command[0]} exited {done.returncode}")
        if cfg.url is not None:
            request = urllib.request.Request(
                cfg.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=cfg.timeout) as response:  # noqa: S310 - the user's URL
                response.read(4096)
