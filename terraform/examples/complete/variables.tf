variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "ws-chat-example"
}

variable "stage_name" {
  description = "API Gateway stage name."
  type        = string
  default     = "prod"
}

variable "image_digests" {
  description = "Image digest per function, written by `make build-push` (copy ../../image-digests.auto.tfvars.json here)."
  type        = map(string)
  default     = {}
}

variable "alarm_email" {
  description = "Email address subscribed to the alarm topic (confirm the subscription mail); null subscribes nobody."
  type        = string
  default     = null
}
