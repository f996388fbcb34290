locals {
  # grp:platform may log in everywhere; each team only where the role tag says so.
  access_rules = [
    { principal = "grp:platform", accounts = ["azureuser"] },
    { principal = "grp:web", accounts = ["azureuser"], host_tags = { role = "web" } },
    { principal = "grp:dba", accounts = ["azureuser"], host_tags = { role = "db" } },
  ]
}

module "network" {
  source = "../../modules/network"

  location                    = var.location
  resource_group_name         = var.resource_group_name
  ssh_source_address_prefixes = var.ssh_source_address_prefixes
}

module "vm" {
  source   = "../../modules/enrolled_vm"
  for_each = var.vms

  name                = each.key
  size                = each.value.size
  resource_group_name = module.network.resource_group_name
  location            = module.network.location
  subnet_id           = module.network.subnet_id

  bootstrap_public_key       = file(pathexpand(var.bootstrap_public_key_path))
  bootstrap_private_key_path = pathexpand(var.bootstrap_private_key_path)
  ca_path                    = pathexpand(var.ca_path)

  host_tags    = each.value.host_tags
  access_rules = local.access_rules
}
