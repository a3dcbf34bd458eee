data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  tags = merge(var.tags, {
    "terraform-module" = "ws-chat-backend"
  })

  # Per-function resource names: "<name>-send-message" etc.
  function_names = { for key, fn in local.functions : key => "${var.name}-${replace(key, "_", "-")}" }

  # IAM roles and dashboards are account-wide, not regional: their names carry the region, so the same
  # `name` deploys to a second region without a collision (at most 32 + 13 + 15 characters of IAM's 64).
  role_names = { for key, name in local.function_names : key => "${name}-${local.region}" }

  # Built from the API (never the stage): the functions' environment must not depend on the stage,
  # which depends on the deployment, routes, integrations and so the functions (a cycle).
  callback_url = "${replace(aws_apigatewayv2_api.websocket.api_endpoint, "wss://", "https://")}/${var.stage_name}"

  # Stage access (and execution) logging needs the region's API Gateway CloudWatch role.
  api_gateway_logging_role = var.create_api_gateway_account_role || var.api_gateway_cloudwatch_role_configured

  # "arn:aws:execute-api:region:account:api-id/stage": the stage's execution_arn, without depending on it.
  stage_execution_arn = "${aws_apigatewayv2_api.websocket.execution_arn}/${var.stage_name}"

  # Drop unset optional settings (e.g. JWT_JWKS_URL when a secret is used): the code treats absent as default.
  function_env = {
    for key, fn in local.functions : key => {
      for name, value in merge(local.common_env, fn.environment) : name => value if value != null && value != ""
    }
  }
}
