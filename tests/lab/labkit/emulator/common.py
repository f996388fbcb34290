"""What every ARM area of the emulator shares: errors and replies as ARM words them, the request a
handler gets, the resource kinds, and the store seen as ARM resources."""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .store import Store

OWNER = "emulator"  # lab hosts made by emulators carry this owner


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}


@dataclass
class Reply:
    status: int
    body: dict | list | None = None  # a list: the image catalogue answers a bare array
    headers: dict[str, str] = field(default_factory=dict)
    log: dict = field(default_factory=dict)  # extra fields for the request log


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict | None
    params: dict[str, str] = field(default_factory=dict)  # from the route template
    kind: Kind | None = None  # the resource type a route is for

    @property
    def api(self) -> str:
        return self.query.get("api-version", "")

    @property
    def json(self) -> dict:
        return self.body or {}


@dataclass(frozen=True)
class Kind:
    namespace: str
    type: str
    name_re: re.Pattern

    @property
    def full_type(self) -> str:
        return f"{self.namespace}/{self.type}"


_NET_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
VNET = Kind("Microsoft.Network", "virtualNetworks", _NET_NAME)
NSG = Kind("Microsoft.Network", "networkSecurityGroups", _NET_NAME)
PUBLIC_IP = Kind("Microsoft.Network", "publicIPAddresses", _NET_NAME)
NIC = Kind("Microsoft.Network", "networkInterfaces", _NET_NAME)
SUBNET = Kind("Microsoft.Network", "virtualNetworks/subnets", _NET_NAME)
VM = Kind("Microsoft.Compute", "virtualMachines", re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$"))
DISK = Kind("Microsoft.Compute", "disks", re.compile(r"^[A-Za-z0-9_.-]{1,80}$"))
KINDS = {(k.namespace.lower(), k.type.lower()): k for k in (VNET, NSG, PUBLIC_IP, NIC, VM, DISK)}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}+00:00"


def etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def merge(target: dict, patch: dict) -> dict:
    """JSON merge for PATCH bodies: objects merge, everything else replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def ref(obj: dict | None) -> str | None:
    return (obj or {}).get("id")


class Resources:
    """The store's resources as ARM sees them: `{"body": what ARM returns, "lab": lab-only state}`
    under the lower-cased resource id."""

    def __init__(self, store: Store, config: dict, base_url: str, settings: Callable[[], dict]):
        self.store = store
        self.sub = config["subscription_id"]
        self.tenant = config["tenant_id"]
        self.instance = config["instance"]
        self.base_url = base_url
        self.settings = settings
        # Extra fields a GET shows when `$expand` asks for them, by type (the VM instance view).
        self.expanders: dict[str, Callable[[dict, dict, str], None]] = {}

    def rid(self, rg: str, kind: Kind, name: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{rg}/providers/{kind.full_type}/{name}"

    def group_id(self, rg: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{rg}"

    def get(self, resource_id: str | None) -> dict | None:
        return self.store.resources.get((resource_id or "").lower())

    def put_record(self, body: dict, lab: dict | None = None) -> dict:
        record = {"body": body, "lab": lab or {}}
        self.store.resources[body["id"].lower()] = record
        return record

    def records(self, full_type: str, rg: str | None = None) -> list[dict]:
        return [record for record in self.store.resources.values()
                if record["body"]["type"].lower() == full_type.lower()
                and (rg is None or record["body"]["id"].split("/")[4].lower() == rg.lower())]

    def out(self, record: dict, expand: str = "") -> dict:
        body = copy.deepcopy(record["body"])
        expander = self.expanders.get(body["type"])
        if expander and expand:
            expander(record, body, expand)
        return body

    def base(self, kind: Kind, target: Target) -> dict:
        """A new resource body: id (kept as first written), name, type, location, tags, etag."""
        new = {"id": target.record["body"]["id"] if target.record else target.id, "name": target.name,
               "type": kind.full_type, "location": target.location.replace(" ", "").lower()}
        if target.body.get("tags"):
            new["tags"] = target.body["tags"]
        if kind.namespace == "Microsoft.Network":
            new["etag"] = etag()
        return new

    @staticmethod
    def not_found(kind: Kind, rg: str, name: str) -> ArmError:
        return ArmError(404, "ResourceNotFound", f"The Resource '{kind.full_type}/{name}' under resource group "
                                                 f"'{rg}' was not found. For more details please go to "
                                                 "https://aka.ms/ARMResourceNotFoundFix")

    def require(self, reference: str | None, kind: Kind, owner_id: str, what: str) -> dict:
        """The resource a body refers to, or ARM's InvalidResourceReference."""
        record = self.get(reference) if reference else None
        if not record or record["body"]["type"].lower() != kind.full_type.lower():
            raise ArmError(400, "InvalidResourceReference",
                           f"Resource {reference} referenced by resource {owner_id} was not found. Please make sure "
                           f"that the referenced resource exists, and that both resources are in the same region.",
                           what)
        return record


@dataclass
class Target:
    """A PUT's target, checked by the generic part (name, location, not being deleted)."""
    rg: str
    name: str
    id: str
    record: dict | None  # the resource as it is, if it exists
    body: dict
    api: str
    location: str
