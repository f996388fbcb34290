# enroll.yml reads these through the sshca.azure.network_from_terraform filter; its
# REQUIRED_OUTPUTS names every output that must stay here (tests/terraform checks it).

output "resource_group_name" {
  description = "Name of the resource group holding the network (created or existing)."
  value       = local.resource_group_name
}

output "location" {
  description = "Azure region of the network; VMs on its subnets must be in the same region."
  value       = azurerm_virtual_network.this.location
}

output "vnet_id" {
  description = "Resource id of the virtual network."
  value       = azurerm_virtual_network.this.id
}

output "vnet_name" {
  description = "Name of the virtual network."
  value       = azurerm_virtual_network.this.name
}

output "subnet_id" {
  description = "Resource id of the VM subnet (`vm_subnet`): the subnet enroll.yml and azure_vm put NICs on."
  value       = azurerm_subnet.this[var.vm_subnet].id
}

output "subnet_name" {
  description = "Name of the VM subnet (`vm_subnet`)."
  value       = azurerm_subnet.this[var.vm_subnet].name
}

output "subnet_ids" {
  description = "Resource ids of every subnet, keyed by subnet name."
  value       = { for name, subnet in azurerm_subnet.this : name => subnet.id }
}

output "nsg_id" {
  description = "Resource id of the network security group that admits SSH."
  value       = azurerm_network_security_group.this.id
}

output "nsg_name" {
  description = "Name of the network security group that admits SSH."
  value       = azurerm_network_security_group.this.name
}

output "ssh_source_address_prefixes" {
  description = "The sources the SSH rule admits, as applied."
  value       = local.ssh_sources
}
