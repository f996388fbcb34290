variable "location" {
  type        = string
  description = "Azure region for everything the example makes."
  default     = "westeurope"
  nullable    = false
}

variable "resource_group_name" {
  type        = string
  description = "Resource group the example creates."
  nullable    = false
}

variable "ssh_source_address_prefixes" {
  type        = list(string)
  description = "Addresses or CIDR ranges allowed to reach SSH, e.g. [\"203.0.113.0/24\"]; internet-wide sources are refused."
  nullable    = false
}
