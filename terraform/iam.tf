# One role per function, granted exactly what its code calls (local.functions: dynamodb_actions and
# dynamodb_indexes per table, manage_connections; the JWT secret only for a function whose environment names it),
# plus writing to its own log group, X-Ray and decrypting with the module key (environment, table).
locals {
  # The tables a function may be granted actions on (local.functions' dynamodb_actions keys).
  dynamodb_tables = {
    connections = { arn = aws_dynamodb_table.connections.arn, sid = "Connection" }
    messages    = { arn = aws_dynamodb_table.messages.arn, sid = "Message" }
    memberships = { arn = aws_dynamodb_table.memberships.arn, sid = "Membership" }
  }

  dynamodb_item_actions = {
    for key, fn in local.functions : key => {
      for table, actions in fn.dynamodb_actions : table => [for action in actions : action if action != "dynamodb:Query"]
    }
  }

  # Query is granted on the listed indexes only (on the table itself when none is listed).
  dynamodb_query_resources = {
    for key, fn in local.functions : key => {
      for table, actions in fn.dynamodb_actions : table => (
        length(lookup(fn.dynamodb_indexes, table, [])) == 0 ? [local.dynamodb_tables[table].arn] :
        [for index in fn.dynamodb_indexes[table] : "${local.dynamodb_tables[table].arn}/index/${index}"]
      ) if contains(actions, "dynamodb:Query")
    }
  }

  # The actions a function calls on the fanout queue (none unless local.functions lists queue_actions).
  queue_actions = { for key, fn in local.functions : key => lookup(fn, "queue_actions", []) }

  reads_jwt_secret = {
    for key, fn in local.functions : key => contains(keys(fn.environment), "JWT_SECRET_ARN") && var.jwt_secret_arn != null
  }
}

data "aws_iam_policy_document" "lambda_assume_role" {
  statement {
    sid     = "LambdaAssumesTheRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = local.role_names[each.key]
  description        = "Execution role of ${local.function_names[each.key]} (${each.value.route_key == null ? "no route" : each.value.route_key})"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(local.role_names[each.key]) <= 64
      error_message = "The role name ${local.role_names[each.key]} is longer than IAM's 64 characters: choose a shorter name."
    }
  }
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "XRayTracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    sid       = "DecryptEnvironmentAndTable"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }

  dynamic "statement" {
    for_each = { for table, actions in local.dynamodb_item_actions[each.key] : table => actions if length(actions) > 0 }

    content {
      sid       = "${local.dynamodb_tables[statement.key].sid}Items"
      actions   = statement.value
      resources = [local.dynamodb_tables[statement.key].arn]
    }
  }

  dynamic "statement" {
    for_each = local.dynamodb_query_resources[each.key]

    content {
      sid       = "Query${local.dynamodb_tables[statement.key].sid}s"
      actions   = ["dynamodb:Query"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = each.value.manage_connections ? [1] : []

    content {
      sid       = "PostToConnections"
      actions   = ["execute-api:ManageConnections"]
      resources = ["${local.stage_execution_arn}/POST/@connections/*"]
    }
  }

  dynamic "statement" {
    for_each = length(local.queue_actions[each.key]) > 0 ? [1] : []

    content {
      sid       = "FanoutQueue"
      actions   = local.queue_actions[each.key]
      resources = [aws_sqs_queue.fanout.arn]
    }
  }

  # SQS encrypts with the module key through the sender's own permissions (the key policy's account statement).
  dynamic "statement" {
    for_each = contains(local.queue_actions[each.key], "sqs:SendMessage") ? [1] : []

    content {
      sid       = "EncryptQueueMessages"
      actions   = ["kms:GenerateDataKey"]
      resources = [aws_kms_key.this.arn]
    }
  }

  dynamic "statement" {
    for_each = local.reads_jwt_secret[each.key] ? [1] : []

    content {
      sid       = "ReadJwtSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [var.jwt_secret_arn]
    }
  }

  dynamic "statement" {
    for_each = local.reads_jwt_secret[each.key] && var.jwt_secret_kms_key_arn != null ? [1] : []

    content {
      sid       = "DecryptJwtSecret"
      actions   = ["kms:Decrypt"]
      resources = [var.jwt_secret_kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "least-privilege"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

################################################################################
# Opt-in: the region-wide role API Gateway needs for stage execution logging
################################################################################

data "aws_iam_policy_document" "api_gateway_assume_role" {
  count = var.create_api_gateway_account_role ? 1 : 0

  statement {
    sid     = "ApiGatewayAssumesTheRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "api_gateway_cloudwatch" {
  count = var.create_api_gateway_account_role ? 1 : 0

  name               = "${var.name}-apigw-logs-${local.region}"
  description        = "Lets API Gateway write execution logs to CloudWatch Logs (region-wide account setting)"
  assume_role_policy = data.aws_iam_policy_document.api_gateway_assume_role[0].json

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "api_gateway_cloudwatch" {
  count = var.create_api_gateway_account_role ? 1 : 0

  role       = aws_iam_role.api_gateway_cloudwatch[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count = var.create_api_gateway_account_role ? 1 : 0

  cloudwatch_role_arn = aws_iam_role.api_gateway_cloudwatch[0].arn

  depends_on = [aws_iam_role_policy_attachment.api_gateway_cloudwatch]
}
