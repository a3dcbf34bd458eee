resource "aws_apigatewayv2_api" "websocket" {
  name                       = var.name
  description                = "WebSocket chat API"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"

  tags = local.tags
}

resource "aws_apigatewayv2_integration" "this" {
  for_each = local.routed_functions

  api_id             = aws_apigatewayv2_api.websocket.id
  description        = "${each.value.route_key} -> ${local.function_names[each.key]}"
  integration_type   = "AWS_PROXY"
  integration_method = "POST"
  integration_uri    = aws_lambda_function.this[each.key].invoke_arn
}

resource "aws_apigatewayv2_route" "this" {
  for_each = local.routed_functions
  #checkov:skip=CKV_AWS_309:The JWT is verified by the $connect function, because the handshake needs distinct 401/400/403 statuses (docs/auth.md) an authorizer cannot return; later routes cannot carry an authorizer at all (only $connect can).

  api_id             = aws_apigatewayv2_api.websocket.id
  route_key          = each.value.route_key
  target             = "integrations/${aws_apigatewayv2_integration.this[each.key].id}"
  authorization_type = "NONE"

  route_response_selection_expression = each.value.route_response ? "$default" : null
}

resource "aws_apigatewayv2_route_response" "this" {
  for_each = { for key, fn in local.routed_functions : key => fn if fn.route_response }

  api_id             = aws_apigatewayv2_api.websocket.id
  route_id           = aws_apigatewayv2_route.this[each.key].id
  route_response_key = "$default"
}

# WebSocket stages do not auto-deploy: a new deployment is cut whenever a route, integration or route
# response changes, and created before the old one is destroyed so the stage always has one.
resource "aws_apigatewayv2_deployment" "this" {
  api_id      = aws_apigatewayv2_api.websocket.id
  description = "Routes: ${join(", ", sort([for fn in local.routed_functions : fn.route_key]))}"

  triggers = {
    redeployment = sha1(jsonencode([
      aws_apigatewayv2_route.this,
      aws_apigatewayv2_integration.this,
      aws_apigatewayv2_route_response.this,
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "access" {
  name              = "/aws/apigateway/${var.name}/${var.stage_name}/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn

  tags = local.tags
}

resource "aws_apigatewayv2_stage" "this" {
  #checkov:skip=CKV2_AWS_51:Client certificates authenticate API Gateway to HTTP backends; every integration here is a Lambda proxy.
  api_id        = aws_apigatewayv2_api.websocket.id
  name          = var.stage_name
  description   = "${var.name} WebSocket stage"
  deployment_id = aws_apigatewayv2_deployment.this.id

  default_route_settings {
    throttling_rate_limit  = var.throttling_rate_limit
    throttling_burst_limit = var.throttling_burst_limit
    logging_level          = var.execution_logging_level
    data_trace_enabled     = false
  }

  # Access logs, like execution logs, need the region's API Gateway CloudWatch role: a new account has none
  # ("CloudWatch Logs role ARN must be set in account settings to enable logging"). They are on when this
  # module creates the role or the caller says one is already set.
  dynamic "access_log_settings" {
    for_each = local.api_gateway_logging_role ? [1] : []

    content {
      destination_arn = aws_cloudwatch_log_group.access.arn
      format = jsonencode({
        requestId          = "$context.requestId"
        extendedRequestId  = "$context.extendedRequestId"
        requestTime        = "$context.requestTime"
        eventType          = "$context.eventType"
        routeKey           = "$context.routeKey"
        status             = "$context.status"
        connectionId       = "$context.connectionId"
        messageId          = "$context.messageId"
        sourceIp           = "$context.identity.sourceIp"
        userAgent          = "$context.identity.userAgent"
        integrationStatus  = "$context.integration.status"
        integrationLatency = "$context.integration.latency"
        integrationError   = "$context.integration.error"
        errorMessage       = "$context.error.message"
        errorResponseType  = "$context.error.responseType"
      })
    }
  }

  tags = local.tags

  # With execution or access logging on, the account's CloudWatch role must be in place first.
  depends_on = [aws_api_gateway_account.this]

  lifecycle {
    # Without the role API Gateway refuses the stage, after everything else was built.
    precondition {
      condition     = var.execution_logging_level == "OFF" || local.api_gateway_logging_role
      error_message = "execution_logging_level = \"${var.execution_logging_level}\" needs the region's API Gateway CloudWatch Logs role: set create_api_gateway_account_role = true (this module creates it) or api_gateway_cloudwatch_role_configured = true (the account settings already name one), or set execution_logging_level = \"OFF\"."
    }
  }
}

################################################################################
# Optional custom domain: wss://{custom_domain_name} instead of the execute-api host
################################################################################

resource "aws_apigatewayv2_domain_name" "this" {
  count = var.custom_domain_name == null ? 0 : 1

  domain_name = var.custom_domain_name

  domain_name_configuration {
    certificate_arn = var.custom_domain_certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.custom_domain_certificate_arn != null
      error_message = "custom_domain_name needs custom_domain_certificate_arn: an issued ACM certificate for it, in this region."
    }
  }
}

# The whole stage at the domain's root: wss://{custom_domain_name} is the stage's URL.
resource "aws_apigatewayv2_api_mapping" "this" {
  count = var.custom_domain_name == null ? 0 : 1

  api_id      = aws_apigatewayv2_api.websocket.id
  domain_name = aws_apigatewayv2_domain_name.this[0].id
  stage       = aws_apigatewayv2_stage.this.id
}

# The exact route ARN (arn:...:{api}/{stage}/{route_key}); built from the stage name so the permission
# exists before the stage starts routing to the function.
resource "aws_lambda_permission" "this" {
  for_each = local.routed_functions

  statement_id  = "AllowApiGatewayInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${local.stage_execution_arn}/${each.value.route_key}"
}
