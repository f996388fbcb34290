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

variable "bootstrap_public_key_path" {
  type        = string
  description = "Path of the bootstrap public key (.pub, one-line OpenSSH ssh-ed25519 or ssh-rsa)."
  default     = "~/.ssh/sshca_bootstrap.pub"
  nullable    = false
}

variable "bootstrap_private_key_path" {
  type        = string
  description = "Path of the matching private key; enrollment logs in with it once."
  default     = "~/.ssh/sshca_bootstrap"
  nullable    = false
}

variable "ca_path" {
  type        = string
  description = "Folder holding the SSH CA made by sshca.azure (passphrase in SSHCA_CA_PASSPHRASE)."
  default     = "~/.sshca"
  nullable    = false
}

variable "vms" {
  type = map(object({
    host_tags = map(string)
    size      = optional(string, "Standard_B2s")
  }))
  description = "The fleet: VM name => its host tags (which decide who may log in) and size."
  default = {
    web-1 = { host_tags = { role = "web" } }
    web-2 = { host_tags = { role = "web" } }
    db-1  = { host_tags = { role = "db" }, size = "Standard_B2ms" }
  }
  nullable = false
}
