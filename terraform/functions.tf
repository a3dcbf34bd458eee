# The one map of functions. It drives ECR repositories, Lambda functions, IAM, integrations, routes and
# permissions (for_each), and the local stack reads it too (python-hcl2): add a route here and both follow.
#
# Each function's environment is merge(local.common_env, environment): together, every variable its code
# reads. Values are AWS values; the local stack keeps the names and substitutes local values. Keep both
# maps plain object literals (no merge/conditionals inside) so they stay readable without evaluation.
locals {
  common_env = {
    POWERTOOLS_SERVICE_NAME      = var.name
    POWERTOOLS_METRICS_NAMESPACE = var.metrics_namespace
    POWERTOOLS_LOG_LEVEL         = var.log_level
  }

  functions = {
    connect = {
      route_key          = "$connect"
      description        = "Verifies the JWT and stores the connection"
      timeout            = 10
      memory_size        = 256
      dynamodb_actions   = ["dynamodb:PutItem", "dynamodb:DeleteItem"]
      dynamodb_indexes   = []
      manage_connections = false
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS   = aws_dynamodb_table.connections.name
        JWT_SECRET_ARN                       = var.jwt_secret_arn
        JWT_JWKS_URL                         = var.jwt_jwks_url
        JWT_ALGORITHMS                       = join(",", var.jwt_algorithms)
        JWT_ISSUER                           = var.jwt_issuer
        JWT_AUDIENCE                         = var.jwt_audience
        JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE = tostring(var.jwt_allow_any_issuer_audience_unsafe)
      }
    }
    disconnect = {
      route_key          = "$disconnect"
      description        = "Deletes the connection record"
      timeout            = 10
      memory_size        = 256
      dynamodb_actions   = ["dynamodb:DeleteItem"]
      dynamodb_indexes   = []
      manage_connections = false
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
      }
    }
    send_message = {
      route_key          = "sendMessage"
      description        = "Validates a message and broadcasts it to the sender's room"
      timeout            = 29
      memory_size        = 1024 # 0.58 vCPU: see terraform/README.md, "Memory size"
      dynamodb_actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:DeleteItem"]
      dynamodb_indexes   = ["room_id-index"]
      manage_connections = true
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
      }
    }
    default = {
      route_key          = "$default"
      description        = "Answers frames no route takes with a contract error frame"
      timeout            = 10
      memory_size        = 256
      dynamodb_actions   = []
      dynamodb_indexes   = []
      manage_connections = true
      route_response     = false
      environment = {
        WEBSOCKET_CALLBACK_URL = local.callback_url
      }
    }
  }
}
