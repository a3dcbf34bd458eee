# Only key attributes are declared: ttl, created_at and the rest are schemaless. The room index projects
# ttl so readers can skip records DynamoDB has not expired yet (docs/protocol.md section 5).
resource "aws_dynamodb_table" "connections" {
  name                        = "${var.name}-connections"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "connection_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "connection_id"
    type = "S"
  }

  attribute {
    name = "room_id"
    type = "S"
  }

  attribute {
    name = "user_id"
    type = "S"
  }

  global_secondary_index {
    name               = "room_id-index"
    hash_key           = "room_id"
    projection_type    = "INCLUDE"
    non_key_attributes = ["ttl", "user_id"]
  }

  global_secondary_index {
    name               = "user_id-index"
    hash_key           = "user_id"
    projection_type    = "INCLUDE"
    non_key_attributes = ["ttl", "room_id"]
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = local.tags
}

# Chat messages, kept var.message_retention_days by TTL. Besides each room's messages (room_id, ULID) it
# keeps two key spaces no room can produce, because room ids never contain "#": ("client#<user>",
# client_msg_id) — which message a client's id became — and ("rate#<user>", "bucket"), the rate limit.
resource "aws_dynamodb_table" "messages" {
  name                        = "${var.name}-messages"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "room_id"
  range_key                   = "message_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "room_id"
    type = "S"
  }

  attribute {
    name = "message_id"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = local.tags
}

# Room memberships and presence (docs/rooms.md). (room_id, "<user_id>#<connection_id>"): one connection in
# one room, read by a broadcast with one paginated Query of the room's partition. ("presence#<room>",
# user_id): the set of that user's connections in the room, whose first and last element are the user's
# online and offline. Which rooms a connection is in is kept on its connection record, so $disconnect and
# a 410 remove memberships by exact key without an index.
resource "aws_dynamodb_table" "memberships" {
  name                        = "${var.name}-memberships"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "room_id"
  range_key                   = "member"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "room_id"
    type = "S"
  }

  attribute {
    name = "member"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = local.tags
}
