# Created before the functions (logging_config references them) so Lambda never creates an unencrypted,
# never-expiring group of its own.
resource "aws_cloudwatch_log_group" "function" {
  for_each = local.functions

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn

  tags = local.tags
}

resource "aws_lambda_function" "this" {
  for_each = local.functions
  #checkov:skip=CKV_AWS_272:Code signing applies to zip packages; image functions are pinned by ECR digest instead.
  #checkov:skip=CKV_AWS_116:API Gateway invokes the functions synchronously; a DLQ only serves asynchronous invokes.
  #checkov:skip=CKV_AWS_117:The functions reach only public AWS endpoints (DynamoDB, API Gateway); there is nothing private to put them next to.

  function_name = local.function_names[each.key]
  description   = each.value.description
  role          = aws_iam_role.function[each.key].arn

  package_type  = "Image"
  image_uri     = "${aws_ecr_repository.this[each.key].repository_url}@${lookup(var.image_digests, each.key, "")}"
  architectures = [var.architecture]

  timeout                        = each.value.timeout
  memory_size                    = each.value.memory_size
  reserved_concurrent_executions = lookup(var.reserved_concurrency, each.key, -1)

  kms_key_arn = aws_kms_key.this.arn

  environment {
    variables = local.function_env[each.key]
  }

  tracing_config {
    mode = "Active"
  }

  # Powertools writes structured JSON itself; Text keeps its lines as they are.
  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  tags = local.tags

  # The role's policy must exist before the first invocation can log or reach DynamoDB.
  depends_on = [aws_iam_role_policy.function]

  lifecycle {
    precondition {
      condition     = can(regex("^sha256:[0-9a-f]{64}$", lookup(var.image_digests, each.key, "")))
      error_message = "No image digest for function \"${each.key}\": run `make build-push` (it writes terraform/image-digests.auto.tfvars.json) or `make deploy`."
    }

    precondition {
      condition     = !contains(keys(each.value.environment), "JWT_ALGORITHMS") || ((var.jwt_secret_arn == null) != (var.jwt_jwks_url == null))
      error_message = "Set exactly one of jwt_secret_arn (HS256 secret in Secrets Manager) and jwt_jwks_url (RS256/ES256 identity provider)."
    }

    precondition {
      condition = !contains(keys(each.value.environment), "JWT_ALGORITHMS") || alltrue([
        for alg in var.jwt_algorithms : startswith(alg, "HS") == (var.jwt_secret_arn != null)
      ])
      error_message = "jwt_algorithms must be HS* with jwt_secret_arn and RS*/ES* with jwt_jwks_url."
    }

    # An identity provider signs every application's tokens with the same keys.
    precondition {
      condition     = !contains(keys(each.value.environment), "JWT_ALGORITHMS") || var.jwt_jwks_url == null || var.jwt_allow_any_issuer_audience_unsafe || (var.jwt_issuer != null && var.jwt_audience != null)
      error_message = "With jwt_jwks_url, set jwt_issuer and jwt_audience: otherwise any token the identity provider issued to any other application connects. (jwt_allow_any_issuer_audience_unsafe = true accepts that.)"
    }
  }
}
