terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.0, < 6.0"
    }
  }
}

# Credentials and subscription come from the environment (az login, or ARM_CLIENT_ID,
# ARM_TENANT_ID, ARM_SUBSCRIPTION_ID and friends), never from this file.
provider "azurerm" {
  features {}
}
