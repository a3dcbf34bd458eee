provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "ws-chat-backend"
      Example = "complete"
    }
  }
}

# HS256 signing key, kept in Secrets Manager: the connect function reads it (JWT_SECRET_ARN); your token
# issuer signs with the same value.
resource "random_password" "jwt" {
  length  = 64
  special = false
}

resource "aws_kms_key" "secrets" {
  description             = "${var.name}: JWT signing secret and alarm topic"
  deletion_window_in_days = 7
  enable_key_rotation     = true

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersTheKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
    ]
  })
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

resource "aws_secretsmanager_secret" "jwt" {
  #checkov:skip=CKV2_AWS_57:An HS256 key shared with the token issuer is rotated by re-issuing tokens, not by a rotation Lambda.
  name_prefix = "${var.name}-jwt-"
  description = "HS256 key the chat's tokens are signed with"
  kms_key_id  = aws_kms_key.secrets.arn
}

resource "aws_secretsmanager_secret_version" "jwt" {
  secret_id     = aws_secretsmanager_secret.jwt.id
  secret_string = random_password.jwt.result
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.secrets.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

module "chat" {
  source = "../../"

  name          = var.name
  stage_name    = var.stage_name
  image_digests = var.image_digests
  architecture  = var.architecture

  jwt_secret_arn         = aws_secretsmanager_secret.jwt.arn
  jwt_secret_kms_key_arn = aws_kms_key.secrets.arn
  jwt_algorithms         = ["HS256"]
  jwt_issuer             = "https://auth.example.com/"
  jwt_audience           = "ws-chat"

  # No reserved_concurrency: a reservation must leave the account 100 unreserved executions, and a new
  # account often has 10 in all (see terraform/README.md, "Reserved concurrency").
  throttling_rate_limit  = 200
  throttling_burst_limit = 400

  alarm_topic_arn = aws_sns_topic.alarms.arn

  # An example is torn down again; keep protection on for anything real. Variables, so that `make destroy`
  # (-var deletion_protection=false -var ecr_force_delete=true) works here as on the module.
  deletion_protection = var.deletion_protection
  ecr_force_delete    = var.ecr_force_delete

  tags = {
    Owner = "platform-team"
  }
}
