# The one map of functions. It drives ECR repositories, Lambda functions, IAM, integrations, routes and
# permissions (for_each), and the local stack reads it too (python-hcl2): add a route here and both follow.
#
# dynamodb_actions maps a table (a key of local.dynamodb_tables, iam.tf) to the actions the function calls
# on it; dynamodb_indexes maps a table to the indexes its Query may read (none listed: the table itself).
#
# route_key = null: the function has no route (fanout is invoked by its SQS event source mapping, publish by
# a backend with lambda:InvokeFunction); apigateway.tf leaves those out. queue_actions (absent: none) are
# the actions the function calls on the fanout queue (sqs.tf).
#
# Each function's environment is merge(local.common_env, environment): together, every variable its code
# reads. Values are AWS values; the local stack keeps the names and substitutes local values. Keep both
# maps plain object literals (no merge/conditionals inside) so they stay readable without evaluation.
locals {
  common_env = {
    POWERTOOLS_SERVICE_NAME      = var.name
    POWERTOOLS_METRICS_NAMESPACE = var.metrics_namespace
    POWERTOOLS_LOG_LEVEL         = var.log_level
  }

  functions = {
    connect = {
      route_key   = "$connect"
      description = "Verifies the JWT, stores the connection in its first room, announces presence"
      timeout     = 10
      memory_size = 256
      dynamodb_actions = {
        connections = ["dynamodb:PutItem", "dynamodb:DeleteItem"]
        memberships = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:DeleteItem"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      queue_actions      = ["sqs:SendMessage"] # presence past the shard size, as shard jobs
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS   = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS   = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL               = local.callback_url
        MAX_MESSAGE_BYTES                    = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY                = tostring(var.broadcast_concurrency)
        JWT_SECRET_ARN                       = var.jwt_secret_arn
        JWT_JWKS_URL                         = var.jwt_jwks_url
        JWT_ALGORITHMS                       = join(",", var.jwt_algorithms)
        JWT_ISSUER                           = var.jwt_issuer
        JWT_AUDIENCE                         = var.jwt_audience
        JWT_ALLOW_ANY_ISSUER_AUDIENCE_UNSAFE = tostring(var.jwt_allow_any_issuer_audience_unsafe)
        FANOUT_QUEUE_URL                     = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                    = tostring(var.fanout_shard_size)
      }
    }
    disconnect = {
      route_key   = "$disconnect"
      description = "Deletes the connection record and its memberships, announces presence"
      timeout     = 10
      memory_size = 256
      dynamodb_actions = {
        connections = ["dynamodb:DeleteItem"]
        memberships = ["dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:Query"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      queue_actions      = ["sqs:SendMessage"] # presence past the shard size, as shard jobs
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        FANOUT_QUEUE_URL                   = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size)
      }
    }
    send_message = {
      route_key   = "sendMessage"
      description = "Stores a message, acknowledges it and broadcasts it to one of the sender's rooms"
      timeout     = 29
      memory_size = 1024 # 0.58 vCPU: see terraform/README.md, "Memory size"
      dynamodb_actions = {
        connections = ["dynamodb:GetItem", "dynamodb:DeleteItem"]
        # TransactWriteItems is authorised as a PutItem per item; GetItem reads a repeated client_msg_id.
        messages    = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"]
        memberships = ["dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:UpdateItem"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      queue_actions      = ["sqs:SendMessage"]
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        MESSAGE_RETENTION_DAYS             = tostring(var.message_retention_days)
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
        FANOUT_QUEUE_URL                   = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size)
      }
    }
    get_history = {
      route_key   = "getHistory"
      description = "Answers one page of a room's or a direct conversation's stored messages"
      timeout     = 10
      memory_size = 256
      dynamodb_actions = {
        connections = ["dynamodb:GetItem"]
        messages    = ["dynamodb:Query", "dynamodb:UpdateItem"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        MESSAGE_RETENTION_DAYS             = tostring(var.message_retention_days)
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
      }
    }
    join = {
      route_key   = "join"
      description = "Joins a room (checked like a connect) and announces the user's presence there"
      timeout     = 29
      memory_size = 512
      dynamodb_actions = {
        connections = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
        messages    = ["dynamodb:UpdateItem"] # the rate-limit bucket only
        memberships = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:DeleteItem"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      queue_actions      = ["sqs:SendMessage"] # presence past the shard size, as shard jobs
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        MAX_ROOMS_PER_CONNECTION           = tostring(var.max_rooms_per_connection)
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
        FANOUT_QUEUE_URL                   = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size)
      }
    }
    leave = {
      route_key   = "leave"
      description = "Leaves a room and announces the user offline there after their last connection"
      timeout     = 29
      memory_size = 512
      dynamodb_actions = {
        connections = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
        messages    = ["dynamodb:UpdateItem"] # the rate-limit bucket only
        memberships = ["dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:Query"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      queue_actions      = ["sqs:SendMessage"] # presence past the shard size, as shard jobs
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
        FANOUT_QUEUE_URL                   = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size)
      }
    }
    list_members = {
      route_key   = "listMembers"
      description = "Answers the distinct users present in one of the connection's rooms"
      timeout     = 10
      memory_size = 256
      dynamodb_actions = {
        connections = ["dynamodb:GetItem"]
        messages    = ["dynamodb:UpdateItem"] # the rate-limit bucket only
        memberships = ["dynamodb:Query"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
      }
    }
    typing = {
      route_key   = "typing"
      description = "Tells a room's other users that one is typing (not stored; one per 2 s per connection and room)"
      timeout     = 29
      memory_size = 512
      dynamodb_actions = {
        connections = ["dynamodb:GetItem", "dynamodb:DeleteItem"]
        messages    = ["dynamodb:UpdateItem"] # the rate-limit bucket only
        memberships = ["dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:DeleteItem"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size) # no typing past it
      }
    }
    send_direct = {
      route_key   = "sendDirect"
      description = "Stores a direct message, acknowledges it, delivers it to both users' connections"
      timeout     = 29
      memory_size = 512
      dynamodb_actions = {
        connections = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"]
        # TransactWriteItems is authorised as a PutItem per item; GetItem reads a repeated client_msg_id.
        messages    = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"]
        memberships = ["dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:Query"]
      }
      dynamodb_indexes   = { connections = ["user_id-index"] }
      manage_connections = true
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        MESSAGE_RETENTION_DAYS             = tostring(var.message_retention_days)
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
      }
    }
    default = {
      route_key   = "$default"
      description = "Answers frames no route takes with an error frame, within the sender's rate limit"
      timeout     = 10
      memory_size = 256
      dynamodb_actions = {
        connections = ["dynamodb:GetItem"]
        messages    = ["dynamodb:UpdateItem"] # the rate-limit bucket only
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        RATE_LIMIT_PER_SECOND              = tostring(var.rate_limit_per_second)
        RATE_LIMIT_BURST                   = tostring(var.rate_limit_burst)
      }
    }
    fanout = {
      route_key   = null # its SQS event source mapping invokes it (sqs.tf)
      description = "Posts the shards of a large room's broadcast from the fanout queue"
      timeout     = 60
      memory_size = 1024 # like send_message: posting is CPU-bound
      dynamodb_actions = {
        connections = ["dynamodb:DeleteItem"]
        memberships = ["dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:UpdateItem"]
      }
      dynamodb_indexes   = {}
      manage_connections = true
      route_response     = false
      # Receive, Delete and GetQueueAttributes are the mapping's (with this role); ChangeMessageVisibility
      # is the function's own, to bring a failed shard back sooner than the visibility timeout; SendMessage
      # queues the offline presence a 410 causes in a room past the shard size.
      queue_actions = [
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
      ]
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        FANOUT_QUEUE_URL                   = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size)
      }
    }
    publish = {
      route_key   = null # a backend invokes it directly with IAM (lambda:InvokeFunction): docs/fanout.md
      description = "Stores and fans out a message from a backend (system sender) to a room or a user"
      timeout     = 29
      memory_size = 1024
      dynamodb_actions = {
        connections = ["dynamodb:Query", "dynamodb:DeleteItem"]
        # TransactWriteItems is authorised as a PutItem per item; GetItem reads a repeated client_msg_id.
        messages    = ["dynamodb:PutItem", "dynamodb:GetItem"]
        memberships = ["dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:UpdateItem"]
      }
      dynamodb_indexes   = { connections = ["user_id-index"] }
      manage_connections = true
      route_response     = false
      queue_actions      = ["sqs:SendMessage"]
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        DYNAMO_TABLE_NAME_CHAT_MESSAGES    = aws_dynamodb_table.messages.name
        DYNAMO_TABLE_NAME_CHAT_MEMBERSHIPS = aws_dynamodb_table.memberships.name
        MESSAGE_RETENTION_DAYS             = tostring(var.message_retention_days)
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        MAX_MESSAGE_BYTES                  = tostring(var.max_message_bytes)
        BROADCAST_CONCURRENCY              = tostring(var.broadcast_concurrency)
        FANOUT_QUEUE_URL                   = aws_sqs_queue.fanout.url
        FANOUT_SHARD_SIZE                  = tostring(var.fanout_shard_size)
      }
    }
  }

  # The functions API Gateway routes to (apigateway.tf): every one with a route_key.
  routed_functions = { for key, fn in local.functions : key => fn if fn.route_key != null }
}
