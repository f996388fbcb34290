"""Microsoft.Network: virtual networks and subnets, network security groups, public IP addresses
and network interfaces, with the back-references Azure keeps (a subnet's and a public IP's IP
configurations, an NSG's NICs) and the errors it gives for resources still in use.

Public IPs are loopback addresses: the lab hosts' "public" addresses, reserved across every
emulator on the machine. Private IPs come from the subnet and are data only.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .. import hosts
from .common import NIC, NSG, PUBLIC_IP, SUBNET, VNET, ArmError, Reply, Request, Resources, Target, etag, ref
from .operations import Operations

DEFAULT_NSG_RULES = [
    ("AllowVnetInBound", "Allow", "Inbound", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Allow", "Inbound", 65001, "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Deny", "Inbound", 65500, "*", "*"),
    ("AllowVnetOutBound", "Allow", "Outbound", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Allow", "Outbound", 65001, "*", "Internet"),
    ("DenyAllOutBound", "Deny", "Outbound", 65500, "*", "*"),
]


def _port22_open(address: str) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((address, 22)) == 0


@contextlib.contextmanager
def _registry() -> Iterator[dict]:
    """Public IP addresses reserved by every emulator on this machine (several run at once:
    test modules, benchmarks, `labctl up`), under a file lock. An entry lapses once its
    emulator's resources.json no longer holds that public IP (deleted, or `labctl down`),
    after a grace minute that covers a reservation whose request has not been saved yet."""
    path = hosts.LAB_DIR / "emulator-public-ips.json"
    hosts.LAB_DIR.mkdir(parents=True, exist_ok=True)
    with open(hosts.LAB_DIR / "emulator-public-ips.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry = json.loads(path.read_text()) if path.exists() else {}
        live, cache = {}, {}
        for address, entry in registry.items():
            if entry["state"] not in cache:
                try:
                    cache[entry["state"]] = json.loads(
                        (Path(entry["state"]) / "resources.json").read_text()).get("resources", {})
                except (OSError, ValueError):
                    cache[entry["state"]] = {}
            if entry["id"] in cache[entry["state"]] or time.time() - entry["since"] < 60:
                live[address] = entry
        yield live
        path.write_text(json.dumps(live, indent=1))


def _prefix(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except (ValueError, TypeError):
        raise ArmError(400, "InvalidAddressPrefixFormat", f"Address prefix {text} of {what} is not valid.",
                       what) from None


def _subnet_in_use(subnet: dict) -> ArmError:
    return ArmError(400, "InUseSubnetCannotBeDeleted",
                    f"Subnet {subnet['name']} is in use by {subnet['properties']['ipConfigurations'][0]['id']} and "
                    "cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. "
                    "See aka.ms/deletesubnet.")


def _check_subnets_disjoint(subnets: list[dict]) -> None:
    nets = [(s["name"], ipaddress.IPv4Network(s["properties"]["addressPrefix"])) for s in subnets]
    for i, (name_a, a) in enumerate(nets):
        for name_b, b in nets[i + 1:]:
            if a.overlaps(b):
                raise ArmError(400, "NetcfgSubnetRangesOverlap",
                               f"Subnet '{name_a}' is not valid because its IP address range overlaps with that of "
                               f"an existing subnet '{name_b}' in virtual network.")


class Network:
    def __init__(self, res: Resources, ops: Operations):
        self.res, self.ops = res, ops
        ops.on_removed[NIC.full_type] = lambda body: self.link_nic(body, attach=False)

    # --- virtual networks and subnets ----------------------------------------------------------

    def _subnet_body(self, vnet_id: str, subnet: dict, old: dict | None, space: list) -> dict:
        name = subnet.get("name") or ""
        if not SUBNET.name_re.match(name):
            raise ArmError(400, "InvalidResourceName", f"Resource name {name} is invalid.", "subnets.name")
        props = subnet.get("properties") or {}
        prefix = _prefix(props.get("addressPrefix"), f"subnet {name}")
        if not any(prefix.subnet_of(net) for net in space):
            raise ArmError(400, "NetcfgSubnetRangeOutsideVnet",
                           f"Subnet '{name}' is not valid because its IP address range is outside the IP address "
                           "range of virtual network.", "subnets.addressPrefix")
        out_props = {"addressPrefix": str(prefix), "provisioningState": "Succeeded",
                     "privateEndpointNetworkPolicies": props.get("privateEndpointNetworkPolicies", "Disabled"),
                     "privateLinkServiceNetworkPolicies": props.get("privateLinkServiceNetworkPolicies", "Enabled")}
        nsg_id = ref(props.get("networkSecurityGroup"))
        if nsg_id:
            nsg = self.res.require(nsg_id, NSG, vnet_id, "subnets.networkSecurityGroup")
            out_props["networkSecurityGroup"] = {"id": nsg["body"]["id"]}
        if old and old["properties"].get("ipConfigurations"):
            out_props["ipConfigurations"] = old["properties"]["ipConfigurations"]
        return {"id": f"{vnet_id}/subnets/{name}", "name": name, "etag": etag(), "properties": out_props,
                "type": SUBNET.full_type}

    def put_vnet(self, t: Target) -> Reply:
        props = t.body.get("properties") or {}
        prefixes = (props.get("addressSpace") or {}).get("addressPrefixes") or []
        if not prefixes:
            raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: addressSpace.addressPrefixes is "
                                                        "required.", "properties.addressSpace")
        space = [_prefix(p, "addressSpace") for p in prefixes]
        new = self.res.base(VNET, t)
        old_subnets = {s["name"].lower(): s for s in (t.record["body"]["properties"]["subnets"] if t.record else [])}
        subnets = [self._subnet_body(new["id"], s, old_subnets.get((s.get("name") or "").lower()), space)
                   for s in props.get("subnets") or []]
        _check_subnets_disjoint(subnets)
        kept = {s["name"].lower() for s in subnets}
        for lname, old in old_subnets.items():
            if lname not in kept and old["properties"].get("ipConfigurations"):
                raise _subnet_in_use(old)
        new["properties"] = {"addressSpace": {"addressPrefixes": [str(n) for n in space]}, "subnets": subnets,
                             "resourceGuid": (t.record or {}).get("body", {}).get("properties", {}).get(
                                 "resourceGuid", str(uuid.uuid4())),
                             "virtualNetworkPeerings": [], "enableDdosProtection": False}
        return self.ops.accept_put(new, t.record, t.api)

    def delete_vnet(self, record: dict, api: str) -> Reply:
        for subnet in record["body"]["properties"]["subnets"]:
            if subnet["properties"].get("ipConfigurations"):
                raise _subnet_in_use(subnet)
        return self.ops.accept_delete(record, api)

    def _vnet(self, req: Request) -> dict:
        vnet = self.res.get(self.res.rid(req.params["rg"], VNET, req.params["vnet"]))
        if not vnet:
            raise self.res.not_found(VNET, req.params["rg"], req.params["vnet"])
        return vnet

    def _subnet_index(self, subnets: list[dict], name: str) -> int | None:
        return next((i for i, s in enumerate(subnets) if s["name"].lower() == name.lower()), None)

    def list_subnets(self, req: Request) -> Reply:
        return Reply(200, {"value": copy.deepcopy(self._vnet(req)["body"]["properties"]["subnets"])})

    def get_subnet(self, req: Request) -> Reply:
        subnets = self._vnet(req)["body"]["properties"]["subnets"]
        index = self._subnet_index(subnets, req.params["name"])
        if index is None:
            raise self.res.not_found(SUBNET, req.params["rg"], f"{req.params['vnet']}/{req.params['name']}")
        return Reply(200, copy.deepcopy(subnets[index]))

    def put_subnet(self, req: Request) -> Reply:
        vnet = self._vnet(req)
        subnets = vnet["body"]["properties"]["subnets"]
        index = self._subnet_index(subnets, req.params["name"])
        space = [ipaddress.IPv4Network(p) for p in vnet["body"]["properties"]["addressSpace"]["addressPrefixes"]]
        new = self._subnet_body(vnet["body"]["id"], {**req.json, "name": req.params["name"]},
                                subnets[index] if index is not None else None, space)
        _check_subnets_disjoint([s for i, s in enumerate(subnets) if i != index] + [new])
        if index is None:
            subnets.append(new)
        else:
            subnets[index] = new
        # Subnets finish with their network; the network's operation carries the state.
        op = self.ops.start("Microsoft.Network", vnet["body"]["location"], req.api, vnet["body"]["id"], "put")
        return Reply(201 if index is None else 200, copy.deepcopy(new), self.ops.headers(op))

    def delete_subnet(self, req: Request) -> Reply:
        vnet = self._vnet(req)
        subnets = vnet["body"]["properties"]["subnets"]
        index = self._subnet_index(subnets, req.params["name"])
        if index is None:
            return Reply(204)
        if subnets[index]["properties"].get("ipConfigurations"):
            raise _subnet_in_use(subnets[index])
        del subnets[index]
        op = self.ops.start("Microsoft.Network", vnet["body"]["location"], req.api, vnet["body"]["id"], "put")
        return Reply(202, None, self.ops.headers(op))

    # --- network security groups -------------------------------------------------------------

    def put_nsg(self, t: Target) -> Reply:
        new = self.res.base(NSG, t)
        rules = []
        for rule in (t.body.get("properties") or {}).get("securityRules") or []:
            rule_props = dict(rule.get("properties") or {})
            for required in ("protocol", "access", "direction", "priority"):
                if rule_props.get(required) in (None, ""):
                    raise ArmError(400, "SecurityRuleParameterContainsUnsupportedValue" if required != "priority"
                                   else "SecurityRuleInvalidPriority",
                                   f"Security rule {rule.get('name')} has no valid value for {required}.",
                                   f"securityRules.{required}")
            rule_props["provisioningState"] = "Succeeded"
            rules.append({"id": f"{new['id']}/securityRules/{rule.get('name')}", "name": rule.get("name"),
                          "etag": new["etag"], "type": f"{NSG.full_type}/securityRules", "properties": rule_props})
        defaults = [{"id": f"{new['id']}/defaultSecurityRules/{n}", "name": n, "etag": new["etag"],
                     "type": f"{NSG.full_type}/defaultSecurityRules",
                     "properties": {"description": n, "protocol": "*", "sourcePortRange": "*",
                                    "destinationPortRange": "*", "sourceAddressPrefix": src,
                                    "destinationAddressPrefix": dst, "access": access, "priority": prio,
                                    "direction": direction, "provisioningState": "Succeeded"}}
                    for n, access, direction, prio, src, dst in DEFAULT_NSG_RULES]
        old = (t.record or {}).get("body", {}).get("properties", {})
        new["properties"] = {"securityRules": rules, "defaultSecurityRules": defaults,
                             "resourceGuid": old.get("resourceGuid", str(uuid.uuid4()))}
        for link in ("networkInterfaces", "subnets"):
            if old.get(link):
                new["properties"][link] = old[link]
        return self.ops.accept_put(new, t.record, t.api)

    def delete_nsg(self, record: dict, api: str) -> Reply:
        nsg_id = record["body"]["id"].lower()
        users = [nic["body"]["id"] for nic in self.res.records(NIC.full_type)
                 if (ref(nic["body"]["properties"].get("networkSecurityGroup")) or "").lower() == nsg_id]
        users += [s["id"] for vnet in self.res.records(VNET.full_type) for s in vnet["body"]["properties"]["subnets"]
                  if (ref(s["properties"].get("networkSecurityGroup")) or "").lower() == nsg_id]
        return self._delete_unless_used(
            record, api, users, "InUseNetworkSecurityGroupCannotBeDeleted",
            f"Network security group {record['body']['id']} cannot be deleted because it is in use by the following "
            f"resources: {users}. In order to delete the Network security group, remove the association with the "
            "resource(s).")

    def _delete_unless_used(self, record: dict, api: str, users, code: str, message: str) -> Reply:
        """ARM refuses (400, with its code) to delete what another resource still uses."""
        if users:
            raise ArmError(400, code, message)
        return self.ops.accept_delete(record, api)

    # --- public IP addresses -----------------------------------------------------------------

    def _reserve_address(self, resource_id: str) -> str:
        """A loopback address for a public IP: not held by a public IP of any emulator on this
        machine, by a lab host, or by anything listening on port 22."""
        with _registry() as registry:
            taken = {r["body"]["properties"].get("ipAddress") for r in self.res.records(PUBLIC_IP.full_type)
                     if r["body"]["id"].lower() != resource_id.lower()}
            taken |= set(registry) | {h.address for h in hosts.list_hosts()}
            # From the top of the pool down: hosts started without an address fill it from the bottom.
            for address in reversed(hosts.ADDRESS_POOL):
                if address not in taken and not _port22_open(address):
                    registry[address] = {"state": str(self.res.store.path.parent), "id": resource_id.lower(),
                                         "since": time.time()}
                    return address
        raise ArmError(409, "PublicIPCountLimitReached", "No free address is left in the lab's loopback pool.")

    def put_public_ip(self, t: Target) -> Reply:
        props = t.body.get("properties") or {}
        sku = t.body.get("sku") or {"name": "Standard", "tier": "Regional"}
        sku.setdefault("tier", "Regional")
        method = props.get("publicIPAllocationMethod") or ("Static" if sku["name"] == "Standard" else "Dynamic")
        if sku["name"] == "Standard" and method != "Static":
            raise ArmError(400, "StandardSkuPublicIPAddressesCannotHaveDynamicAllocation",
                           "Standard sku publicIp can only be allocated with Static allocation method.",
                           "publicIPAllocationMethod")
        if sku["name"] not in ("Standard", "Basic"):
            raise ArmError(400, "InvalidParameter", f"Public IP SKU {sku['name']} is not supported.", "sku.name")
        old = (t.record or {}).get("body", {}).get("properties", {})
        new = self.res.base(PUBLIC_IP, t)
        new["sku"] = sku
        if t.body.get("zones"):
            new["zones"] = t.body["zones"]
        new["properties"] = {"publicIPAddressVersion": props.get("publicIPAddressVersion", "IPv4"),
                             "publicIPAllocationMethod": method,
                             "idleTimeoutInMinutes": props.get("idleTimeoutInMinutes", 4),
                             "ipTags": props.get("ipTags", []),
                             "resourceGuid": old.get("resourceGuid", str(uuid.uuid4()))}
        if props.get("dnsSettings"):
            dns = {k: v for k, v in props["dnsSettings"].items() if k != "fqdn"}  # fqdn is read-only
            if dns.get("domainNameLabel"):  # Azure answers with the label's name in the region's zone
                dns["fqdn"] = f"{dns['domainNameLabel']}.{new['location']}.cloudapp.azure.com"
            new["properties"]["dnsSettings"] = dns
        if old.get("ipConfiguration"):
            new["properties"]["ipConfiguration"] = old["ipConfiguration"]
        address = old.get("ipAddress") or (self._reserve_address(new["id"]) if method == "Static" else None)
        if address:
            new["properties"]["ipAddress"] = address
        return self.ops.accept_put(new, t.record, t.api)

    def delete_public_ip(self, record: dict, api: str) -> Reply:
        config = record["body"]["properties"].get("ipConfiguration")
        return self._delete_unless_used(
            record, api, config, "PublicIPAddressCannotBeDeleted",
            f"Public IP address {record['body']['id']} can not be deleted since it is still allocated to resource "
            f"{(config or {}).get('id')}. In order to delete the public IP, disassociate/detach the Public IP address "
            "from the resource.")

    def public_address(self, nic: dict) -> str | None:
        """The address of a NIC's primary public IP; a Dynamic one is assigned now (the VM starts)."""
        configs = nic["body"]["properties"]["ipConfigurations"]
        primary = next((c for c in configs if c["properties"].get("primary")), configs[0])
        pip = self.res.get(ref(primary["properties"].get("publicIPAddress")))
        if not pip:
            return None
        if not pip["body"]["properties"].get("ipAddress"):
            pip["body"]["properties"]["ipAddress"] = self._reserve_address(pip["body"]["id"])
        return pip["body"]["properties"]["ipAddress"]

    # --- network interfaces ------------------------------------------------------------------

    def _ip_configuration(self, nic_id: str, index: int, config: dict, etag_value: str, previous: dict) -> dict:
        name = config.get("name") or "ipconfig1"
        props = config.get("properties") or {}
        config_id = f"{nic_id}/ipConfigurations/{name}"
        subnet_id = ref(props.get("subnet"))
        vnet = self.res.get(subnet_id.split("/subnets/")[0] if subnet_id and "/subnets/" in subnet_id else None)
        subnet = next((s for s in (vnet["body"]["properties"]["subnets"] if vnet else [])
                       if s["id"].lower() == (subnet_id or "").lower()), None)
        if not subnet:
            raise ArmError(400, "InvalidResourceReference",
                           f"Resource {subnet_id} referenced by resource {nic_id} was not found. Please make sure "
                           "that the referenced resource exists, and that both resources are in the same region.",
                           "ipConfigurations.subnet")
        out = {"provisioningState": "Succeeded", "privateIPAddressVersion": "IPv4",
               "privateIPAllocationMethod": props.get("privateIPAllocationMethod", "Dynamic"),
               "subnet": {"id": subnet["id"]}, "primary": props.get("primary", index == 0),
               "privateIPAddress": self._private_ip(subnet, config_id, props, previous.get(name.lower(), {}))}
        pip_id = ref(props.get("publicIPAddress"))
        if pip_id:
            pip = self.res.require(pip_id, PUBLIC_IP, nic_id, "ipConfigurations.publicIPAddress")
            holder = ref(pip["body"]["properties"].get("ipConfiguration"))
            if holder and holder.lower() != config_id.lower():
                raise ArmError(400, "PublicIPAddressInUse", f"Resource {pip['body']['id']} is already in use by "
                                                            f"{holder}.", "ipConfigurations.publicIPAddress")
            out["publicIPAddress"] = {"id": pip["body"]["id"]}
        return {"id": config_id, "name": name, "etag": etag_value, "type": f"{NIC.full_type}/ipConfigurations",
                "properties": out}

    def put_nic(self, t: Target) -> Reply:
        props = t.body.get("properties") or {}
        configs = props.get("ipConfigurations") or []
        if not configs:
            raise ArmError(400, "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
                           f"Network interface {t.id} must have at least one IP configuration.", "ipConfigurations")
        new = self.res.base(NIC, t)
        old = (t.record or {}).get("body", {}).get("properties", {})
        previous = {c["name"].lower(): c["properties"] for c in old.get("ipConfigurations", [])}
        new["properties"] = {"ipConfigurations": [self._ip_configuration(new["id"], i, c, new["etag"], previous)
                                                  for i, c in enumerate(configs)],
                             "enableAcceleratedNetworking": props.get("enableAcceleratedNetworking", False),
                             "enableIPForwarding": props.get("enableIPForwarding", False),
                             "dnsSettings": props.get("dnsSettings") or {"dnsServers": [], "appliedDnsServers": []},
                             "resourceGuid": old.get("resourceGuid", str(uuid.uuid4())),
                             "nicType": "Standard", "hostedWorkloads": [], "tapConfigurations": []}
        nsg_id = ref(props.get("networkSecurityGroup"))
        if nsg_id:
            nsg = self.res.require(nsg_id, NSG, t.id, "networkSecurityGroup")
            new["properties"]["networkSecurityGroup"] = {"id": nsg["body"]["id"]}
        for kept in ("virtualMachine", "macAddress"):
            if old.get(kept):
                new["properties"][kept] = old[kept]
        if t.record:
            self.link_nic(t.record["body"], attach=False)
        self.link_nic(new, attach=True)
        return self.ops.accept_put(new, t.record, t.api)

    def _private_ip(self, subnet: dict, config_id: str, props: dict, previous: dict) -> str:
        net = ipaddress.IPv4Network(subnet["properties"]["addressPrefix"])
        used = {config["properties"]["privateIPAddress"] for nic in self.res.records(NIC.full_type)
                for config in nic["body"]["properties"]["ipConfigurations"]
                if config["id"].lower() != config_id.lower()
                and config["properties"]["subnet"]["id"].lower() == subnet["id"].lower()}
        usable = list(net.hosts())[3:]  # Azure keeps .1-.3 (and .0 and the broadcast address)
        if props.get("privateIPAllocationMethod") == "Static":
            wanted = props.get("privateIPAddress")
            try:
                address = ipaddress.IPv4Address(wanted)
            except (ValueError, TypeError):
                raise ArmError(400, "InvalidParameter", f"Private IP address {wanted} is not valid.",
                               "ipConfigurations.privateIPAddress") from None
            if address not in net:
                raise ArmError(400, "PrivateIPAddressNotInSubnet",
                               f"IP configuration {config_id} references the private IP address {wanted} which is "
                               f"not in the address space of subnet {subnet['id']}.")
            if address not in usable:
                raise ArmError(400, "PrivateIPAddressInReservedRange",
                               f"Private static IP address {wanted} falls within reserved IP range of subnet prefix "
                               f"{net}.")
            if str(address) in used:
                raise ArmError(400, "PrivateIPAddressIsAllocated",
                               f"IP configuration {config_id} is using the private IP address {wanted} which is "
                               "already allocated to resource.")
            return str(address)
        if previous.get("privateIPAddress") and previous["privateIPAddress"] not in used \
                and ipaddress.IPv4Address(previous["privateIPAddress"]) in net:
            return previous["privateIPAddress"]
        free = next((str(a) for a in usable if str(a) not in used), None)
        if free is None:
            raise ArmError(400, "SubnetIsFull", f"Subnet {subnet['name']} with address prefix {net} does not have "
                                                "enough capacity for 1 IP addresses.")
        return free

    def link_nic(self, nic: dict, attach: bool) -> None:
        """Keep back-references (subnet.ipConfigurations, publicIP.ipConfiguration, NSG.networkInterfaces)."""
        for config in nic["properties"]["ipConfigurations"]:
            subnet_id = config["properties"]["subnet"]["id"]
            vnet = self.res.get(subnet_id.split("/subnets/")[0])
            for subnet in (vnet["body"]["properties"]["subnets"] if vnet else []):
                if subnet["id"].lower() == subnet_id.lower():
                    refs = [r for r in subnet["properties"].get("ipConfigurations", [])
                            if r["id"].lower() != config["id"].lower()]
                    if attach:
                        refs.append({"id": config["id"]})
                    subnet["properties"]["ipConfigurations"] = refs
                    if not refs:
                        subnet["properties"].pop("ipConfigurations")
            pip = self.res.get(ref(config["properties"].get("publicIPAddress")))
            if pip:
                if attach:
                    pip["body"]["properties"]["ipConfiguration"] = {"id": config["id"]}
                else:
                    pip["body"]["properties"].pop("ipConfiguration", None)
        nsg = self.res.get(ref(nic["properties"].get("networkSecurityGroup")))
        if nsg:
            refs = [r for r in nsg["body"]["properties"].get("networkInterfaces", [])
                    if r["id"].lower() != nic["id"].lower()]
            if attach:
                refs.append({"id": nic["id"]})
            nsg["body"]["properties"]["networkInterfaces"] = refs

    def delete_nic(self, record: dict, api: str) -> Reply:
        vm = record["body"]["properties"].get("virtualMachine")
        if vm:
            raise ArmError(400, "NicInUse", f"Network Interface {record['body']['id']} is used by existing resource "
                                            f"{vm['id']}. In order to delete the network interface, it must be "
                                            "dissociated from the resource. To learn more, see aka.ms/deletenic.")
        return self.ops.accept_delete(record, api)
