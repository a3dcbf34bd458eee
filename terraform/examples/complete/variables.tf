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
  description = "Image digest per function. `make build-push TF_DIR=terraform/examples/complete NAME=<var.name>` (or `make deploy` with the same TF_DIR) pushes to this example's repositories, named after var.name, and writes the digests to image-digests.auto.tfvars.json in this directory, which Terraform loads."
  type        = map(string)
  default     = {}
}

variable "architecture" {
  description = "Instruction set of the images and functions (make build-push ARCH=... writes it beside the digests)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "alarm_email" {
  description = "Email address subscribed to the alarm topic (confirm the subscription mail); null subscribes nobody."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the connections table from deletion. Off for an example that is torn down again; make destroy passes false."
  type        = bool
  default     = false
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete ECR repositories that still hold images; make destroy passes true."
  type        = bool
  default     = true
}
