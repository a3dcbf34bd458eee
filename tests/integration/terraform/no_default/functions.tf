locals {
  common_env = {}

  functions = {
    echo = {
      route_key      = "echo"
      timeout        = 5
      memory_size    = 128
      route_response = true
      environment    = {}
    }
    boom = {
      route_key      = "boom"
      timeout        = 5
      memory_size    = 128
      route_response = true
      environment    = {}
    }
  }
}
