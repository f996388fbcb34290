variable "location" {
  type        = string
  description = "Azure region of the virtual network, the NSG and (when created) the resource group, e.g. `westeurope`."
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name in lower case without spaces, e.g. westeurope."
  }
}

variable "resource_group_name" {
  type        = string
  description = "Resource group that holds the network. Created by this module when `create_resource_group` is true, otherwise it must already exist."
  nullable    = false

  validation {
    condition     = can(regex("^[-\\w._()]{0,89}[-\\w_()]$", var.resource_group_name))
    error_message = "resource_group_name must be 1-90 letters, digits, '-', '_', '.', '(' or ')', and must not end with '.'."
  }
}

variable "create_resource_group" {
  type        = bool
  description = "Create the resource group `resource_group_name` (true) or use an existing one (false)."
  default     = true
  nullable    = false
}

variable "virtual_network_name" {
  type        = string
  description = "Name of the virtual network."
  default     = "sshca-vnet"
  nullable    = false

  validation {
    condition     = can(regex("^[a-zA-Z0-9][-\\w.]{0,62}[\\w]$", var.virtual_network_name))
    error_message = "virtual_network_name must be 2-64 letters, digits, '-', '_' or '.', start with a letter or digit and end with a letter, digit or '_'."
  }
}

variable "address_space" {
  type        = list(string)
  description = "Address ranges of the virtual network, in CIDR notation."
  default     = ["10.20.0.0/16"]
  nullable    = false

  validation {
    condition     = length(var.address_space) > 0 && alltrue([for cidr in var.address_space : can(cidrhost(cidr, 0))])
    error_message = "address_space must hold at least one CIDR range, e.g. 10.20.0.0/16."
  }
}

variable "subnets" {
  type = map(object({
    address_prefixes                = list(string)
    associate_nsg                   = optional(bool, true)
    default_outbound_access_enabled = optional(bool, false)
  }))
  description = "Subnets to create, keyed by subnet name. `associate_nsg` puts the SSH NSG on the subnet (default true); `default_outbound_access_enabled` keeps Azure's implicit outbound internet access for VMs without a public IP (default false, as Azure recommends)."
  default = {
    vms = { address_prefixes = ["10.20.1.0/24"] }
  }
  nullable = false

  validation {
    condition     = length(var.subnets) > 0
    error_message = "subnets must define at least one subnet."
  }

  validation {
    condition = alltrue(flatten([
      for name, subnet in var.subnets : [
        can(regex("^[a-zA-Z0-9][-\\w.]{0,78}[\\w]$", name)),
        length(subnet.address_prefixes) > 0,
        [for cidr in subnet.address_prefixes : can(cidrhost(cidr, 0))],
      ]
    ]))
    error_message = "Each subnet needs a name of 2-80 letters, digits, '-', '_' or '.', and at least one address prefix in CIDR notation."
  }
}

variable "vm_subnet" {
  type        = string
  description = "Key of `subnets` where VMs go: its id and name are the `subnet_id` and `subnet_name` outputs that enroll.yml reads."
  default     = "vms"
  nullable    = false

  validation {
    condition     = contains(keys(var.subnets), var.vm_subnet)
    error_message = "vm_subnet must be one of the keys of subnets."
  }
}

variable "network_security_group_name" {
  type        = string
  description = "Name of the network security group that admits SSH."
  default     = "sshca-nsg"
  nullable    = false

  validation {
    condition     = can(regex("^[a-zA-Z0-9][-\\w.]{0,78}[\\w]$", var.network_security_group_name))
    error_message = "network_security_group_name must be 2-80 letters, digits, '-', '_' or '.'."
  }
}

variable "ssh_source_address_prefixes" {
  type        = list(string)
  description = <<-EOT
    Where SSH (TCP 22) may come from: IPv4/IPv6 addresses or CIDR ranges, e.g. your office range or
    the CI runners' egress addresses. There is no default. Internet-wide sources (`*`, `Any`,
    `Internet`, `0.0.0.0/0`, `::/0`, any `/0`) are refused unless `allow_ssh_from_internet` is true.
  EOT
  nullable    = false

  validation {
    condition     = length(var.ssh_source_address_prefixes) > 0
    error_message = "ssh_source_address_prefixes must list at least one address or CIDR range allowed to reach SSH."
  }

  validation {
    condition = var.allow_ssh_from_internet || !anytrue([
      for source in var.ssh_source_address_prefixes :
      contains(["*", "any", "internet", "0.0.0.0", "::"], lower(trimspace(source)))
      || endswith(trimspace(source), "/0")
    ])
    error_message = "ssh_source_address_prefixes opens SSH to the whole internet (*, Any, Internet or a /0 range); list the networks that need SSH, or set allow_ssh_from_internet = true to accept that exposure."
  }

  validation {
    condition = alltrue([
      for source in var.ssh_source_address_prefixes :
      contains(["*", "any", "internet"], lower(trimspace(source)))
      || can(cidrhost(source, 0)) || can(cidrhost("${source}/32", 0)) || can(cidrhost("${source}/128", 0))
    ])
    error_message = "ssh_source_address_prefixes entries must be IP addresses or CIDR ranges, e.g. 203.0.113.0/24."
  }
}

variable "allow_ssh_from_internet" {
  type        = bool
  description = "Accept internet-wide SSH sources in `ssh_source_address_prefixes`. Off by default: with certificates SSH is safe to expose, but an open port still draws scans and brute force."
  default     = false
  nullable    = false
}

variable "ssh_rule_priority" {
  type        = number
  description = "Priority of the inbound SSH rule in the NSG (100-4096; lower wins)."
  default     = 1000
  nullable    = false

  validation {
    condition     = var.ssh_rule_priority >= 100 && var.ssh_rule_priority <= 4096 && floor(var.ssh_rule_priority) == var.ssh_rule_priority
    error_message = "ssh_rule_priority must be a whole number from 100 to 4096."
  }
}

variable "tags" {
  type        = map(string)
  description = "Azure tags for every resource this module creates."
  default     = {}
  nullable    = false
}
