"""Azure Resource Manager: one route table over the areas the emulator serves.

    resourcegroups.py   the subscription and its resource groups
    operations.py       long-running operations (status, results, lab-host jobs)
    network.py          Microsoft.Network: virtual networks, subnets, NSGs, public IPs, NICs
    compute.py          Microsoft.Compute: virtual machines (real lab hosts) and disks

What every resource shares is here: listing, reading, tagging, and the checks a PUT passes
before its type sees it (name, location, not being deleted). Each route also names the
Microsoft.Compute throttling policy its requests count against (see throttle.py).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hosts
from .common import DISK, KINDS, NIC, NSG, PUBLIC_IP, VM, VNET, ArmError, Kind, Reply, Request, Resources, Target, etag
from .compute import Compute
from .network import Network
from .operations import Operations
from .resourcegroups import ResourceGroups
from .routing import Route, match, route
from .store import Store

__all__ = ["Arm", "ArmError", "Reply"]  # keyvault.py takes the last two from here

SUB = "/subscriptions/{sub}"
GROUP = SUB + "/resourceGroups/{rg}"
IN_GROUP = GROUP + "/providers/"
ANY = "GET HEAD PUT PATCH POST DELETE"


def _compute_operation(req: Request) -> str | None:
    return "GetOperation" if req.params["namespace"].lower() == "microsoft.compute" else None


class Arm:
    def __init__(self, store: Store, config: dict, base_url: str, settings: Callable[[], dict],
                 start_host=hosts.start_host, stop_host=hosts.stop_host):
        self.res = Resources(store, config, base_url, settings)
        self.ops = Operations(self.res)
        self.network = Network(self.res, self.ops)
        self.compute = Compute(self.res, self.ops, self.network, start_host, stop_host)
        self.groups = ResourceGroups(self.res, self.ops, self.compute.deleting)
        self.routes = self._routes()

    def _routes(self) -> list[Route]:
        groups, ops, net, compute = self.groups, self.ops, self.network, self.compute
        vms, subnets = IN_GROUP + VM.full_type + "/{name}", IN_GROUP + VNET.full_type + "/{vnet}/subnets"
        return [
            route("GET", SUB, groups.subscription),
            route("GET", SUB + "/operationresults/{op}", ops.group_result),
            route("GET", SUB + "/providers/{namespace}/locations/{location}/operations/{op}", ops.status,
                  policy=_compute_operation),
            route("GET", SUB + "/providers/{namespace}/locations/{location}/operationResults/{op}", ops.result,
                  policy=_compute_operation),
            *[route("GET", f"{SUB}/providers/{kind.full_type}", self.list, kind=kind,
                    policy="HighCostGetVM" if kind is VM else None) for kind in KINDS.values()],
            route("GET", SUB + "/providers/Microsoft.Compute/locations/{location}/vmSizes", compute.vm_sizes),
            route("GET", SUB + "/providers/Microsoft.Compute/locations/{location}/publishers/{publisher}"
                  "/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions", compute.image_versions),
            route("GET", SUB + "/providers/{namespace}/{type*}", self.unknown_type),
            route("GET", SUB + "/resourcegroups", groups.list),
            route("GET HEAD", GROUP, groups.get),
            route("PUT", GROUP, groups.put),
            route("PATCH", GROUP, groups.patch),
            route("DELETE", GROUP, groups.delete),
            route("GET", subnets, net.list_subnets),
            route("GET", subnets + "/{name}", net.get_subnet),
            route("PUT", subnets + "/{name}", net.put_subnet),
            route("DELETE", subnets + "/{name}", net.delete_subnet),
            *self._resource(VNET, net.put_vnet, net.delete_vnet),
            *self._resource(NSG, net.put_nsg, net.delete_nsg),
            *self._resource(PUBLIC_IP, net.put_public_ip, net.delete_public_ip),
            *self._resource(NIC, net.put_nic, net.delete_nic),
            route("GET", vms + "/instanceView", compute.get_instance_view, policy="LowCostGetVM"),
            route("POST", vms + "/runCommand", compute.run_command, policy="UpdateVM"),
            route("POST", vms + "/start", compute.start, policy="UpdateVM"),
            route("POST", vms + "/deallocate", compute.deallocate, policy="DeleteVM"),
            *self._resource(VM, compute.put_vm, compute.delete_vm, patch=compute.patch_vm, policies={
                "list": "HighCostGetVM", "GET": "LowCostGetVM", "PUT": compute.put_policy, "PATCH": "UpdateVM",
                "DELETE": "DeleteVM"}),
            *self._resource(DISK, compute.put_disk, compute.delete_disk),
            route(ANY, IN_GROUP + "{namespace}/{type}", self.unknown_type),
            route(ANY, IN_GROUP + "{namespace}/{type}/{name}", self.unknown_type),
        ]

    def _resource(self, kind: Kind, put: Callable[[Target], Reply], delete: Callable[[dict, str], Reply],
                  patch: Callable[[Request], Reply] | None = None, policies: dict | None = None) -> list[Route]:
        """The routes of one resource type: list in a group, GET, PUT, PATCH (tags unless the type
        says otherwise), DELETE."""
        policies = policies or {}
        item = IN_GROUP + kind.full_type + "/{name}"
        return [route("GET", IN_GROUP + kind.full_type, self.list, kind=kind, policy=policies.get("list")),
                route("GET", item, self.get, kind=kind, policy=policies.get("GET")),
                route("PUT", item, self._checked_put(put), kind=kind, policy=policies.get("PUT")),
                route("PATCH", item, patch or self.patch_tags, kind=kind, policy=policies.get("PATCH")),
                route("DELETE", item, self._existing_delete(delete), kind=kind, policy=policies.get("DELETE"))]

    # --- dispatch -------------------------------------------------------------------------

    def _request(self, method: str, path: str, query: dict[str, str], body: dict | None) -> tuple[Route, Request]:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0].lower() == "subscriptions" and parts[1].lower() != self.res.sub.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{parts[1]}' could not be found.")
        found = match(self.routes, method, path)
        if found is None:
            raise ArmError(404, "InvalidRequestUri", f"The request URI '{path}' is not valid.")
        if found.route is None:
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
        return found.route, Request(method, path, query, body, found.params, found.route.extra.get("kind"))

    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None) -> Reply:
        self.ops.advance()
        target, req = self._request(method, path, query, body)
        if target.template.startswith(IN_GROUP):  # the group must exist; its name is spelt as created
            group = self.res.get(self.res.group_id(req.params["rg"]))
            if not group:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{req.params['rg']}' could not be "
                                                             "found.")
            req.params["rg"] = group["body"]["name"]
        return target.handler(req)

    def compute_policy(self, method: str, path: str) -> str | None:
        """The Microsoft.Compute throttling policy a request counts against, if any."""
        try:
            target, req = self._request(method, path, {}, None)
        except ArmError:
            return None
        policy = target.extra.get("policy")
        return policy(req) if callable(policy) else policy

    def advance(self) -> None:
        self.ops.advance()

    def resume(self) -> None:
        self.ops.resume()

    def lab_prefix(self) -> str:
        return self.compute.lab_prefix()

    # --- what every resource type shares ------------------------------------------------------

    def unknown_type(self, req: Request) -> Reply:
        """What ARM says of a type it does not know (or of a method a known type does not take)."""
        if (req.params["namespace"].lower(), req.params["type"].lower()) in KINDS:
            raise ArmError(405, "MethodNotAllowed", f"{req.method} is not supported here.")
        if "rg" in req.params:
            raise ArmError(404, "InvalidResourceType", f"The resource type '{req.params['type']}' could not be found "
                                                       f"in the namespace '{req.params['namespace']}' for api "
                                                       f"version '{req.api}'.")
        raise ArmError(404, "InvalidResourceType", f"The resource type '{req.params['namespace']}/"
                                                   f"{req.params['type']}' could not be found for api version "
                                                   f"'{req.api}'.")

    def list(self, req: Request) -> Reply:
        expand = req.query.get("$expand", "")
        return Reply(200, {"value": [self.res.out(r, expand)
                                     for r in self.res.records(req.kind.full_type, req.params.get("rg"))]})

    def _record(self, req: Request) -> dict:
        record = self.res.get(self.res.rid(req.params["rg"], req.kind, req.params["name"]))
        if not record:
            raise self.res.not_found(req.kind, req.params["rg"], req.params["name"])
        return record

    def get(self, req: Request) -> Reply:
        return Reply(200, self.res.out(self._record(req), req.query.get("$expand", "")))

    def patch_tags(self, req: Request) -> Reply:
        record = self._record(req)
        if "tags" in req.json:
            record["body"]["tags"] = req.json["tags"] or {}
        if req.kind.namespace == "Microsoft.Network":
            record["body"]["etag"] = etag()
        return Reply(200, self.res.out(record))

    def _checked_put(self, put: Callable[[Target], Reply]) -> Callable[[Request], Reply]:
        def checked(req: Request) -> Reply:
            kind, rg, name = req.kind, req.params["rg"], req.params["name"]
            if not kind.name_re.match(name):
                raise ArmError(400, "InvalidResourceName", f"Resource name {name} is invalid. The name can be up to "
                                                           "80 characters long. It must begin with a word character, "
                                                           "and it must end with a word character or with '_'. The "
                                                           "name may contain word characters or '.', '-', '_'.")
            resource_id = self.res.rid(rg, kind, name)
            record = self.res.get(resource_id)
            location = req.json.get("location")
            if not location:
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            if record and record["body"]["location"].replace(" ", "").lower() != location.replace(" ", "").lower():
                raise ArmError(409, "InvalidResourceLocation",
                               f"The resource '{name}' already exists in location '{record['body']['location']}' "
                               f"in resource group '{rg}'. A resource with the same name cannot be created in "
                               f"location '{location}'. Please select a new resource name.")
            if record and record["body"]["properties"].get("provisioningState") == "Deleting":
                raise ArmError(409, "Conflict", f"The resource '{name}' is being deleted.")
            return put(Target(rg, name, resource_id, record, req.json, req.api, location))

        return checked

    def _existing_delete(self, delete: Callable[[dict, str], Reply]) -> Callable[[Request], Reply]:
        def existing(req: Request) -> Reply:
            record = self.res.get(self.res.rid(req.params["rg"], req.kind, req.params["name"]))
            return delete(record, req.api) if record else Reply(204)

        return existing
