module "network" {
  source = "../../modules/network"

  location                    = var.location
  resource_group_name         = var.resource_group_name
  ssh_source_address_prefixes = var.ssh_source_address_prefixes
  tags                        = { purpose = "sshca" }
}
