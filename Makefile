# Every target is listed by `make help`. The first run creates .venv and installs what the project needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

AWS_REGION ?= us-east-1
export AWS_REGION
# AWS_PROFILE (if set) reaches the aws CLI and Terraform through the environment.
ifdef AWS_PROFILE
export AWS_PROFILE
endif

# checkov pins old packaging/python-hcl2: it gets its own virtual environment.
CHECKOV_VERSION := 3.2.533
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

# Images and deployment (terraform/README.md walks through them).
TF ?= terraform
TF_DIR := terraform
TF_ARGS ?=
# Address prefix of the module's resources in TF_DIR's state: empty for terraform/, module.chat. for
# terraform/examples/complete (make deploy TF_DIR=terraform/examples/complete TF_TARGET_PREFIX=module.chat.).
TF_TARGET_PREFIX ?=
NAME ?= ws-chat
PLATFORM ?= linux/amd64
FUNCTIONS := $(patsubst lambdas/%/app.py,%,$(wildcard lambdas/*/app.py))
IMAGE_TAG := $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)-$(shell date -u +%Y%m%d%H%M%S)
DIGESTS_FILE := $(TF_DIR)/image-digests.auto.tfvars.json

.DEFAULT_GOAL := help
.PHONY: help dev test lint bench build build-push deploy destroy clean checkov-venv

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

dev: $(STAMP) ## Run the whole chat stack locally (WS_PORT, WEB_PORT, STAGE, JWT_SECRET, DYNAMODB_ENDPOINT)
	$(PY) -m local_stack up

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	@touch $(CHECKOV_STAMP)

checkov-venv: $(CHECKOV_STAMP) ## Install checkov (pinned) in its own virtual environment, .venv-checkov

test: $(STAMP) $(CHECKOV_STAMP) ## Run the whole test suite
	$(PY) -m pytest

lint: $(STAMP) ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared local_stack
	@# Every function is a module named "app": check each on its own, as its image sees it.
	@for fn in lambdas/*/; do echo "mypy $$fn"; $(VENV)/bin/mypy shared $$fn/app.py || exit 1; done

bench: $(STAMP) ## Run the benchmarks and print their tables
	$(PY) -m bench

build: ## Build one image per function (docker build --target <fn>; PLATFORM=linux/amd64, NAME=ws-chat)
	@test -n "$(FUNCTIONS)" || { echo "no lambdas/*/app.py found"; exit 1; }
	for fn in $(FUNCTIONS); do \
	  docker build --provenance=false --platform $(PLATFORM) --target $$fn -t $(NAME)/$$fn:$(IMAGE_TAG) . || exit 1; \
	done

build-push: build ## Log in to ECR, push every image, write their digests to $(TF_DIR)/image-digests.auto.tfvars.json (TF_DIR=terraform)
	@set -eu; \
	repos=$$($(TF) -chdir=$(TF_DIR) output -json ecr_repository_urls); \
	registry=$$(printf '%s' "$$repos" | $(PYTHON) -c 'import json, sys; print(next(iter(json.load(sys.stdin).values())).split("/")[0])'); \
	aws ecr get-login-password --region $(AWS_REGION) | docker login --username AWS --password-stdin "$$registry"; \
	pushed=$$(mktemp); \
	for fn in $(FUNCTIONS); do \
	  repo=$$(printf '%s' "$$repos" | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$$fn"); \
	  docker tag $(NAME)/$$fn:$(IMAGE_TAG) "$$repo:$(IMAGE_TAG)"; \
	  docker push "$$repo:$(IMAGE_TAG)"; \
	  digest=$$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$$repo:$(IMAGE_TAG)" | grep "^$$repo@" | head -n 1 | cut -d @ -f 2); \
	  test -n "$$digest" || { echo "no digest for $$repo:$(IMAGE_TAG)"; exit 1; }; \
	  echo "$$fn $$digest" >> "$$pushed"; \
	done; \
	$(PYTHON) -c 'import json, sys; print(json.dumps({"image_digests": dict(line.split() for line in open(sys.argv[1]))}, indent=2, sort_keys=True))' "$$pushed" > $(DIGESTS_FILE); \
	rm -f "$$pushed"; \
	echo "wrote $(DIGESTS_FILE)"

deploy: ## terraform init, apply KMS + ECR, build-push, then the full apply (TF_ARGS="-var-file=... -auto-approve")
	$(TF) -chdir=$(TF_DIR) init -input=false
	$(TF) -chdir=$(TF_DIR) apply -input=false $(TF_ARGS) \
	  -target=$(TF_TARGET_PREFIX)aws_kms_key.this -target=$(TF_TARGET_PREFIX)aws_kms_alias.this \
	  -target=$(TF_TARGET_PREFIX)aws_ecr_repository.this -target=$(TF_TARGET_PREFIX)aws_ecr_lifecycle_policy.this
	$(MAKE) build-push
	$(TF) -chdir=$(TF_DIR) apply -input=false $(TF_ARGS)
	@$(TF) -chdir=$(TF_DIR) output websocket_url

destroy: ## Lift deletion protection and ECR's image guard, then terraform destroy everything
	$(TF) -chdir=$(TF_DIR) apply -input=false $(TF_ARGS) -var deletion_protection=false -var ecr_force_delete=true \
	  -target=$(TF_TARGET_PREFIX)aws_dynamodb_table.connections -target=$(TF_TARGET_PREFIX)aws_ecr_repository.this
	$(TF) -chdir=$(TF_DIR) destroy -input=false $(TF_ARGS) -var deletion_protection=false -var ecr_force_delete=true

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
