// SIDS ML Backend, serverless: a Linux Function App (Python 3.11) on Flex Consumption (the default),
// or on the Linux Consumption plan with planType = 'Consumption'. Application Insights takes telemetry
// only from Microsoft Entra ID identities (local authentication off): the app publishes with its
// managed identity. Two log alerts (5xx rate, overload 503s) and a saved query (latency by model option).
//
// Deployed by `azd up` through ../main.bicep, and kept in step by hand with the portal's
// template azuredeploy.json beside it (tests/infra/test_infra_templates.py compares the two).
// Read ../README.md ("Serverless") before changing either.
targetScope = 'resourceGroup'

@description('Azure region for every resource. Defaults to the resource group\'s region.')
param location string = resourceGroup().location

@description('Short name used in every resource name (lowercase letters, digits and hyphens).')
@minLength(2)
@maxLength(12)
param appName string = 'sidsml'

@description('Hosting plan: FlexConsumption (FC1, the default for new apps) or Consumption (Linux, Y1; retired for new work in 2028).')
@allowed([
  'Consumption'
  'FlexConsumption'
])
param planType string = 'FlexConsumption'

@description('Browser origins allowed to call the API. The app answers CORS itself; platform CORS stays empty.')
param corsAllowedOrigins array = [
  'https://lenseg.github.io'
  'https://sids-dashboard.github.io'
  'https://data.undp.org'
  'http://localhost'
  'http://localhost:8080'
]

@description('Seconds between checks of the dataset container for a new dataset version (per instance).')
@minValue(30)
param datasetRefreshSeconds int = 300

@description('Upper bound on instances. Consumption on Linux caps it at 100; Flex Consumption accepts up to 1000.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption only: memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption only: instances kept running for the HTTP functions (no cold start on them; billed while idle). 0: none.')
@minValue(0)
@maxValue(20)
param alwaysReadyInstances int = 0

@description('Flex Consumption only: HTTP requests one instance takes at once before the platform adds another. Model fits are CPU-bound: keep it low.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 4

@description('Optional e-mail address that receives the alerts (an action group is made for it). Empty: the alerts fire in the portal only.')
param alertEmail string = ''

@description('Alert when more than this percentage of requests in 15 minutes fail with a 5xx other than 503 (at least 20 requests).')
@minValue(1)
@maxValue(100)
param alertServerErrorPercent int = 5

@description('Alert when more than this many requests in 5 minutes are refused with 503 (overload; /health excluded).')
@minValue(1)
param alertOverloadCount int = 10

@description('Optional object id of a user or principal allowed to upload datasets (Storage Blob Data Contributor on the datasets container). azd passes your own id.')
param uploaderPrincipalId string = ''

@description('Kind of the principal in uploaderPrincipalId.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param uploaderPrincipalType string = 'User'

@description('Tags added to every resource.')
param tags object = {}

var token = uniqueString(subscription().id, resourceGroup().id, appName)
var isFlex = planType == 'FlexConsumption'
var functionAppName = 'func-${appName}-${token}'
var hostStorageName = 'st${token}'
var dataStorageName = 'stdata${token}'
var datasetContainerName = 'datasets'
var deploymentContainerName = 'app-package'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// Log queries on the workspace's AppRequests table: the Functions host's request records, and the app's own
// server spans (children of the host's trace, so the same OperationId) with their custom dimensions in
// Properties (model, scheme, interpolator, error_type, request_id: shared/telemetry.py). Requests are counted
// as distinct operations, so a request recorded by both counts once. Kept on one line each: the ARM twin
// holds the same strings (tests/infra/test_infra_templates.py compares them).
var serverErrorsQuery = 'AppRequests | summarize Total = dcount(OperationId), Failed = dcountif(OperationId, toint(ResultCode) >= 500 and ResultCode != "503") | where Total >= 20 | extend FailedPercent = 100.0 * Failed / Total'
var overloadQuery = 'AppRequests | where ResultCode == "503" and Url !has "/health" | summarize Refused = dcount(OperationId)'
var latencyByOptionQuery = 'AppRequests | where TimeGenerated > ago(7d) and Url has "/predict" | extend model = tostring(Properties["model"]), scheme = tostring(Properties["scheme"]), interpolator = tostring(Properties["interpolator"]) | where isnotempty(model) | summarize requests = count(), p50_ms = percentile(DurationMs, 50), p95_ms = percentile(DurationMs, 95), failed = countif(Success == false) by model, scheme, interpolator | order by p95_ms desc'

// Settings every plan gets. The app reads its datasets with DefaultAzureCredential, which picks the
// user-assigned identity named by AZURE_CLIENT_ID: no key reaches the app for the dataset.
var commonSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  // Local authentication is off on the component: telemetry is accepted only with an Entra ID token
  // of this identity (Monitoring Metrics Publisher, below).
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
  AZURE_CLIENT_ID: appIdentity.properties.clientId
  DATASET_BLOB_ACCOUNT_URL: dataStorage.properties.primaryEndpoints.blob
  DATASET_BLOB_CONTAINER: datasetContainerName
  DATASET_REFRESH_SECONDS: string(datasetRefreshSeconds)
  CORS_ALLOWED_ORIGINS: join(corsAllowedOrigins, ',')
}

// Flex Consumption: runtime and version live in functionAppConfig (the FUNCTIONS_* settings are
// refused there), and the host reaches its own storage with the same identity, without keys.
var flexSettings = {
  AzureWebJobsStorage__accountName: hostStorage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appIdentity.properties.clientId
}

// Linux Consumption: the host storage is reached by connection string (what this plan supports for
// zip deployment); the key stays in Azure and only ever opens the host storage account, not the datasets.
var consumptionSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountName=${hostStorage.name};AccountKey=${hostStorage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
}

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

// The app's identity may publish telemetry (the only way in: local authentication is off).
resource appInsightsPublisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource alertGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${appName}-${token}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'sidsml'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource serverErrorsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appName}-5xx-${token}'
  location: location
  tags: tags
  properties: {
    displayName: 'SIDS ML Backend: 5xx rate'
    description: 'More than ${alertServerErrorPercent}% of the requests of the last 15 minutes failed with a server error (503 overload has its own alert).'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [
      logs.id
    ]
    criteria: {
      allOf: [
        {
          query: serverErrorsQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'FailedPercent'
          operator: 'GreaterThan'
          threshold: alertServerErrorPercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        alertGroup.id
      ]
    }
  }
}

resource overloadAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appName}-overload-${token}'
  location: location
  tags: tags
  properties: {
    displayName: 'SIDS ML Backend: overload 503s'
    description: 'More than ${alertOverloadCount} requests in 5 minutes were refused with 503 + Retry-After (compute slots and queue full): raise maximumInstanceCount or lower httpPerInstanceConcurrency.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    scopes: [
      logs.id
    ]
    criteria: {
      allOf: [
        {
          query: overloadQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'Refused'
          operator: 'GreaterThan'
          threshold: alertOverloadCount
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        alertGroup.id
      ]
    }
  }
}

// A saved query in the workspace (Logs > Queries > 'SIDS ML Backend'): latency per model option.
resource latencyByOptionSearch 'Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01' = {
  parent: logs
  name: 'sids-latency-by-option'
  properties: {
    category: 'SIDS ML Backend'
    displayName: 'Prediction latency by model option (p50, p95)'
    query: latencyByOptionQuery
    version: 2
  }
}

// The Functions host's own storage (keys, leases, and the Flex deployment package). Datasets live
// in a separate account, so nothing that can write here can write a dataset.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'st'/'stdata' + uniqueString(): always 15-19 lowercase letters and digits; the check cannot evaluate the expression
  // checkov:skip=CKV_AZURE_206: LRS on purpose; see README 'Costs' (host state is rebuilt by the host, datasets are published copies)
  // checkov:skip=CKV_AZURE_35: Consumption plans have no VNet integration, so the account must accept public endpoints; access needs Entra ID or the host key
  name: hostStorageName
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
    allowSharedKeyAccess: !isFlex
    defaultToOAuthAuthentication: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The datasets: read-only for the app, through its user-assigned identity. Shared keys are off:
// uploads use Microsoft Entra ID (infra/scripts/upload_dataset.py, or az storage blob upload-batch --auth-mode login).
resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'st'/'stdata' + uniqueString(): always 15-19 lowercase letters and digits; the check cannot evaluate the expression
  // checkov:skip=CKV_AZURE_206: LRS on purpose; see README 'Costs' (host state is rebuilt by the host, datasets are published copies)
  // checkov:skip=CKV_AZURE_35: Consumption plans have no VNet integration, so the account must accept public endpoints; access needs Entra ID or the host key
  name: dataStorageName
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

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}-${token}'
  location: location
  tags: tags
}

resource appIdentityReaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(datasetContainer.id, appIdentity.id, storageBlobDataReader)
  scope: datasetContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource uploaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(uploaderPrincipalId)) {
  name: guid(datasetContainer.id, uploaderPrincipalId, storageBlobDataContributor)
  scope: datasetContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: uploaderPrincipalId
    principalType: uploaderPrincipalType
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is not available on the Consumption (Y1) plan; Flex spreads instances itself
  name: 'plan-${appName}-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'Y1'
    tier: 'Dynamic'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: a public API called by browsers (the SIDS dashboard), which send no client certificates
  // checkov:skip=CKV_AZURE_222: public by design: the dashboard calls it from users' browsers
  // checkov:skip=CKV_AZURE_212: instances are the platform's to add and remove on these plans; scale to zero is the point of serverless
  // checkov:skip=CKV_AZURE_213: App Service health check is not offered on Consumption/Flex; the platform recycles failing instances, and /health serves monitoring
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  dependsOn: [
    hostStorageOwnerRole
    appInsightsPublisherRole
  ]
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyInstances == 0 ? [] : [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ]
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    } : null
    siteConfig: {
      linuxFxVersion: isFlex ? null : 'Python|3.11'
      functionAppScaleLimit: isFlex ? null : min(maximumInstanceCount, 100)
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
      // Empty on purpose: platform CORS would answer preflights itself and drop the app's
      // Access-Control-* headers. The allow-list is the CORS_ALLOWED_ORIGINS app setting.
      cors: {
        allowedOrigins: []
        supportCredentials: false
      }
    }
  }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: this resource is the 'appsettings' dictionary, not the 'web' config these checks read; the API is anonymous by design
  // checkov:skip=CKV_AZURE_63: see CKV_AZURE_13 (the check reads web config); logs go to Application Insights
  // checkov:skip=CKV_AZURE_65: see CKV_AZURE_13 (the check reads web config); errors go to Application Insights
  // checkov:skip=CKV_AZURE_66: see CKV_AZURE_13 (the check reads web config); requests are traced in Application Insights
  // checkov:skip=CKV_AZURE_80: see CKV_AZURE_13 (the check reads web config); a Python app has no .NET Framework version
  // checkov:skip=CKV_AZURE_88: see CKV_AZURE_13 (the check reads web config); a function app needs no Azure Files mount
  // checkov:skip=CKV_AZURE_222: see CKV_AZURE_13 (the check reads web config); public by design
  parent: functionApp
  name: 'appsettings'
  properties: union(commonSettings, isFlex ? flexSettings : consumptionSettings)
}

// Flex Consumption: the host reaches its own storage account (not the datasets) with the app identity.
resource hostStorageOwnerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (isFlex) {
  name: guid(hostStorage.id, appIdentity.id, storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output dataStorageAccountName string = dataStorage.name
output datasetContainerUrl string = '${dataStorage.properties.primaryEndpoints.blob}${datasetContainerName}'
output appIdentityClientId string = appIdentity.properties.clientId
