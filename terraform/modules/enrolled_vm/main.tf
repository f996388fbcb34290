locals {
  image_presets = {
    "ubuntu-24.04" = { publisher = "Canonical", offer = "ubuntu-24_04-lts", sku = "server", version = "latest" }
    "ubuntu-22.04" = { publisher = "Canonical", offer = "0001-com-ubuntu-server-jammy", sku = "22_04-lts-gen2", version = "latest" }
  }
  image = var.custom_image != null ? var.custom_image : local.image_presets[var.image]

  public_ip_address  = var.public_ip_enabled ? azurerm_public_ip.this[0].ip_address : null
  fqdn               = var.public_ip_enabled ? azurerm_public_ip.this[0].fqdn : null
  private_ip_address = azurerm_network_interface.this.private_ip_address
  # Enrollment connects where the operator can reach the VM: its public IP, else its private IP.
  enroll_address = coalesce(local.public_ip_address, local.private_ip_address)

  # What enroll.yml signs into the host certificate, in the order of its enrollment contract
  # (plugins/module_utils/_enrollment.py, host_principals): VM name, the address enrollment
  # connects to, private IP, FQDN, extras. Names the operator and Azure give, never what the host
  # says about itself; clients may reach the host by any of them without a prompt.
  host_certificate_principals = distinct(compact(concat(
    [azurerm_linux_virtual_machine.this.name, local.enroll_address, local.private_ip_address, local.fqdn],
    var.extra_principals,
  )))

  # One entry of enroll.yml's `sshca_hosts`: enroll this existing VM instead of creating one. Its
  # keys are fields of the contract's HostInput (tests/terraform checks them against it); the VM id
  # lets enrollment read the host keys through Azure's Run Command before its first SSH connection.
  sshca_host = {
    name             = azurerm_linux_virtual_machine.this.name
    address          = local.enroll_address
    private_ip       = local.private_ip_address
    fqdn             = local.fqdn
    extra_principals = var.extra_principals
    host_tags        = var.host_tags
    vm_id            = azurerm_linux_virtual_machine.this.id
  }

  # Extra vars for enroll.yml. Every value here is a trigger: change one and enrollment re-runs.
  # The CA passphrase is not among them; enroll.yml reads SSHCA_CA_PASSPHRASE from the environment.
  enroll_extra_vars = {
    sshca_hosts              = [local.sshca_host]
    sshca_bootstrap_key_path = var.bootstrap_private_key_path
    sshca_admin_user         = var.admin_username
    sshca_ca_path            = var.ca_path
    sshca_access_rules       = var.access_rules
    sshca_resource_group     = var.resource_group_name
  }
}

resource "azurerm_public_ip" "this" {
  count = var.public_ip_enabled ? 1 : 0

  name                = "${var.name}-pip"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "Standard"
  allocation_method   = "Static"
  domain_name_label   = var.domain_name_label
  zones               = var.zone == null ? null : [var.zone]
  tags                = var.tags
}

resource "azurerm_network_interface" "this" {
  #checkov:skip=CKV_AZURE_119:The public IP is the documented way in: the subnet NSG admits SSH only from listed sources, and public_ip_enabled = false removes it.
  name                = "${var.name}-nic"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags

  ip_configuration {
    name                          = "primary"
    subnet_id                     = var.subnet_id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = var.public_ip_enabled ? azurerm_public_ip.this[0].id : null
  }
}

resource "azurerm_linux_virtual_machine" "this" {
  #checkov:skip=CKV_AZURE_50:Enrollment reads the SSH host keys through Azure's Run Command (an extension operation) to pin them before the first SSH connection; extension_operations_enabled = false turns it off.
  name                            = var.name
  resource_group_name             = var.resource_group_name
  location                        = var.location
  size                            = var.size
  zone                            = var.zone
  network_interface_ids           = [azurerm_network_interface.this.id]
  admin_username                  = var.admin_username
  disable_password_authentication = true
  allow_extension_operations      = var.extension_operations_enabled
  encryption_at_host_enabled      = var.encryption_at_host_enabled
  tags                            = merge(var.tags, var.host_tags)

  admin_ssh_key {
    username   = var.admin_username
    public_key = trimspace(var.bootstrap_public_key)
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = var.os_disk.storage_account_type
    disk_size_gb         = var.os_disk.disk_size_gb
  }

  source_image_reference {
    publisher = local.image.publisher
    offer     = local.image.offer
    sku       = local.image.sku
    version   = local.image.version
  }

  # Managed boot diagnostics enable the serial console: the way back in if a lockout ever fails.
  boot_diagnostics {}

  lifecycle {
    # enroll.yml records the enrollment (time, certificate serial and expiry, host tags) in the
    # VM's Azure tags; Terraform must not strip them on its next apply.
    ignore_changes = [tags]
  }
}

resource "terraform_data" "enrollment" {
  count = var.enrollment_enabled ? 1 : 0

  triggers_replace = local.enroll_extra_vars

  provisioner "local-exec" {
    # No shell: the extra vars reach ansible-playbook as one argument, whatever they contain.
    interpreter = concat(var.ansible_playbook_command, ["-e"])
    command     = jsonencode(local.enroll_extra_vars)
    environment = var.ansible_environment
  }
}
