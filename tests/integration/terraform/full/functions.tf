variable "event_log_dir" {
  type    = string
  default = ""
}

variable "test_number" {
  type    = number
  default = 4096
}

variable "test_list" {
  type    = list(string)
  default = ["HS256", "RS256"]
}

locals {
  common_env = {
    EVENT_LOG_DIR = var.event_log_dir
  }

  functions = {
    t_connect = {
      route_key      = "$connect"
      timeout        = 5
      memory_size    = 128
      route_response = false
      environment    = {}
    }
    t_disconnect = {
      route_key      = "$disconnect"
      timeout        = 5
      memory_size    = 128
      route_response = false
      environment    = {}
    }
    t_default = {
      route_key      = "$default"
      timeout        = 5
      memory_size    = 128
      route_response = true
      environment    = {}
    }
    echo = {
      route_key      = "echo"
      timeout        = 7
      memory_size    = 256
      route_response = true
      environment    = {}
    }
    noreply = {
      route_key      = "noreply"
      timeout        = 5
      memory_size    = 128
      route_response = false
      environment    = {}
    }
    boom = {
      route_key      = "boom"
      timeout        = 5
      memory_size    = 128
      route_response = true
      environment    = {}
    }
    slow = {
      route_key      = "slow"
      timeout        = 3
      memory_size    = 128
      route_response = true
      environment    = {}
    }
    broken = {
      route_key      = "broken"
      timeout        = 5
      memory_size    = 128
      route_response = true
      environment    = {}
    }
    callback = {
      route_key      = "callback"
      timeout        = 10
      memory_size    = 128
      route_response = false
      environment = {
        WEBSOCKET_CALLBACK_URL = local.callback_url
      }
    }
    env = {
      route_key      = "env"
      timeout        = 10
      memory_size    = 512
      route_response = true
      environment = {
        DYNAMO_TABLE_NAME_CHAT_CONNECTIONS = aws_dynamodb_table.connections.name
        WEBSOCKET_CALLBACK_URL             = local.callback_url
        JWT_SECRET_ARN                     = var.event_log_dir
        JWT_ALGORITHMS                     = join(",", var.test_list)
        TEST_NUMBER                        = tostring(var.test_number)
        TEST_JOINED                        = join(",", var.test_list)
        TEST_LITERAL                       = "literal-value"
      }
    }
    version = {
      route_key      = "version"
      timeout        = 5
      memory_size    = 128
      route_response = true
      environment    = {}
    }
  }
}
