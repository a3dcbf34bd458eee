# A queue, its dead-letter queue and an event source mapping to the test consumer t_batch, shaped like the
# module's fan-out queue; the values are small so redelivery and dead-lettering happen within a test.
variable "event_log_dir" {
  type    = string
  default = ""
}

variable "jobs_batch_size" {
  type    = number
  default = 10
}

variable "jobs_max_concurrency" {
  type    = number
  default = 2
}

variable "jobs_visibility_timeout" {
  type    = number
  default = 2
}

variable "jobs_max_receive_count" {
  type    = number
  default = 2
}

locals {
  common_env = {
    EVENT_LOG_DIR = var.event_log_dir
  }

  functions = {
    t_batch = {
      route_key      = "t_batch"
      timeout        = 2 # at most the queue's visibility timeout, as Lambda requires of a mapping
      memory_size    = 128
      route_response = false
      environment = {
        JOBS_QUEUE_URL = aws_sqs_queue.jobs.url
      }
    }
  }
}

resource "aws_sqs_queue" "jobs_dlq" {
  name                      = "${var.name}-jobs-dlq"
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue" "jobs" {
  name                       = "${var.name}-jobs"
  visibility_timeout_seconds = var.jobs_visibility_timeout
  message_retention_seconds  = 3600
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.jobs_dlq.arn
    maxReceiveCount     = var.jobs_max_receive_count
  })
}

resource "aws_lambda_event_source_mapping" "jobs" {
  event_source_arn        = aws_sqs_queue.jobs.arn
  function_name           = aws_lambda_function.this["t_batch"].arn
  batch_size              = var.jobs_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.jobs_max_concurrency
  }
}
