locals {
  # Reading the name from the created group (not from the variable) orders every resource after it.
  resource_group_name = var.create_resource_group ? azurerm_resource_group.this[0].name : var.resource_group_name

  # Azure takes one source in source_address_prefix (which also accepts service tags such as
  # Internet) and several in source_address_prefixes (addresses and ranges only).
  ssh_sources = [for source in var.ssh_source_address_prefixes : trimspace(source)]
}

resource "azurerm_resource_group" "this" {
  count = var.create_resource_group ? 1 : 0

  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

resource "azurerm_virtual_network" "this" {
  name                = var.virtual_network_name
  resource_group_name = local.resource_group_name
  location            = var.location
  address_space       = var.address_space
  tags                = var.tags
}

resource "azurerm_subnet" "this" {
  for_each = var.subnets

  name                            = each.key
  resource_group_name             = local.resource_group_name
  virtual_network_name            = azurerm_virtual_network.this.name
  address_prefixes                = each.value.address_prefixes
  default_outbound_access_enabled = each.value.default_outbound_access_enabled
}

resource "azurerm_network_security_group" "this" {
  name                = var.network_security_group_name
  resource_group_name = local.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_network_security_rule" "ssh" {
  name                        = "allow-ssh-from-listed-sources"
  description                 = "SSH from the sources the operator listed; every other inbound flow from outside the VNet meets Azure's default deny."
  resource_group_name         = local.resource_group_name
  network_security_group_name = azurerm_network_security_group.this.name
  priority                    = var.ssh_rule_priority
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "22"
  destination_address_prefix  = "VirtualNetwork"
  source_address_prefix       = length(local.ssh_sources) == 1 ? local.ssh_sources[0] : null
  source_address_prefixes     = length(local.ssh_sources) > 1 ? local.ssh_sources : null
}

resource "azurerm_subnet_network_security_group_association" "this" {
  for_each = { for name, subnet in var.subnets : name => subnet if subnet.associate_nsg }

  subnet_id                 = azurerm_subnet.this[each.key].id
  network_security_group_id = azurerm_network_security_group.this.id
}
