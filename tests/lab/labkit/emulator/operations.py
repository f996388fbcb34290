"""Long-running operations the way ARM runs them.

A write answers at once: PUT/PATCH with a provisioningState in progress, DELETE and POST actions
with 202, each with an absolute `Azure-AsyncOperation` URL, a `Location` URL and `Retry-After`.
The operation status resource says InProgress until the operation's work (a lab-host job run in
a thread, if any) is done and its configured latency has passed, then Succeeded or Failed with
an ARM error. Jobs are kept in the operation, so a restarted emulator runs them again.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable

from .common import ArmError, Reply, Request, Resources, now_iso

KEEP_FINISHED = 3600  # seconds a finished operation stays readable: pollers may come back late


class Operations:
    def __init__(self, res: Resources):
        self.res = res
        self.store = res.store
        # Filled in by the areas: job runners by job kind (returning an operation output or
        # None), what a removal leaves to tidy by resource type, and what a finished action does
        # to its resource by (type, action) (called with the operation, the record and success).
        self.jobs: dict[str, Callable[[dict, dict], dict | None]] = {}
        self.on_removed: dict[str, Callable[[dict], None]] = {}
        self.on_finished: dict[tuple[str, str], Callable[[dict, dict, bool], None]] = {}

    def retry_after(self) -> str:
        # Whole seconds, at least 1: the SDKs parse an LRO's Retry-After as an integer, and 0
        # would make azure-core fall back to its 30 s default interval.
        return str(max(1, math.ceil(float(self.res.settings().get("retry_after", 1)))))

    def _latency(self, resource_id: str) -> float:
        key = resource_id.split("/providers/")[-1].split("/")[1] if "/providers/" in resource_id else "resourceGroups"
        lro = self.res.settings().get("lro_seconds", {})
        return float(lro.get(key, lro.get("default", 0)))

    def start(self, namespace: str, location: str, api_version: str, resource_id: str, action: str,
              job: dict | None = None, removes: list[str] | None = None) -> dict:
        op = {"id": str(uuid.uuid4()), "namespace": namespace, "location": location,
              "resource": resource_id.lower(), "action": action, "start": time.time(), "startTime": now_iso(),
              "not_before": time.time() + self._latency(resource_id), "work": "pending" if job else "none",
              "job": job, "status": "InProgress", "removes": removes or [], "api_version": api_version}
        self.store.operations[op["id"]] = op
        if job:
            self._launch(op)
        return op

    def _launch(self, op: dict) -> None:
        def run() -> None:
            output = None
            try:
                output = self.jobs[op["job"]["kind"]](op, op["job"])
                outcome, error = "done", None
            except ArmError as err:  # what Azure itself reports for this failure
                outcome, error = "failed", {"code": err.code, "message": err.message}
            except Exception as err:  # reported through the operation, like a provisioning failure
                outcome = "failed"
                error = {"code": "OSProvisioningInternalError" if op["action"] == "put" else "InternalOperationError",
                         "message": f"Lab host operation failed: {str(err).splitlines()[0]}"}
            with self.store.lock:
                op["work"], op["error"] = outcome, error
                if output is not None:
                    op["output"] = output
                self.advance()
                self.store.save()

        threading.Thread(target=run, name=f"op-{op['id'][:8]}", daemon=True).start()

    def resume(self) -> None:
        """Jobs that died with the previous process run again."""
        for op in self.store.operations.values():
            if op["status"] == "InProgress" and op["work"] == "pending" and op.get("job"):
                self._launch(op)

    def urls(self, op: dict) -> tuple[str, str]:
        """(Azure-AsyncOperation, Location) for an operation."""
        api = op["api_version"]
        if op["namespace"] == "Microsoft.Resources":
            url = f"{self.res.base_url}/subscriptions/{self.res.sub}/operationresults/{op['id']}?api-version={api}"
            return url, url
        root = (f"{self.res.base_url}/subscriptions/{self.res.sub}/providers/{op['namespace']}/locations/"
                f"{op['location']}")
        status = f"{root}/operations/{op['id']}?api-version={api}"
        if op["action"] == "runCommand":  # Compute's Location for Run Command: the operation, monitored
            return status, f"{root}/operations/{op['id']}?monitor=true&api-version={api}"
        return status, f"{root}/operationResults/{op['id']}?api-version={api}"

    def headers(self, op: dict) -> dict[str, str]:
        async_url, location_url = self.urls(op)
        return {"Azure-AsyncOperation": async_url, "Location": location_url, "Retry-After": self.retry_after()}

    def accept_put(self, new: dict, record: dict | None, api: str, job: dict | None = None, lab: dict | None = None,
                   creating_state: str = "Updating") -> Reply:
        """Store a PUT's resource as in progress and answer 201 (new) or 200 with the LRO headers."""
        new["properties"]["provisioningState"] = "Updating" if record else creating_state
        self.res.put_record(new, lab if lab is not None else (record or {}).get("lab", {}))
        op = self.start(new["type"].split("/")[0], new["location"], api, new["id"], "put", job)
        return Reply(200 if record else 201, self.res.out(self.res.get(new["id"])), self.headers(op))

    def accept_delete(self, record: dict, api: str, job: dict | None = None, also: list[str] | None = None) -> Reply:
        body = record["body"]
        body["properties"]["provisioningState"] = "Deleting"
        op = self.start(body["type"].split("/")[0], body["location"], api, body["id"], "delete", job,
                        removes=[body["id"].lower(), *(also or [])])
        return Reply(202, None, self.headers(op))

    # --- progress --------------------------------------------------------------------------

    def advance(self) -> None:
        """Finish operations whose work is done and whose latency has passed."""
        now = time.time()
        for op in self.store.operations.values():
            if op["status"] != "InProgress":
                continue
            if op["work"] == "failed":
                op["status"], op["endTime"] = "Failed", now_iso()
                self._finished(op, ok=False)
            elif op["work"] != "pending" and now >= op["not_before"]:
                op["status"], op["endTime"] = "Succeeded", now_iso()
                self._finished(op, ok=True)
        for op_id in [k for k, v in self.store.operations.items()
                      if v["status"] != "InProgress" and now - v["start"] > KEEP_FINISHED]:
            del self.store.operations[op_id]

    def _finished(self, op: dict, ok: bool) -> None:
        if op["action"] == "delete":
            if ok:
                for resource_id in op["removes"]:
                    self._remove(resource_id)
            return
        record = self.res.get(op["resource"])
        if not record:
            return
        if op["action"] == "put":
            # An update that ends while the creation still runs must not claim Succeeded early.
            busy = any(other is not op and other["status"] == "InProgress" and other["resource"] == op["resource"]
                       for other in self.store.operations.values())
            if busy and ok:
                return
            record["body"]["properties"]["provisioningState"] = "Succeeded" if ok else "Failed"
        hook = self.on_finished.get((record["body"]["type"], op["action"]))
        if hook:
            hook(op, record, ok)

    def _remove(self, resource_id: str) -> None:
        record = self.store.resources.pop(resource_id.lower(), None)
        if record and record["body"]["type"] in self.on_removed:
            self.on_removed[record["body"]["type"]](record["body"])

    # --- the operation routes ----------------------------------------------------------------

    def _find(self, op_id: str) -> dict:
        op = self.store.operations.get(op_id)
        if not op:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        return op

    def status(self, req: Request) -> Reply:
        """GET .../operations/{id}: the status resource (with `monitor=true`: the result, as Location)."""
        if req.query.get("monitor") == "true":
            return self._result(req.params["op"], group=False)
        op = self._find(req.params["op"])
        body = {"name": op["id"], "status": op["status"], "startTime": op["startTime"]}
        headers = {}
        if op["status"] == "InProgress":
            headers["Retry-After"] = self.retry_after()
        else:
            body["endTime"] = op.get("endTime")
        if op["status"] == "Failed":
            body["error"] = op["error"]
        if op["status"] == "Succeeded" and "output" in op:
            body["properties"] = {"output": op["output"]}
        return Reply(200, body, headers)

    def result(self, req: Request) -> Reply:
        """GET .../operationResults/{id}: 202 while running, then the outcome."""
        return self._result(req.params["op"], group=False)

    def group_result(self, req: Request) -> Reply:
        """GET /subscriptions/{sub}/operationresults/{id}: Microsoft.Resources' Location polling."""
        return self._result(req.params["op"], group=True)

    def _result(self, op_id: str, group: bool) -> Reply:
        op = self._find(op_id)
        if op["status"] == "InProgress":
            return Reply(202, None, {"Location": self.urls(op)[1], "Retry-After": self.retry_after()})
        if op["status"] == "Failed":
            raise ArmError(500 if group else 400, op["error"]["code"], op["error"]["message"])
        if op["action"] == "delete":
            return Reply(200 if group else 204)
        if op["action"] == "runCommand":
            return Reply(200, op["output"])
        if op["action"] != "put":
            return Reply(200)
        record = self.res.get(op["resource"])
        return Reply(200, self.res.out(record) if record else None)
