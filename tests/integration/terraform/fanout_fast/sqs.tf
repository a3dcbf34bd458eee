# Over terraform/: the fanout queue with a visibility timeout of seconds instead of six minutes, so a shard
# whose worker was killed is redelivered within a test. The rest as in terraform/sqs.tf. Lambda refuses a
# mapping whose function timeout is above its queue's visibility timeout (so does the local stack): the test
# (test_fanout_stack.fanout_fast_dirs) lowers fanout's timeout to 16 s in a copy of terraform/functions.tf.
resource "aws_sqs_queue" "fanout" {
  name                       = "${var.name}-fanout"
  visibility_timeout_seconds = 16
  message_retention_seconds  = var.fanout_retention_seconds

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.fanout_dlq.arn
    maxReceiveCount     = var.fanout_max_receive_count
  })
}
