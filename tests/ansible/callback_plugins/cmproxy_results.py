"""A test-only Ansible callback: every task result of a run, by task name, into a JSON file
(`CMPROXY_TEST_RESULTS`). Cheaper than a copy task, and it records failed tasks too. A play
over several hosts also gets `_by_host`: {host: {task name: result}}."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase  # type: ignore[import-untyped]


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "cmproxy_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: dict[str, Any] = {}

    def _record(self, result: Any, status: str) -> None:
        data = dict(result._result)
        data["_status"] = status
        task = result._task.get_name()
        self.results[task] = data
        by_host = self.results.setdefault("_by_host", {})
        by_host.setdefault(result._host.get_name(), {})[task] = data

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = os.environ.get("CMPROXY_TEST_RESULTS")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self.results, handle, default=str)
