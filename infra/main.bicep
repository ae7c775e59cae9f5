// Entry point for `azd up` / `azd provision` (see ../azure.yaml): a resource group and, inside it,
// the serverless deployment of serverless/function-app.bicep. The portal's "Deploy to Azure" button
// uses serverless/azuredeploy.json instead, which declares the same resources (tests/infra/test_infra_templates.py).
targetScope = 'subscription'

@description('Name of the azd environment; names the resource group and tags every resource.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of the resource group and its resources.')
param location string

@description('FlexConsumption (FC1, the default) or Consumption (Linux, Y1).')
@allowed([
  'Consumption'
  'FlexConsumption'
])
param planType string = 'FlexConsumption'

@description('Comma-separated browser origins allowed to call the API; empty keeps the defaults of serverless/function-app.bicep.')
param corsAllowedOrigins string = ''

@description('Object id of the person running azd (azd fills it in): may upload datasets.')
param principalId string = ''

@description('Optional e-mail address that receives the alerts (5xx rate, overload 503s).')
param alertEmail string = ''

var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'serverless/function-app.bicep' = {
  name: 'sids-ml-backend'
  scope: rg
  params: {
    location: location
    planType: planType
    corsAllowedOrigins: empty(corsAllowedOrigins) ? null : split(corsAllowedOrigins, ',')
    uploaderPrincipalId: principalId
    uploaderPrincipalType: 'User'
    alertEmail: alertEmail
    tags: tags
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output SERVICE_API_ENDPOINT string = app.outputs.functionAppUrl
output DATASET_STORAGE_ACCOUNT string = app.outputs.dataStorageAccountName
output DATASET_CONTAINER_URL string = app.outputs.datasetContainerUrl
