// SIDS ML Backend on Kubernetes: the AKS cluster (one node pool, cluster autoscaler 1..5 nodes),
// its container registry, the dataset storage the pods read through workload identity, and the
// Application Insights component the pods publish to with that same identity (local authentication off).
// Deploy into a resource group:
//   az deployment group create -g <rg> -f infra/aks/main.bicep -p adminPrincipalIds="['<your object id>']"
// then follow infra/README.md ("Kubernetes") for KEDA, the HTTP add-on and the manifests.
targetScope = 'resourceGroup'

@description('Azure region for every resource. Defaults to the resource group\'s region.')
param location string = resourceGroup().location

@description('Short name used in every resource name (lowercase letters and digits).')
@minLength(2)
@maxLength(12)
param appName string = 'sidsml'

@description('VM size of the nodes (the old service ran on Standard_DS2_v2: 2 vCPU, 7 GiB).')
param nodeVmSize string = 'Standard_DS2_v2'

@description('Fewest nodes the cluster autoscaler keeps.')
@minValue(1)
param minNodeCount int = 1

@description('Most nodes the cluster autoscaler adds.')
@minValue(1)
param maxNodeCount int = 5

@description('Kubernetes namespace of the service (must match infra/k8s).')
param namespace string = 'sids'

@description('Kubernetes service account the pods run as (must match infra/k8s).')
param serviceAccountName string = 'sids-ml-backend'

@description('Object ids of people who administer the cluster (Azure Kubernetes Service RBAC Cluster Admin).')
param adminPrincipalIds array = []

@description('Object id of the CI identity (GitHub Actions through OIDC): may push images and deploy to the cluster. Empty: none.')
param ciPrincipalId string = ''

@description('Optional object id of a user allowed to upload datasets (Storage Blob Data Contributor on the datasets container).')
param uploaderPrincipalId string = ''

@description('Tags added to every resource.')
param tags object = {}

var token = uniqueString(subscription().id, resourceGroup().id, appName)
var datasetContainerName = 'datasets'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var acrPush = '8311e382-0749-4cb8-b61a-304f252e45ec'
var aksRbacClusterAdmin = 'b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b'
var aksClusterUser = '4abbcc35-e782-43d8-92c5-2d3f1bd2253f'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

// The app's telemetry (OpenTelemetry in the pods). Local authentication is off: only Entra ID tokens are
// accepted, and the workload identity below holds Monitoring Metrics Publisher on it.
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139: private registry endpoints need the Premium tier (about 20x the Basic price); pulls and pushes need Entra ID roles, and anonymous pull is off
  // checkov:skip=CKV_AZURE_163: image scanning is Microsoft Defender for Containers, a subscription-wide plan to switch on outside this template
  // checkov:skip=CKV_AZURE_166: quarantine needs the Premium tier; only CI (AcrPush through OIDC) can push
  name: 'cr${appName}${token}'
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
  }
}

resource cluster 'Microsoft.ContainerService/managedClusters@2024-05-01' = {
  // checkov:skip=CKV_AZURE_6: CI deploys from GitHub-hosted runners whose addresses change; access needs Entra ID (local accounts are off). Set apiServerAccessProfile.authorizedIPRanges for fixed runners
  // checkov:skip=CKV_AZURE_8: the Kubernetes dashboard add-on does not exist on supported AKS versions (removed in 1.19); nothing to disable
  // checkov:skip=CKV_AZURE_172: the Secrets Store CSI driver is not used (no secrets: workload identity only)
  // checkov:skip=CKV_AZURE_226: managed OS disks keep nodeVmSize free; an ephemeral disk must fit the VM size's cache and fails on sizes without one
  // checkov:skip=CKV_AZURE_227: encryption at host needs the EncryptionAtHost feature registered on the subscription first; enable it there, then set enableEncryptionAtHost
  name: 'aks-${appName}-${token}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  sku: {
    name: 'Base'
    tier: 'Free'
  }
  properties: {
    dnsPrefix: 'aks-${appName}-${token}'
    enableRBAC: true
    disableLocalAccounts: true
    aadProfile: {
      managed: true
      enableAzureRBAC: true
    }
    agentPoolProfiles: [
      {
        name: 'system'
        mode: 'System'
        osType: 'Linux'
        type: 'VirtualMachineScaleSets'
        vmSize: nodeVmSize
        count: minNodeCount
        enableAutoScaling: true
        minCount: minNodeCount
        maxCount: maxNodeCount
        maxPods: 50
      }
    ]
    autoScalerProfile: {
      'scale-down-unneeded-time': '10m'
      'scan-interval': '10s'
    }
    networkProfile: {
      networkPlugin: 'azure'
      networkPolicy: 'azure'
      loadBalancerSku: 'standard'
    }
    oidcIssuerProfile: {
      enabled: true
    }
    securityProfile: {
      workloadIdentity: {
        enabled: true
      }
    }
    ingressProfile: {
      webAppRouting: {
        enabled: true
      }
    }
    autoUpgradeProfile: {
      upgradeChannel: 'patch'
      nodeOSUpgradeChannel: 'NodeImage'
    }
    addonProfiles: {
      omsagent: {
        enabled: true
        config: {
          logAnalyticsWorkspaceResourceID: logs.id
        }
      }
      azurepolicy: {
        enabled: true
      }
    }
  }
}

// Nodes pull images from the registry with the kubelet identity: no registry password anywhere.
resource kubeletPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, cluster.id, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: cluster.properties.identityProfile.kubeletidentity.objectId
    principalType: 'ServicePrincipal'
  }
}

resource admins 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for id in adminPrincipalIds: {
  name: guid(cluster.id, id, aksRbacClusterAdmin)
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', aksRbacClusterAdmin)
    principalId: id
  }
}]

resource ciPush 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(ciPrincipalId)) {
  name: guid(registry.id, ciPrincipalId, acrPush)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPush)
    principalId: ciPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// CI installs the KEDA charts (cluster-wide objects) and applies the manifests: cluster admin.
resource ciAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(ciPrincipalId)) {
  name: guid(cluster.id, ciPrincipalId, aksRbacClusterAdmin)
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', aksRbacClusterAdmin)
    principalId: ciPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource ciUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(ciPrincipalId)) {
  name: guid(cluster.id, ciPrincipalId, aksClusterUser)
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', aksClusterUser)
    principalId: ciPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'stk' + uniqueString(): always 16 lowercase letters and digits; the check cannot evaluate the expression
  // checkov:skip=CKV_AZURE_206: LRS on purpose; datasets are published copies of data kept elsewhere (README 'Costs')
  // checkov:skip=CKV_AZURE_35: the pods reach the account over its public endpoint (no private endpoint in this template); access needs Entra ID, shared keys are off
  name: 'stk${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource datasetContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: datasetContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Workload identity: pods running as the service account get tokens for this identity, which can
// only read the datasets container and publish telemetry.
resource workloadIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}-${token}'
  location: location
  tags: tags
}

resource federation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: workloadIdentity
  name: 'aks-${serviceAccountName}'
  properties: {
    issuer: cluster.properties.oidcIssuerProfile.issuerURL
    subject: 'system:serviceaccount:${namespace}:${serviceAccountName}'
    audiences: [
      'api://AzureADTokenExchange'
    ]
  }
}

resource workloadReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(datasetContainer.id, workloadIdentity.id, storageBlobDataReader)
  scope: datasetContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: workloadIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource workloadTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, workloadIdentity.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: workloadIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource uploader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(uploaderPrincipalId)) {
  name: guid(datasetContainer.id, uploaderPrincipalId, storageBlobDataContributor)
  scope: datasetContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: uploaderPrincipalId
  }
}

output clusterName string = cluster.name
output registryName string = registry.name
output registryLoginServer string = registry.properties.loginServer
output datasetAccountUrl string = dataStorage.properties.primaryEndpoints.blob
output datasetContainer string = datasetContainerName
output workloadClientId string = workloadIdentity.properties.clientId
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output namespace string = namespace
output serviceAccountName string = serviceAccountName
