# --- the VM -------------------------------------------------------------------------------------

variable "name" {
  type        = string
  description = "Name of the VM, also its hostname; its NIC and public IP are named after it."
  nullable    = false

  validation {
    condition     = can(regex("^[a-zA-Z0-9]([-a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$", var.name))
    error_message = "name must be 1-64 letters, digits or '-', and must not start or end with '-' (it is also the Linux hostname)."
  }
}

variable "resource_group_name" {
  type        = string
  description = "Existing resource group for the VM, its NIC and public IP (e.g. the network module's `resource_group_name` output)."
  nullable    = false

  validation {
    condition     = can(regex("^[-\\w._()]{0,89}[-\\w_()]$", var.resource_group_name))
    error_message = "resource_group_name must be 1-90 letters, digits, '-', '_', '.', '(' or ')', and must not end with '.'."
  }
}

variable "location" {
  type        = string
  description = "Azure region of the VM; must be the region of the subnet's virtual network."
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name in lower case without spaces, e.g. westeurope."
  }
}

variable "subnet_id" {
  type        = string
  description = "Resource id of the subnet for the VM's NIC (the network module's `subnet_id` output)."
  nullable    = false

  validation {
    condition     = can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.subnet_id))
    error_message = "subnet_id must be a subnet resource id: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>."
  }
}

variable "size" {
  type        = string
  description = "Azure VM size, e.g. Standard_B2s or Standard_D2s_v5."
  default     = "Standard_B2s"
  nullable    = false

  validation {
    condition     = can(regex("^(Standard|Basic)_[A-Za-z0-9_]+$", var.size))
    error_message = "size must be an Azure VM size such as Standard_B2s."
  }
}

variable "image" {
  type        = string
  description = "Ubuntu release for the OS image: `ubuntu-24.04` or `ubuntu-22.04`. Ignored when `custom_image` is set."
  default     = "ubuntu-24.04"
  nullable    = false

  validation {
    condition     = contains(["ubuntu-24.04", "ubuntu-22.04"], var.image)
    error_message = "image must be ubuntu-24.04 or ubuntu-22.04 (or set custom_image)."
  }
}

variable "custom_image" {
  type = object({
    publisher = string
    offer     = string
    sku       = string
    version   = optional(string, "latest")
  })
  description = "Marketplace image to use instead of the `image` preset. It must run OpenSSH 8.2 or later and cloud-init."
  default     = null
}

variable "zone" {
  type        = string
  description = "Availability zone (`1`, `2` or `3`) for the VM and its public IP; null for no zone."
  default     = null

  validation {
    condition     = var.zone == null || contains(["1", "2", "3"], coalesce(var.zone, "none"))
    error_message = "zone must be \"1\", \"2\", \"3\" or null."
  }
}

variable "os_disk" {
  type = object({
    storage_account_type = optional(string, "StandardSSD_LRS")
    disk_size_gb         = optional(number)
  })
  description = "OS disk: storage account type and optional size in GB (the image's size when null)."
  default     = {}
  nullable    = false

  validation {
    condition     = contains(["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS", "Premium_ZRS"], var.os_disk.storage_account_type)
    error_message = "os_disk.storage_account_type must be Standard_LRS, StandardSSD_LRS, Premium_LRS, StandardSSD_ZRS or Premium_ZRS."
  }

  validation {
    condition     = var.os_disk.disk_size_gb == null || try(var.os_disk.disk_size_gb >= 30 && var.os_disk.disk_size_gb <= 4095, false)
    error_message = "os_disk.disk_size_gb must be null or from 30 to 4095."
  }
}

variable "encryption_at_host_enabled" {
  type        = bool
  description = "Encrypt the VM's temp disk and disk caches at the host. Needs the EncryptionAtHost feature registered on the subscription."
  default     = true
  nullable    = false
}

variable "public_ip_enabled" {
  type        = bool
  description = "Give the VM a Standard static public IP and enroll it through that address. When false, enrollment connects to the private IP (from a peered network, VPN or jump host)."
  default     = true
  nullable    = false
}

variable "domain_name_label" {
  type        = string
  description = "DNS label for the public IP (`<label>.<region>.cloudapp.azure.com`); the resulting FQDN becomes a host certificate principal. Null for none."
  default     = null

  validation {
    condition     = var.domain_name_label == null || can(regex("^[a-z][-a-z0-9]{1,61}[a-z0-9]$", coalesce(var.domain_name_label, "-")))
    error_message = "domain_name_label must be 3-63 lower-case letters, digits or '-', start with a letter and end with a letter or digit."
  }
}

variable "admin_username" {
  type        = string
  description = "Admin account created on the VM with the bootstrap key; enrollment logs in as it."
  default     = "azureuser"
  nullable    = false

  # The same table as plugins/module_utils/_azure_rules.py (tests/terraform checks they agree):
  # the names Azure's Compute API disallows, then the system accounts Ubuntu's images already have.
  validation {
    condition = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.admin_username)) && !contains([
      "1", "123", "a", "actuser", "adm", "admin", "admin1", "admin2", "administrator", "aspnet", "backup", "console",
      "david", "guest", "john", "owner", "root", "server", "sql", "support", "support_388945a0", "sys", "test",
      "test1", "test2", "test3", "user", "user1", "user2", "user3", "user4", "user5",
      "_apt", "bin", "daemon", "games", "irc", "list", "lp", "mail", "man", "messagebus", "news", "nobody", "proxy",
      "sshd", "sync", "syslog", "systemd-network", "systemd-resolve", "systemd-timesync", "uucp", "www-data",
    ], var.admin_username)
    error_message = "admin_username must be a Linux user name (lower case, up to 32 characters) and not one Azure reserves or Ubuntu's image already has (root, admin, user, test, guest, backup, daemon, nobody, ...)."
  }
}

variable "bootstrap_public_key" {
  type        = string
  description = <<-EOT
    Bootstrap public key installed for `admin_username`, in the one-line OpenSSH form
    (`ssh-ed25519 AAAA... comment` or `ssh-rsa AAAA... comment`, RSA at least 2048 bits), as in an
    `.pub` file. The azurerm provider accepts only these two types and only this form: convert an
    RFC 4716 (`---- BEGIN SSH2 PUBLIC KEY ----`) key with `ssh-keygen -i -f key.pub`. Changing it
    replaces the VM (Azure cannot change a VM's SSH keys in place).
  EOT
  nullable    = false

  validation {
    condition = (
      can(regex("^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43}( [^\\n]*)?$", trimspace(var.bootstrap_public_key)))
      || can(regex("^ssh-rsa AAAAB3NzaC1yc2E[A-Za-z0-9+/]{357,}={0,2}( [^\\n]*)?$", trimspace(var.bootstrap_public_key)))
    )
    error_message = "bootstrap_public_key must be one line \"ssh-ed25519 AAAA...\" or \"ssh-rsa AAAA...\" (RSA of at least 2048 bits); RFC 4716, ECDSA and DSA keys are refused by Azure's provider (convert RFC 4716 with ssh-keygen -i)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Azure tags for the VM, NIC and public IP. The VM's tags are set when it is created; afterwards enrollment owns them (it records the enrollment there), so later changes reach only the NIC and public IP."
  default     = {}
  nullable    = false
}

# --- the enrollment -----------------------------------------------------------------------------

variable "enrollment_enabled" {
  type        = bool
  description = "Run enroll.yml for this VM from Terraform. Set false to enroll many VMs in one run of your own, passing their `sshca_host` outputs as `sshca_hosts`."
  default     = true
  nullable    = false
}

variable "host_tags" {
  type        = map(string)
  description = "Host tags that decide who may log in (matched against `access_rules`), e.g. `{ role = \"web\" }`. Also written to the VM's Azure tags at creation."
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for key in keys(var.host_tags) : can(regex("^[A-Za-z0-9_.-]{1,128}$", key))])
    error_message = "host_tags keys must be 1-128 letters, digits, '_', '.' or '-'."
  }
}

variable "access_rules" {
  type = list(object({
    principal = string
    accounts  = list(string)
    host_tags = optional(map(string), {})
  }))
  description = "Who may log in where: certificate `principal` may log in as each of `accounts` on hosts whose tags include all of `host_tags` (empty `host_tags`: every host)."
  default     = []
  nullable    = false

  validation {
    condition = alltrue([
      for rule in var.access_rules :
      length(trimspace(rule.principal)) > 0 && !strcontains(rule.principal, ",") && length(rule.accounts) > 0
      && alltrue([for account in rule.accounts : can(regex("^[a-z_][a-z0-9_-]{0,31}$", account))])
    ])
    error_message = "Each access rule needs a non-empty principal without commas and at least one Linux account name (lower case, up to 32 characters)."
  }
}

variable "extra_principals" {
  type        = list(string)
  description = "Names added to the host certificate besides the hostname, FQDN, public IP and private IP (e.g. a DNS alias)."
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for principal in var.extra_principals : can(regex("^[A-Za-z0-9.:_-]+$", principal))])
    error_message = "extra_principals must be host names or addresses (letters, digits, '.', ':', '_' and '-')."
  }
}

variable "bootstrap_private_key_path" {
  type        = string
  description = "Path on the machine running Terraform to the private half of `bootstrap_public_key`; enrollment uses it for its first login. Only the path is stored, never the key."
  nullable    = false

  validation {
    condition     = length(trimspace(var.bootstrap_private_key_path)) > 0 && !strcontains(var.bootstrap_private_key_path, "PRIVATE KEY")
    error_message = "bootstrap_private_key_path must be a file path (not the key itself)."
  }
}

variable "ca_path" {
  type        = string
  description = "Folder on the machine running Terraform that holds the SSH CA (`sshca_ca_path`). Its passphrase is read by enroll.yml from the environment variable SSHCA_CA_PASSPHRASE, which Terraform passes through without storing."
  nullable    = false

  validation {
    condition     = length(trimspace(var.ca_path)) > 0
    error_message = "ca_path must name the CA folder."
  }
}

variable "ansible_playbook_command" {
  type        = list(string)
  description = "Command that runs the enrollment, before its `-e` arguments: by default the installed collection's playbook."
  default     = ["ansible-playbook", "sshca.azure.enroll"]
  nullable    = false

  validation {
    condition     = length(var.ansible_playbook_command) >= 2 && alltrue([for word in var.ansible_playbook_command : length(word) > 0])
    error_message = "ansible_playbook_command must be a program and its playbook, e.g. [\"ansible-playbook\", \"sshca.azure.enroll\"]."
  }
}

variable "ansible_environment" {
  type        = map(string)
  description = "Extra environment for the enrollment run (e.g. ANSIBLE_COLLECTIONS_PATH). Not for secrets: SSHCA_CA_PASSPHRASE and Azure credentials are inherited from Terraform's own environment."
  default     = {}
  nullable    = false

  validation {
    condition     = !anytrue([for name in keys(var.ansible_environment) : can(regex("(?i)(PASSPHRASE|PASSWORD|SECRET|TOKEN)", name))])
    error_message = "ansible_environment must not carry secrets (they would sit in the Terraform configuration); export them in Terraform's environment instead."
  }
}

variable "extension_operations_enabled" {
  type        = bool
  description = "Allow VM extension operations. Enrollment reads the VM's SSH host keys through Azure's Run Command, which runs as an extension; with false, enrollment cannot pin them and the VM needs `host_keys` given to enroll.yml by other means."
  default     = true
  nullable    = false
}
