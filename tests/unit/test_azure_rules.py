"""Azure's rules for VM names, admin users, images and tags: refused locally, naming the field."""

from __future__ import annotations

import pytest
from ansible_collections.sshca.azure.plugins.module_utils import _azure_rules as rules

# The compute REST API spec's osProfile.adminUsername "Disallowed values", copied from the
# published text on its own (not from the module), so a name dropped from the table fails here.
SPEC_DISALLOWED = ('"administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", '
                   '"123", "a", "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", '
                   '"owner", "root", "server", "sql", "support", "support_388945a0", "sys", "test2", "test3", '
                   '"user4", "user5"')


def test_the_table_holds_every_name_the_spec_disallows():
    documented = {name.strip().strip('"') for name in SPEC_DISALLOWED.split(",")}
    assert len(documented) == 32
    assert documented <= rules.RESERVED_ADMIN_USERNAMES


@pytest.mark.parametrize("name", sorted(rules.RESERVED_ADMIN_USERNAMES))
def test_reserved_admin_names_are_refused_in_any_case(name):
    for spelling in {name, name.upper(), name.capitalize()}:
        with pytest.raises(rules.AzureRuleError) as err:
            rules.check_admin_username(spelling, "vms[3].admin_username")
        assert err.value.field == "vms[3].admin_username"
        assert str(err.value).startswith("vms[3].admin_username: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["azureuser", "ops", "deploy_1", "_svc", "a-b", "x" * rules.ADMIN_USERNAME_MAX,
                                  "backup2", "administrators"])
def test_ordinary_linux_names_are_accepted(name):
    assert rules.check_admin_username(name) == name


@pytest.mark.parametrize("name", ["", "1ops", "-ops", "Ops", "op s", "op.s", "ops$",
                                  "x" * (rules.ADMIN_USERNAME_MAX + 1), None, 7])
def test_names_linux_cannot_create_are_refused(name):
    with pytest.raises(rules.AzureRuleError, match=r"^admin_username: "):
        rules.check_admin_username(name)


@pytest.mark.parametrize(("name", "ok"), [
    ("web-1", True), ("a", True), ("A9", True), ("x" * 64, True),
    ("x" * 65, False), ("-web", False), ("web-", False), ("web_1", False), ("web.1", False), ("", False),
])
def test_vm_names(name, ok):
    if ok:
        assert rules.check_vm_name(name) == name
    else:
        with pytest.raises(rules.AzureRuleError, match=r"^vms\[0\]\.name: "):
            rules.check_vm_name(name, "vms[0].name")


@pytest.mark.parametrize("preset", sorted(rules.IMAGE_PRESETS))
def test_presets_are_full_canonical_references(preset):
    reference = rules.image_reference(preset)
    assert set(reference) == set(rules.IMAGE_KEYS)
    assert reference["publisher"] == "Canonical" and reference["version"] == "latest"
    reference["sku"] = "changed"
    assert rules.image_reference(preset)["sku"] != "changed"  # callers get a copy


@pytest.mark.parametrize(("image", "message"), [
    ("ubuntu1804", "'ubuntu1804' is not a preset"),
    ({"publisher": "Canonical"}, "missing: offer, sku"),
    ({"publisher": "p", "offer": "o", "sku": "s", "plan": "x"}, "unknown: plan"),
    (42, "not int"),
])
def test_bad_images(image, message):
    with pytest.raises(rules.AzureRuleError, match=message):
        rules.image_reference(image)


def test_image_dict_gets_latest():
    assert rules.image_reference({"publisher": "p", "offer": "o", "sku": "s"})["version"] == "latest"


def test_tags_within_the_limits_are_strings():
    tags = {f"k{i}": i for i in range(rules.TAG_COUNT_MAX)}
    tags["k0"] = None
    checked = rules.check_tags(tags)
    assert checked["k1"] == "1" and checked["k0"] == ""
    assert rules.check_tags({"a=b": "c=d", "n" * rules.TAG_NAME_MAX: "v" * rules.TAG_VALUE_MAX})


@pytest.mark.parametrize("char", list(rules.TAG_NAME_FORBIDDEN))
def test_tag_names_with_a_forbidden_character_are_refused(char):
    with pytest.raises(rules.AzureRuleError, match=r"^tags: tag name .* must be") as err:
        rules.check_tags({f"a{char}b": "x"})
    assert err.value.field == "tags" and "\n" not in str(err.value)


@pytest.mark.parametrize(("tags", "message"), [
    ({f"k{i}": "v" for i in range(rules.TAG_COUNT_MAX + 1)}, "has 51 tags; Azure allows at most 50"),
    ({"n" * (rules.TAG_NAME_MAX + 1): "v"}, "must be 1-512 characters"),
    ({"": "v"}, "must be 1-512 characters"),
    ({"k": "v" * (rules.TAG_VALUE_MAX + 1)}, "value of tag 'k' has 257 characters"),
    (["k=v"], "must be a dict"),
])
def test_tags_azure_refuses(tags, message):
    with pytest.raises(rules.AzureRuleError, match=message) as err:
        rules.check_tags(tags, "vms[1].tags")
    assert err.value.field == "vms[1].tags"


@pytest.mark.parametrize(("label", "ok"), [("web-1", True), ("abc", True), ("ab", False), ("Web", False),
                                           ("1web", False), ("web-", False)])
def test_dns_labels(label, ok):
    if ok:
        assert rules.check_dns_label(label) == label
    else:
        with pytest.raises(rules.AzureRuleError, match=r"^dns_label: "):
            rules.check_dns_label(label)
