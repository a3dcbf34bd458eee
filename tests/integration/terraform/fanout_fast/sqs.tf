# Over terraform/: the fanout queue's visibility timeout (six times the function's timeout, 6 minutes)
# down to seconds, so a shard whose worker was killed is redelivered within a test.
locals {
  fanout_visibility_timeout = 8
}
