# WebSocket metrics in AWS/ApiGateway carry the dimensions ApiId and (ApiId, Stage): never ApiName or Route.
locals {
  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]

  api_dimensions = {
    ApiId = aws_apigatewayv2_api.websocket.id
    Stage = aws_apigatewayv2_stage.this.name
  }

  # No alarm on IntegrationError: it counts every 4xx a function returns, and $connect answers 401/400/403
  # to every refused handshake. Real failures are ExecutionError here, Lambda Errors, and the functions'
  # own error metrics below.
  api_alarms = {
    execution-error = {
      metric      = "ExecutionError"
      statistic   = "Sum"
      threshold   = 0
      description = "API Gateway failed to invoke an integration."
    }
    client-error-spike = {
      metric      = "ClientError"
      statistic   = "Sum"
      threshold   = var.alarm_client_error_threshold
      description = "Unusual number of 4xx responses (rejected handshakes, throttling)."
    }
  }

  # EMF metrics the functions emit (namespace var.metrics_namespace, dimension service = var.name) for an
  # error they handle themselves: send_message answers an internal error with statusCode 500 and an
  # `internal` frame, which Lambda's Errors metric never sees.
  function_error_alarms = {
    internal-errors = {
      metric      = "InternalErrors"
      description = "A function answered an internal error (send_message: statusCode 500 and an internal frame to the sender)."
    }
    connection-store-errors = {
      metric      = "ConnectionStoreErrors"
      description = "A connection record could not be written or deleted in time ($connect refused the connection, or $disconnect left the record to its ttl)."
    }
  }

  lambda_alarms = {
    for pair in setproduct(keys(local.functions), ["Errors", "Throttles"]) : "${pair[0]}-${lower(pair[1])}" => {
      function = pair[0]
      metric   = pair[1]
    }
  }

  # The connections table's global secondary indexes (dynamodb.tf): a GSI's throttles are reported under
  # TableName + GlobalSecondaryIndexName only, so the table alarms would never see them.
  table_indexes    = ["room_id-index", "user_id-index"]
  throttle_metrics = { read-throttles = "ReadThrottleEvents", write-throttles = "WriteThrottleEvents" }
  dynamodb_alarms = merge(
    { for key, metric in local.throttle_metrics : key => { metric = metric, index = null } },
    {
      for pair in setproduct(local.table_indexes, keys(local.throttle_metrics)) : "${pair[0]}-${pair[1]}" => {
        metric = local.throttle_metrics[pair[1]]
        index  = pair[0]
      }
    },
  )
}

resource "aws_cloudwatch_metric_alarm" "api" {
  for_each = local.api_alarms

  alarm_name          = "${var.name}-${var.stage_name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/ApiGateway"
  metric_name         = each.value.metric
  dimensions          = local.api_dimensions
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.function_error_alarms

  alarm_name          = "${var.name}-${var.stage_name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = var.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = { service = var.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "api_integration_latency" {
  alarm_name          = "${var.name}-${var.stage_name}-integration-latency-p99"
  alarm_description   = "p99 integration latency above ${var.alarm_integration_latency_p99_ms} ms for 15 minutes."
  namespace           = "AWS/ApiGateway"
  metric_name         = "IntegrationLatency"
  dimensions          = local.api_dimensions
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_integration_latency_p99_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda" {
  for_each = local.lambda_alarms

  alarm_name          = "${local.function_names[each.value.function]}-${lower(each.value.metric)}"
  alarm_description   = "${each.value.metric} of ${local.function_names[each.value.function]}."
  namespace           = "AWS/Lambda"
  metric_name         = each.value.metric
  dimensions          = { FunctionName = aws_lambda_function.this[each.value.function].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "dynamodb" {
  for_each = local.dynamodb_alarms

  alarm_name        = "${aws_dynamodb_table.connections.name}-${each.key}"
  alarm_description = each.value.index == null ? "${each.value.metric} on the connections table." : "${each.value.metric} on the ${each.value.index} index of the connections table."
  namespace         = "AWS/DynamoDB"
  metric_name       = each.value.metric
  dimensions = merge(
    { TableName = aws_dynamodb_table.connections.name },
    each.value.index == null ? {} : { GlobalSecondaryIndexName = each.value.index },
  )
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

# The messages table has no index: its read and write throttles are the two alarms it needs.
resource "aws_cloudwatch_metric_alarm" "messages_dynamodb" {
  for_each = local.throttle_metrics

  alarm_name          = "${aws_dynamodb_table.messages.name}-${each.key}"
  alarm_description   = "${each.value} on the messages table (sends fail with internal, history pages too)."
  namespace           = "AWS/DynamoDB"
  metric_name         = each.value
  dimensions          = { TableName = aws_dynamodb_table.messages.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

# The memberships table has no index either (a room is its partition; a connection's rooms are on its record).
resource "aws_cloudwatch_metric_alarm" "memberships_dynamodb" {
  for_each = local.throttle_metrics

  alarm_name          = "${aws_dynamodb_table.memberships.name}-${each.key}"
  alarm_description   = "${each.value} on the memberships table (broadcasts, joins and presence fail with internal)."
  namespace           = "AWS/DynamoDB"
  metric_name         = each.value
  dimensions          = { TableName = aws_dynamodb_table.memberships.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "${var.name}-${var.stage_name}-${local.region}" # dashboards are account-wide
  dashboard_body = jsonencode({
    widgets = [
      {
        type   = "metric"
        x      = 0
        y      = 0
        width  = 12
        height = 6
        properties = {
          title  = "Connections and messages"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            for metric in ["ConnectCount", "MessageCount", "ClientError", "IntegrationError", "ExecutionError"] :
            ["AWS/ApiGateway", metric, "ApiId", aws_apigatewayv2_api.websocket.id, "Stage", var.stage_name]
          ]
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = 0
        width  = 12
        height = 6
        properties = {
          title  = "Integration latency (p50, p99)"
          region = local.region
          period = 60
          metrics = [
            ["AWS/ApiGateway", "IntegrationLatency", "ApiId", aws_apigatewayv2_api.websocket.id, "Stage", var.stage_name, { stat = "p50" }],
            ["AWS/ApiGateway", "IntegrationLatency", "ApiId", aws_apigatewayv2_api.websocket.id, "Stage", var.stage_name, { stat = "p99" }],
          ]
        }
      },
      {
        type   = "metric"
        x      = 0
        y      = 6
        width  = 12
        height = 6
        properties = {
          title  = "Lambda errors and throttles"
          region = local.region
          stat   = "Sum"
          period = 60
          # One metric array per (function, metric): flatten() would merge them into one list of strings.
          metrics = [
            for pair in setproduct(keys(local.functions), ["Errors", "Throttles"]) :
            ["AWS/Lambda", pair[1], "FunctionName", local.function_names[pair[0]]]
          ]
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = 6
        width  = 12
        height = 6
        properties = {
          title   = "Lambda duration (p99)"
          region  = local.region
          stat    = "p99"
          period  = 60
          metrics = [for key in keys(local.functions) : ["AWS/Lambda", "Duration", "FunctionName", local.function_names[key]]]
        }
      },
      {
        type   = "metric"
        x      = 0
        y      = 12
        width  = 24
        height = 6
        properties = {
          title  = "Connections table"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            for metric in ["ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits", "ReadThrottleEvents", "WriteThrottleEvents"] :
            ["AWS/DynamoDB", metric, "TableName", aws_dynamodb_table.connections.name]
          ]
        }
      },
    ]
  })
}

# A shard in the DLQ is a broadcast some members never got (after fanout_max_receive_count receives).
resource "aws_cloudwatch_metric_alarm" "fanout_dlq" {
  alarm_name          = "${aws_sqs_queue.fanout_dlq.name}-depth"
  alarm_description   = "Shard jobs in the fanout dead-letter queue: members of a large room missed a message."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.fanout_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}

# Shards waiting: the mapping's maximum concurrency is too low for the rooms, or fanout keeps failing.
resource "aws_cloudwatch_metric_alarm" "fanout_age" {
  alarm_name          = "${aws_sqs_queue.fanout.name}-oldest-age"
  alarm_description   = "The oldest shard job on the fanout queue is older than ${var.alarm_fanout_age_seconds} s: large rooms get messages late."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.fanout.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_fanout_age_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = local.tags
}
