output "name" {
  description = "Name (and hostname) of the VM."
  value       = azurerm_linux_virtual_machine.this.name
}

output "resource_id" {
  description = "Resource id of the VM."
  value       = azurerm_linux_virtual_machine.this.id
}

output "network_interface_id" {
  description = "Resource id of the VM's network interface."
  value       = azurerm_network_interface.this.id
}

output "public_ip_address" {
  description = "Public IP address of the VM (null when `public_ip_enabled` is false)."
  value       = local.public_ip_address
}

output "fqdn" {
  description = "FQDN of the public IP when `domain_name_label` is set, else null."
  value       = local.fqdn
}

output "private_ip_address" {
  description = "Private IP address of the VM's NIC."
  value       = local.private_ip_address
}

output "host_certificate_principals" {
  description = "Names the host certificate is signed for, in order: VM name, the address enrollment connects to (public IP, else private IP), private IP, FQDN and `extra_principals`; what `ssh-keyscan -c` shows. Clients that trust the host CA can reach the VM by any of them without a prompt."
  value       = local.host_certificate_principals
}

output "sshca_host" {
  description = "This VM as one entry of enroll.yml's `sshca_hosts`: enroll a fleet in one run by passing a list of these."
  value       = local.sshca_host
}

output "enrollment_id" {
  description = "Enrolled marker: known only after enroll.yml succeeded for this VM, and new each time enrollment re-runs (null when `enrollment_enabled` is false). Depend on it to order work after enrollment."
  value       = one(terraform_data.enrollment[*].id)
}
