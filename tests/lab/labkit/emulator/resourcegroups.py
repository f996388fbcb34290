"""Microsoft.Resources: the subscription and its resource groups."""

from __future__ import annotations

import re
from collections.abc import Callable

from .common import ArmError, Reply, Request, Resources
from .operations import Operations

RG_NAME = re.compile(r"^[-\w._()]{1,90}$")
GROUP_TYPE = "Microsoft.Resources/resourceGroups"


class ResourceGroups:
    def __init__(self, res: Resources, ops: Operations, deleting: Callable[[list[dict]], dict | None]):
        """`deleting(records)` marks resources a group deletion takes along and returns the lab-host
        job that goes with it (None if there is nothing to stop)."""
        self.res, self.ops, self.deleting = res, ops, deleting

    def subscription(self, req: Request) -> Reply:
        sub = self.res.sub
        return Reply(200, {"id": f"/subscriptions/{sub}", "subscriptionId": sub, "displayName": "sshca lab",
                           "state": "Enabled", "subscriptionPolicies": {
                               "locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                               "spendingLimit": "Off"}})

    def list(self, req: Request) -> Reply:
        return Reply(200, {"value": [r["body"] for r in self.res.records(GROUP_TYPE)]})

    def _existing(self, rg: str) -> dict:
        record = self.res.get(self.res.group_id(rg))
        if not record:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        return record

    def get(self, req: Request) -> Reply:
        if req.method == "HEAD":
            return Reply(204 if self.res.get(self.res.group_id(req.params["rg"])) else 404)
        return Reply(200, self._existing(req.params["rg"])["body"])

    def put(self, req: Request) -> Reply:
        rg, body = req.params["rg"], req.json
        record = self.res.get(self.res.group_id(rg))
        if not RG_NAME.match(rg) or rg.endswith("."):
            raise ArmError(400, "InvalidResourceGroup", f"The provided resource group name '{rg}' has these invalid "
                                                        "characters: the name must be 1-90 letters, digits, '_', "
                                                        "'-', '.', '(' or ')', not ending in '.'.")
        location = body.get("location")
        if not location:
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        if record and record["body"]["location"].lower() != location.lower():
            raise ArmError(409, "InvalidResourceGroupLocation",
                           f"Invalid resource group location '{location}'. The Resource group already exists in "
                           f"location '{record['body']['location']}'.")
        new = {"id": record["body"]["id"] if record else self.res.group_id(rg),
               "name": record["body"]["name"] if record else rg, "type": GROUP_TYPE, "location": location,
               "properties": {"provisioningState": "Succeeded"}}
        for key in ("tags", "managedBy"):
            if body.get(key):
                new[key] = body[key]
        self.res.put_record(new)
        return Reply(200 if record else 201, new)

    def patch(self, req: Request) -> Reply:
        record = self._existing(req.params["rg"])
        if "tags" in req.json:
            record["body"]["tags"] = req.json["tags"] or {}
        return Reply(200, record["body"])

    def delete(self, req: Request) -> Reply:
        """202, then the group and everything in it go (lab hosts of its VMs included)."""
        record = self._existing(req.params["rg"])
        group_id = record["body"]["id"]
        record["body"]["properties"]["provisioningState"] = "Deleting"
        members = [rid for rid in self.res.store.resources if rid.startswith(group_id.lower() + "/providers/")]
        job = self.deleting([self.res.store.resources[rid] for rid in members])
        op = self.ops.start("Microsoft.Resources", "global", req.api, group_id, "delete", job,
                            removes=[*members, group_id.lower()])
        return Reply(202, None, {"Location": self.ops.urls(op)[1], "Retry-After": self.ops.retry_after()})
