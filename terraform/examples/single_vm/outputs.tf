output "public_ip_address" {
  description = "Public IP of the VM: `ssh azureuser@<ip>` with a user certificate from sshca.azure.user_cert."
  value       = module.vm.public_ip_address
}

output "host_certificate_principals" {
  description = "Names the VM's host certificate covers."
  value       = module.vm.host_certificate_principals
}

output "enrollment_id" {
  description = "Enrolled marker of the VM."
  value       = module.vm.enrollment_id
}
