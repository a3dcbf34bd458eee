output "websocket_url" {
  description = "wss:// URL clients connect to."
  value       = module.chat.websocket_url
}

output "callback_url" {
  description = "Management API base URL."
  value       = module.chat.callback_url
}

output "table_name" {
  description = "Connections table."
  value       = module.chat.table_name
}

output "ecr_repository_urls" {
  description = "ECR repository per function."
  value       = module.chat.ecr_repository_urls
}

output "function_names" {
  description = "Lambda function per function key."
  value       = module.chat.function_names
}

output "jwt_secret_arn" {
  description = "Secret holding the HS256 key tokens must be signed with."
  value       = aws_secretsmanager_secret.jwt.arn
}
