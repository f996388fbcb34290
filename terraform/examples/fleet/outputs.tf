output "public_ip_addresses" {
  description = "Public IP of each VM, by name."
  value       = { for name, vm in module.vm : name => vm.public_ip_address }
}

output "host_certificate_principals" {
  description = "Host certificate principals of each VM, by name."
  value       = { for name, vm in module.vm : name => vm.host_certificate_principals }
}

output "enrollment_ids" {
  description = "Enrolled marker of each VM, by name."
  value       = { for name, vm in module.vm : name => vm.enrollment_id }
}
