# Re-exported one by one so that `terraform output -json` here is exactly what enroll.yml's
# `sshca_network` takes (through the sshca.azure.network_from_terraform filter).

output "resource_group_name" {
  description = "Resource group holding the network."
  value       = module.network.resource_group_name
}

output "location" {
  description = "Azure region of the network."
  value       = module.network.location
}

output "vnet_id" {
  description = "Resource id of the virtual network."
  value       = module.network.vnet_id
}

output "vnet_name" {
  description = "Name of the virtual network."
  value       = module.network.vnet_name
}

output "subnet_id" {
  description = "Resource id of the VM subnet."
  value       = module.network.subnet_id
}

output "subnet_name" {
  description = "Name of the VM subnet."
  value       = module.network.subnet_name
}

output "nsg_id" {
  description = "Resource id of the SSH network security group."
  value       = module.network.nsg_id
}

output "nsg_name" {
  description = "Name of the SSH network security group."
  value       = module.network.nsg_name
}
