# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: enrolled_hosts
short_description: The Azure VMs enrolled by sshca.azure, read from their enrollment tags
version_added: 0.1.0
description:
  - Lists the VMs of a subscription (or of the given resource groups) that carry the enrollment tags
    written by C(playbooks/enroll.yml) (C(sshca-enrolled), C(sshca-host-cert-serial),
    C(sshca-host-cert-expires)). The VM's tags are the registry; nothing else is kept.
  - "Groups: C(sshca_enrolled) (every host), C(sshca_renewal_due) (less than a third of the host certificate's
    life left, or expired: what C(playbooks/renew.yml) re-signs), C(sshca_expired), C(sshca_valid), and one
    group per host tag, C(tag_<key>_<value>)."
  - Host variables are C(ansible_host) (the public IP, else the private IP), C(sshca_private_ip),
    C(sshca_public_ip), C(sshca_vm_id), C(sshca_vm_name), C(sshca_resource_group), C(sshca_host_tags),
    C(sshca_host_cert_serial), C(sshca_host_cert_expires), C(sshca_enrolled), C(sshca_cert_state),
    C(sshca_renewal_due), C(sshca_expired), C(sshca_cert_remaining_seconds), C(sshca_power_state).
    They are the names C(enroll.yml) reads from an inventory group (C(sshca_hosts_group)).
  - With the inventory cache on, the VM list is cached; the certificate state is worked out from the cached
    expiry at every run, so it does not go stale with the cache.
  - The inventory file must be named C(enrolled_hosts.yml), C(enrolled_hosts.yaml), or end with
    C(.enrolled_hosts.yml) or C(.enrolled_hosts.yaml).
author:
  - sshca.azure developers (@sshca)
extends_documentation_fragment:
  - sshca.azure._azure
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks the file as this plugin's.
    type: str
    required: true
    choices: [sshca.azure.enrolled_hosts]
  resource_groups:
    description: Only VMs in these resource groups. Empty lists every VM of the subscription.
    type: list
    elements: str
    default: []
  tag_prefix:
    description: Prefix of the enrollment tags (as C(host_enroll_tag_prefix)).
    type: str
    default: sshca-
  concurrency:
    description: How many VMs are read at once (network interface and public IP of each).
    type: int
    default: 10
"""

EXAMPLES = r"""
# fleet.enrolled_hosts.yml: the auth options are azure_vm's, from the environment here
plugin: sshca.azure.enrolled_hosts
resource_groups: [rg-ssh]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/sshca-inventory
cache_timeout: 600
keyed_groups:
  - key: sshca_location
    prefix: location

# ansible-inventory -i fleet.enrolled_hosts.yml --graph
# ansible-playbook -i fleet.enrolled_hosts.yml sshca.azure.renew -e sshca_hosts_group=sshca_renewal_due
"""

import os  # noqa: E402

from ansible.errors import AnsibleError, AnsibleParserError  # noqa: E402
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._azure import (  # noqa: E402
    AUTH_ARGUMENT_SPEC,
    AzureConfigError,
    AzureSession,
    arm_error,
)
from ansible_collections.sshca.azure.plugins.module_utils._azure_vm import info  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._enrolled import ENROLLED, registry_record  # noqa: E402

STATE_GROUPS = ("sshca_renewal_due", "sshca_expired", "sshca_valid")


def auth_params(get_option):
    """azure_vm's auth options from the inventory file, else their environment variables and defaults."""
    params = {}
    for name, spec in AUTH_ARGUMENT_SPEC.items():
        value = get_option(name)
        if value in (None, ""):
            variables = spec.get("fallback", (None, []))[1]
            value = next((os.environ[v] for v in variables if os.environ.get(v)), spec.get("default"))
        params[name] = value
    return params


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "sshca.azure.enrolled_hosts"

    def verify_file(self, path):
        if not super(InventoryModule, self).verify_file(path):
            return False
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        return any(name == base or name.endswith("." + base) for base in ("enrolled_hosts.yml", "enrolled_hosts.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        vms = None
        if use_cache:
            try:
                vms = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if vms is None:
            vms = self._fetch()
        if update_cache:
            self._cache[cache_key] = vms
        self._populate(vms)

    def _fetch(self):
        prefix = self.get_option("tag_prefix")
        session = None
        try:
            session = AzureSession(auth_params(self.get_option), pool_size=self.get_option("concurrency"))
            wanted = {"tags": [prefix + ENROLLED], "concurrency": self.get_option("concurrency")}
            groups = self.get_option("resource_groups") or [None]
            vms = []
            for group in groups:
                vms += info(session, dict(wanted, resource_group=group))
        except AzureConfigError as err:
            raise AnsibleParserError("enrolled_hosts: %s" % err) from None
        except Exception as err:  # ARM refusals: one line
            raise AnsibleError("enrolled_hosts: %s" % arm_error(err)) from None
        finally:
            if session:
                session.close()
        return vms

    def _populate(self, vms):
        prefix = self.get_option("tag_prefix")
        strict = self.get_option("strict")
        self.inventory.add_group("sshca_enrolled")
        for group in STATE_GROUPS:
            self.inventory.add_group(group)
        names = [vm["name"] for vm in vms]
        for vm in vms:
            record = registry_record(vm, prefix)
            if record is None:
                continue
            # Two VMs of one name in different resource groups stay apart.
            name = vm["name"]
            if names.count(name) > 1:
                name = "%s_%s" % (name, record["sshca_resource_group"])
            self.inventory.add_host(name, group="sshca_enrolled")
            for key, value in record.items():
                self.inventory.set_variable(name, key, value)
            if record["sshca_renewal_due"]:
                self.inventory.add_child("sshca_renewal_due", name)
            if record["sshca_expired"]:
                self.inventory.add_child("sshca_expired", name)
            if record["sshca_cert_state"] == "valid":
                self.inventory.add_child("sshca_valid", name)
            for key, value in sorted(record["sshca_host_tags"].items()):
                group = self.inventory.add_group(self._sanitize_group_name("tag_%s_%s" % (key, value)))
                self.inventory.add_child(group, name)
            self._set_composite_vars(self.get_option("compose"), record, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), record, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), record, name, strict=strict)
