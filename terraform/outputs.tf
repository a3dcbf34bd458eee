output "websocket_url" {
  description = "URL clients connect to: wss://{api}.execute-api.{region}.amazonaws.com/{stage} (add ?token=JWT&room_id=ROOM)."
  value       = "${aws_apigatewayv2_api.websocket.api_endpoint}/${aws_apigatewayv2_stage.this.name}"
}

output "custom_domain_websocket_url" {
  description = "wss://{custom_domain_name}: the stage's URL on the custom domain (null without one)."
  value       = var.custom_domain_name == null ? null : "wss://${aws_apigatewayv2_domain_name.this[0].domain_name}"
}

output "custom_domain_target" {
  description = "Where the custom domain's DNS record must point: an alias (Route 53) or CNAME to target_domain_name; null without a custom domain."
  value = var.custom_domain_name == null ? null : {
    target_domain_name = aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].target_domain_name
    hosted_zone_id     = aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].hosted_zone_id
  }
}

output "callback_url" {
  description = "Management (@connections) API base URL the functions post to (WEBSOCKET_CALLBACK_URL)."
  value       = local.callback_url
}

output "api_id" {
  description = "ID of the WebSocket API."
  value       = aws_apigatewayv2_api.websocket.id
}

output "stage_name" {
  description = "Name of the stage."
  value       = aws_apigatewayv2_stage.this.name
}

output "table_name" {
  description = "Name of the connections table (DYNAMO_TABLE_NAME_CHAT_CONNECTIONS)."
  value       = aws_dynamodb_table.connections.name
}

output "table_arn" {
  description = "ARN of the connections table."
  value       = aws_dynamodb_table.connections.arn
}

output "messages_table_name" {
  description = "Name of the messages table (DYNAMO_TABLE_NAME_CHAT_MESSAGES)."
  value       = aws_dynamodb_table.messages.name
}

output "messages_table_arn" {
  description = "ARN of the messages table."
  value       = aws_dynamodb_table.messages.arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL per function key (make build-push pushes each target here)."
  value       = { for key, repo in aws_ecr_repository.this : key => repo.repository_url }
}

output "function_names" {
  description = "Lambda function name per function key."
  value       = { for key, fn in aws_lambda_function.this : key => fn.function_name }
}

output "function_role_arns" {
  description = "Execution role ARN per function key."
  value       = { for key, role in aws_iam_role.function : key => role.arn }
}

output "kms_key_arn" {
  description = "ARN of the module's customer-managed KMS key."
  value       = aws_kms_key.this.arn
}

output "access_log_group_name" {
  description = "CloudWatch Logs group of the stage's JSON access logs."
  value       = aws_cloudwatch_log_group.access.name
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "publish_function_name" {
  description = "Name of the publish function a backend invokes (aws lambda invoke; docs/fanout.md)."
  value       = aws_lambda_function.this["publish"].function_name
}

output "publish_function_arn" {
  description = "ARN of the publish function: grant a backend lambda:InvokeFunction on it."
  value       = aws_lambda_function.this["publish"].arn
}

output "fanout_queue_url" {
  description = "URL of the fanout shard queue (FANOUT_QUEUE_URL)."
  value       = aws_sqs_queue.fanout.url
}

output "fanout_dlq_url" {
  description = "URL of the fanout dead-letter queue (shards that failed fanout_max_receive_count times)."
  value       = aws_sqs_queue.fanout_dlq.url
}
