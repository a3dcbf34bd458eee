# Sharded fan-out (docs/fanout.md): a broadcast to a room past fanout_shard_size connections is cut into
# shard jobs on this queue, and the fanout function posts each one. The event source mapping's maximum
# concurrency caps how many shards are posted at once, so the posts stay inside API Gateway's account-wide
# 10,000 requests a second (the precondition below).
locals {
  # Posts a second at the mapping's ceiling, at 20 ms a post (the management API's usual latency).
  fanout_posts_per_second = var.fanout_max_concurrency * var.broadcast_concurrency * 50
  # Seconds one fanout invocation needs for its batch at that latency (0.02 s a post): its shards one after
  # another, each in rounds of broadcast_concurrency posts. The precondition keeps it within half of
  # fanout's timeout, for retries (429/5xx back off) and slower posts.
  fanout_batch_seconds = var.fanout_batch_size * var.fanout_shard_size * 0.02 / var.broadcast_concurrency
}

resource "aws_sqs_queue" "fanout_dlq" {
  name                              = "${var.name}-fanout-dlq"
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600 # 14 days, SQS's most: time to look at a shard that failed

  tags = local.tags
}

resource "aws_sqs_queue" "fanout" {
  name                              = "${var.name}-fanout"
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 300
  # Six times the fanout function's timeout (60 s, functions.tf), as AWS advises: a shard in flight is never
  # handed to a second worker while the first may still be posting it. A literal, since local.functions
  # refers to this queue (tests/iac checks the ratio).
  visibility_timeout_seconds = 360
  message_retention_seconds  = var.fanout_retention_seconds

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.fanout_dlq.arn
    maxReceiveCount     = var.fanout_max_receive_count
  })

  tags = local.tags
}

# Only the shard queue may move messages into the DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "fanout_dlq" {
  queue_url = aws_sqs_queue.fanout_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.fanout.arn]
  })
}

resource "aws_lambda_event_source_mapping" "fanout" {
  event_source_arn        = aws_sqs_queue.fanout.arn
  function_name           = aws_lambda_function.this["fanout"].arn
  batch_size              = var.fanout_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.fanout_max_concurrency
  }

  tags = local.tags

  # The poller receives with the function's role: its policy must be in place first.
  depends_on = [aws_iam_role_policy.function]

  lifecycle {
    precondition {
      condition     = local.fanout_posts_per_second <= 10000
      error_message = "fanout_max_concurrency × broadcast_concurrency posts in flight at 20 ms each exceed API Gateway's account limit of 10,000 requests a second (shared with every API of the account): lower one of them."
    }
    precondition {
      condition     = local.fanout_batch_seconds <= local.functions.fanout.timeout / 2
      error_message = "fanout_batch_size × fanout_shard_size posts, broadcast_concurrency at a time at 20 ms each, take more than half of the fanout function's timeout: a batch could not finish in one invocation. Lower fanout_batch_size or fanout_shard_size, or raise broadcast_concurrency."
    }
  }
}
