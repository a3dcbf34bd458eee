################################################################################
# General
################################################################################

variable "name" {
  description = "Name prefix of every resource (API, table, functions, repositories, roles, alarms)."
  type        = string
  default     = "ws-chat"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "stage_name" {
  description = "API Gateway stage name: clients connect to wss://{api}/{stage_name}."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", var.stage_name))
    error_message = "stage_name may contain only letters, digits, hyphens and underscores (1-128 characters)."
  }
}

variable "tags" {
  description = "Tags added to every resource that supports them."
  type        = map(string)
  default     = {}
}

################################################################################
# Lambda
################################################################################

variable "image_digests" {
  description = "Image digest (sha256:...) per function key of local.functions, written by `make build-push` to image-digests.auto.tfvars.json. Functions are deployed by digest, never by tag."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for digest in values(var.image_digests) : can(regex("^sha256:[0-9a-f]{64}$", digest))])
    error_message = "Every image digest must look like sha256:<64 hex digits>."
  }
}

variable "architecture" {
  description = "Instruction set of the images and functions: x86_64 (docker --platform linux/amd64) or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions per function key; functions not listed are unreserved (-1). New accounts have too little concurrency to reserve any, hence the empty default."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for value in values(var.reserved_concurrency) : value == -1 || (value >= 0 && floor(value) == value)])
    error_message = "Reserved concurrency values must be whole numbers >= 0, or -1 for unreserved."
  }
}

variable "log_level" {
  description = "POWERTOOLS_LOG_LEVEL of every function."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the functions' EMF metrics (POWERTOOLS_METRICS_NAMESPACE)."
  type        = string
  default     = "WsChat"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 characters of letters, digits and . _ / # : - and must not start with AWS/."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's log groups, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

variable "max_message_bytes" {
  description = "Largest chat message in UTF-8 bytes (MAX_MESSAGE_BYTES of send_message). API Gateway's frame limit is 32 KB."
  type        = number
  default     = 4096

  validation {
    condition     = var.max_message_bytes >= 1 && var.max_message_bytes <= 32768 && floor(var.max_message_bytes) == var.max_message_bytes
    error_message = "max_message_bytes must be a whole number between 1 and 32768."
  }
}

variable "max_rooms_per_connection" {
  description = "Rooms one connection may be in at once (MAX_ROOMS_PER_CONNECTION of join); more is refused with too_many_rooms."
  type        = number
  default     = 50

  validation {
    condition     = var.max_rooms_per_connection >= 1 && var.max_rooms_per_connection <= 1000 && floor(var.max_rooms_per_connection) == var.max_rooms_per_connection
    error_message = "max_rooms_per_connection must be a whole number between 1 and 1000."
  }
}

variable "broadcast_concurrency" {
  description = "Concurrent PostToConnection calls per broadcast (BROADCAST_CONCURRENCY of send_message)."
  type        = number
  default     = 32

  validation {
    condition     = var.broadcast_concurrency >= 1 && var.broadcast_concurrency <= 200 && floor(var.broadcast_concurrency) == var.broadcast_concurrency
    error_message = "broadcast_concurrency must be a whole number between 1 and 200 (200 posts in flight at 20 ms each reach the account's 10,000 RPS throttle)."
  }
}

################################################################################
# Tokens (docs/auth.md): a Secrets Manager HS256 secret or a JWKS URL
################################################################################

variable "jwt_secret_arn" {
  description = "ARN of a Secrets Manager secret whose SecretString is the HS256 key (JWT_SECRET_ARN). Set this or jwt_jwks_url."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.jwt_secret_arn))
    error_message = "jwt_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "jwt_secret_kms_key_arn" {
  description = "ARN of the customer-managed KMS key encrypting jwt_secret_arn, if any: the connect function gets kms:Decrypt on it."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_secret_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.jwt_secret_kms_key_arn))
    error_message = "jwt_secret_kms_key_arn must be a KMS key ARN (arn:aws:kms:region:account:key/id)."
  }
}

variable "jwt_jwks_url" {
  description = "HTTPS URL of the identity provider's JWKS (RS256/ES256 tokens, e.g. Cognito or Auth0): JWT_JWKS_URL. Set this or jwt_secret_arn."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_jwks_url == null || can(regex("^https://[^\\s]+$", var.jwt_jwks_url))
    error_message = "jwt_jwks_url must be an https:// URL."
  }
}

variable "jwt_algorithms" {
  description = "Accepted JWT algorithms (JWT_ALGORITHMS), pinned here and never taken from the token: HS* with jwt_secret_arn, RS*/ES* with jwt_jwks_url."
  type        = list(string)
  default     = ["HS256"]

  validation {
    condition     = length(var.jwt_algorithms) > 0 && alltrue([for alg in var.jwt_algorithms : contains(["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"], alg)])
    error_message = "jwt_algorithms must be a non-empty list of HS256/384/512, RS256/384/512, ES256/384/512 (never none)."
  }
}

variable "jwt_issuer" {
  description = "Required iss claim (JWT_ISSUER), e.g. https://cognito-idp.{region}.amazonaws.com/{pool id} or https://{tenant}/ for Auth0. Required with jwt_jwks_url; with jwt_secret_arn, null accepts any issuer."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_issuer == null || can(regex("\\S", var.jwt_issuer))
    error_message = "jwt_issuer must be null or a non-empty issuer (the token's iss claim, exactly)."
  }
}

variable "jwt_audience" {
  description = "Required audience (JWT_AUDIENCE): the aud claim, or the client_id of a Cognito access token (token_use = access, no aud). Required with jwt_jwks_url; with jwt_secret_arn, null accepts any audience."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_audience == null || can(regex("\\S", var.jwt_audience))
    error_message = "jwt_audience must be null or a non-empty audience (Cognito: the app client id; Auth0: the API identifier)."
  }
}

variable "jwt_allow_any_issuer_audience_unsafe" {
  description = "UNSAFE: with jwt_jwks_url, accept tokens of any issuer and audience when jwt_issuer / jwt_audience are null, so any token the identity provider issued to any other application connects (JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE). Leave false."
  type        = bool
  default     = false
}

################################################################################
# API Gateway
################################################################################

variable "throttling_rate_limit" {
  description = "Default route steady-state rate limit of the stage (requests per second)."
  type        = number
  default     = 500

  validation {
    condition     = var.throttling_rate_limit > 0 && var.throttling_rate_limit <= 10000
    error_message = "throttling_rate_limit must be greater than 0 and at most 10000 (the account limit)."
  }
}

variable "throttling_burst_limit" {
  description = "Default route burst limit of the stage (requests)."
  type        = number
  default     = 1000

  validation {
    condition     = var.throttling_burst_limit > 0 && var.throttling_burst_limit <= 5000 && floor(var.throttling_burst_limit) == var.throttling_burst_limit
    error_message = "throttling_burst_limit must be a whole number between 1 and 5000 (the account limit)."
  }
}

variable "execution_logging_level" {
  description = "Stage execution logging (OFF, ERROR or INFO). Anything but OFF needs the region's API Gateway CloudWatch role: set create_api_gateway_account_role or configure it elsewhere."
  type        = string
  default     = "OFF"

  validation {
    condition     = contains(["OFF", "ERROR", "INFO"], var.execution_logging_level)
    error_message = "execution_logging_level must be OFF, ERROR or INFO."
  }
}

variable "create_api_gateway_account_role" {
  description = "Create the IAM role API Gateway pushes execution logs with and set it on the region-wide aws_api_gateway_account (one per account and region: opt in only if nothing else manages it)."
  type        = bool
  default     = false
}

variable "custom_domain_name" {
  description = "Optional custom domain for the WebSocket API (e.g. chat.example.com): clients then connect to wss://{custom_domain_name}. Needs custom_domain_certificate_arn; point a DNS record at the custom_domain_target output."
  type        = string
  default     = null

  validation {
    condition     = var.custom_domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.custom_domain_name))
    error_message = "custom_domain_name must be a lower-case DNS name such as chat.example.com."
  }
}

variable "custom_domain_certificate_arn" {
  description = "ARN of an issued ACM certificate covering custom_domain_name, in the same region as the API (a regional endpoint)."
  type        = string
  default     = null

  validation {
    condition     = var.custom_domain_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.custom_domain_certificate_arn))
    error_message = "custom_domain_certificate_arn must be an ACM certificate ARN (arn:aws:acm:region:account:certificate/id)."
  }
}

variable "api_gateway_cloudwatch_role_configured" {
  description = "The region's API Gateway account settings already name a CloudWatch Logs role (set outside this module). Turns on the stage's access logs without create_api_gateway_account_role; leave false in a new account, where API Gateway refuses to log."
  type        = bool
  default     = false
}

################################################################################
# Data, keys, images
################################################################################

variable "deletion_protection" {
  description = "Protect the connections and messages tables from deletion. Turn off only to destroy the stack."
  type        = bool
  default     = true
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before the module's KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30
    error_message = "kms_deletion_window_in_days must be between 7 and 30."
  }
}

variable "ecr_keep_images" {
  description = "Images kept per ECR repository (older ones expire). Keep enough to roll back."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number between 1 and 1000."
  }
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete ECR repositories that still hold images."
  type        = bool
  default     = false
}

################################################################################
# Alarms
################################################################################

variable "alarm_topic_arn" {
  description = "SNS topic ARN every alarm notifies (alarm and OK). null creates the alarms without actions."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN."
  }
}

variable "alarm_client_error_threshold" {
  description = "ClientError count per 5 minutes (4xx: rejected handshakes, throttling) that raises the client error spike alarm."
  type        = number
  default     = 100

  validation {
    condition     = var.alarm_client_error_threshold >= 1
    error_message = "alarm_client_error_threshold must be at least 1."
  }
}

variable "alarm_integration_latency_p99_ms" {
  description = "p99 IntegrationLatency in milliseconds that raises the latency alarm."
  type        = number
  default     = 2000

  validation {
    condition     = var.alarm_integration_latency_p99_ms >= 1 && var.alarm_integration_latency_p99_ms <= 29000
    error_message = "alarm_integration_latency_p99_ms must be between 1 and 29000 (the integration timeout)."
  }
}

variable "rate_limit_per_second" {
  description = "Frames a second one user may send, all their connections together (token bucket refill rate); 0 turns the per-user limit off."
  type        = number
  default     = 10

  validation {
    condition     = var.rate_limit_per_second >= 0 && var.rate_limit_per_second <= 10000
    error_message = "rate_limit_per_second must be between 0 and 10000."
  }
}

variable "rate_limit_burst" {
  description = "Frames one user may send at once before the per-second limit applies (token bucket size)."
  type        = number
  default     = 20

  validation {
    condition     = var.rate_limit_burst >= 1 && var.rate_limit_burst == floor(var.rate_limit_burst)
    error_message = "rate_limit_burst must be a whole number of at least 1."
  }
}

variable "message_retention_days" {
  description = "Days a chat message is kept (MESSAGE_RETENTION_DAYS): history and resume reach this far back; DynamoDB's TTL deletes older messages."
  type        = number
  default     = 7

  validation {
    condition     = var.message_retention_days >= 1 && var.message_retention_days <= 3650 && floor(var.message_retention_days) == var.message_retention_days
    error_message = "message_retention_days must be a whole number of days between 1 and 3650."
  }
}

################################################################################
# Sharded fan-out (docs/fanout.md)
################################################################################

variable "fanout_shard_size" {
  description = "FANOUT_SHARD_SIZE: a broadcast to more live connections than this is cut into shard jobs of at most this many on the fanout queue (posted by the fanout function); up to it, the function posts itself. Measured (make bench shards): with warm fanout workers sharding pays from about 400; on AWS a fanout cold start and the mapping's polling (about 0.6 s together) move the break-even near 2,000, which one invocation posts in about 1.25 s (pool 32, 20 ms a post)."
  type        = number
  default     = 2000

  validation {
    condition     = var.fanout_shard_size >= 1 && var.fanout_shard_size <= 20000 && floor(var.fanout_shard_size) == var.fanout_shard_size
    error_message = "fanout_shard_size must be a whole number between 1 and 20000 (a shard must fit one fanout invocation and SQS's 256 KB)."
  }
}

variable "fanout_batch_size" {
  description = "Shard jobs per fanout invocation (the event source mapping's batch_size). A batch's shards are posted one after another, so 1 spreads a room's shards over the most invocations at once. The plan refuses fanout_batch_size × fanout_shard_size × 0.02 s / broadcast_concurrency (a batch's posts at 20 ms each) above half of fanout's 60 s timeout."
  type        = number
  default     = 1

  validation {
    condition     = var.fanout_batch_size >= 1 && var.fanout_batch_size <= 10 && floor(var.fanout_batch_size) == var.fanout_batch_size
    error_message = "fanout_batch_size must be a whole number between 1 and 10 (SQS's most without a batching window)."
  }
}

variable "fanout_max_concurrency" {
  description = "Most fanout invocations at once (the mapping's scaling_config.maximum_concurrency). Each holds broadcast_concurrency posts in flight: 4 × 32 at 20 ms a post is 6,400 requests a second, inside API Gateway's account limit of 10,000 shared with every API (the plan refuses more than 10,000)."
  type        = number
  default     = 4

  validation {
    condition     = var.fanout_max_concurrency >= 2 && var.fanout_max_concurrency <= 1000 && floor(var.fanout_max_concurrency) == var.fanout_max_concurrency
    error_message = "fanout_max_concurrency must be a whole number between 2 and 1000 (Lambda's limits for an SQS mapping)."
  }
}

variable "fanout_max_receive_count" {
  description = "Receives of a shard job before SQS moves it to the dead-letter queue (the redrive policy's maxReceiveCount)."
  type        = number
  default     = 5

  validation {
    condition     = var.fanout_max_receive_count >= 1 && var.fanout_max_receive_count <= 1000 && floor(var.fanout_max_receive_count) == var.fanout_max_receive_count
    error_message = "fanout_max_receive_count must be a whole number between 1 and 1000."
  }
}

variable "fanout_retention_seconds" {
  description = "How long a shard job may wait on the fanout queue (message_retention_seconds). A chat message older than this is no longer worth delivering live; clients resume from history."
  type        = number
  default     = 3600

  validation {
    condition     = var.fanout_retention_seconds >= 60 && var.fanout_retention_seconds <= 1209600 && floor(var.fanout_retention_seconds) == var.fanout_retention_seconds
    error_message = "fanout_retention_seconds must be a whole number of seconds between 60 and 1209600 (14 days)."
  }
}

variable "alarm_fanout_age_seconds" {
  description = "Age in seconds of the oldest shard job on the fanout queue (ApproximateAgeOfOldestMessage) that raises the fanout backlog alarm."
  type        = number
  default     = 60

  validation {
    condition     = var.alarm_fanout_age_seconds >= 1 && floor(var.alarm_fanout_age_seconds) == var.alarm_fanout_age_seconds
    error_message = "alarm_fanout_age_seconds must be a whole number of at least 1."
  }
}
