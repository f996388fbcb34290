# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Auth options shared by every module that talks to Azure Resource Manager.
    DOCUMENTATION = r"""
options:
  auth_source:
    description:
      - Where the credential comes from.
      - V(auto) uses O(client_id), O(secret) and O(tenant) when all three are set (as options or
        environment variables), else the C(DefaultAzureCredential) chain of azure-identity
        (environment, workload identity, managed identity, Azure CLI). With a custom endpoint,
        V(auto) needs the service principal, because the default chain would probe the instance metadata address.
      - V(env) reads a service principal from the environment variables listed under O(client_id),
        O(secret) and O(tenant), or from azure-identity's own C(EnvironmentCredential) variables.
      - V(cli) uses the account the Azure CLI (C(az login)) is logged in with.
      - V(msi) uses the managed identity of the machine running the module (O(client_id) picks a
        user-assigned one).
      - V(credential) uses the service principal given by O(client_id), O(secret) and O(tenant).
    type: str
    default: auto
    choices: [auto, env, cli, msi, credential]
  subscription_id:
    description:
      - The Azure subscription to work in.
      - If not set, the environment variable E(AZURE_SUBSCRIPTION_ID) is used.
    type: str
  tenant:
    description:
      - The Entra ID tenant (directory) id of the service principal.
      - If not set, E(AZURE_TENANT) (as azure.azcollection reads it) or E(AZURE_TENANT_ID) is used.
    type: str
  client_id:
    description:
      - The application (client) id of the service principal, or of the user-assigned managed
        identity with O(auth_source=msi).
      - If not set, E(AZURE_CLIENT_ID) is used.
    type: str
  secret:
    description:
      - The service principal's client secret.
      - If not set, E(AZURE_SECRET) (as azure.azcollection reads it) or E(AZURE_CLIENT_SECRET) is used.
    type: str
  cloud_environment:
    description:
      - The Azure cloud, V(AzureCloud) (public), V(AzureChinaCloud) or V(AzureUSGovernment); or the
        https URL of a custom Azure Resource Manager endpoint (as with azure.azcollection), which
        then needs O(authority_host).
      - If not set, E(AZURE_CLOUD_ENVIRONMENT) is used.
    type: str
    default: AzureCloud
  arm_endpoint:
    description:
      - The https URL of a custom Azure Resource Manager endpoint (Azure Stack, a sovereign cloud
        not listed under O(cloud_environment), or a local emulator). Tokens are requested for the
        scope C(<arm_endpoint>/.default).
      - Needs O(authority_host); no public host is contacted for a custom endpoint.
      - If not set, E(AZURE_ARM_ENDPOINT) or E(AZURE_RESOURCE_MANAGER_ENDPOINT) is used.
    type: str
  authority_host:
    description:
      - The Entra ID authority that issues tokens, as an https URL. Defaults to the authority of
        O(cloud_environment).
      - For an authority that is not a public Entra ID host, MSAL's instance discovery is turned
        off, so the authority itself is the only identity endpoint contacted.
      - If not set, E(AZURE_AUTHORITY_HOST) is used.
    type: str
notes:
  - The CA bundle used to verify the endpoints is Python requests' own, or the file named by the
    E(REQUESTS_CA_BUNDLE) environment variable.
  - Requests answered with HTTP 429 or 5xx are retried up to 10 times, waiting as long as the
    server's C(Retry-After) header says (exponential back-off when it says nothing).
    Long-running operations are polled at the interval the server's C(Retry-After) gives.
requirements:
  - azure-identity >= 1.15
  - azure-mgmt-compute >= 30
  - azure-mgmt-network >= 25
"""
