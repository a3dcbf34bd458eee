# Every target is listed by `make help`. The first run creates .venv and installs what the target needs from
# the locked requirements/*.txt (hashes checked; `make lock` re-resolves them: README, "Dependencies").
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCAL_STAMP := $(VENV)/.installed-local
DEV_STAMP := $(VENV)/.installed-dev
LOCK_FLAGS := --universal --generate-hashes
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check --no-input --require-hashes --no-deps
# This checkout itself, editable (the `chat-local` command, `import local_stack` from anywhere). A local
# path has no hash, and its dependencies are the lock's, installed just before: --no-deps. setuptools
# comes from the lock too, hence --no-build-isolation (no download of a build backend).
INSTALL_SELF := $(PY) -m pip install --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .

# AWS_REGION and AWS_PROFILE, when set, reach the aws CLI and Terraform through the environment; unset,
# both read the profile's region.
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
# The functions' instruction set, one setting for both sides: the images' docker platform and Terraform's
# var.architecture (build-push writes it beside the digests).
ARCH ?= x86_64
PLATFORM_x86_64 := linux/amd64
PLATFORM_arm64 := linux/arm64
PLATFORM := $(PLATFORM_$(ARCH))
FUNCTIONS := $(patsubst lambdas/%/app.py,%,$(wildcard lambdas/*/app.py))
IMAGE_TAG := $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)-$(shell date -u +%Y%m%d%H%M%S)
DIGESTS_FILE := $(TF_DIR)/image-digests.auto.tfvars.json

.DEFAULT_GOAL := help
.PHONY: help dev lock test lint bench check-arch build build-push deploy destroy clean checkov-venv

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)

$(LOCAL_STAMP): requirements/local.txt pyproject.toml | $(VENV)/bin/python
	@echo "Installing the local stack's dependencies (requirements/local.txt) into $(VENV): first run only"
	$(PIP_INSTALL) -r requirements/local.txt
	$(INSTALL_SELF)
	@touch $@

# The dev lock is a superset of the local one, at the same versions.
$(DEV_STAMP): requirements/dev.txt pyproject.toml | $(VENV)/bin/python
	@echo "Installing the test and lint dependencies (requirements/dev.txt) into $(VENV): first run only"
	$(PIP_INSTALL) -r requirements/dev.txt
	$(INSTALL_SELF)
	@touch $@ $(LOCAL_STAMP)

dev: $(LOCAL_STAMP) ## Run the whole chat stack locally (settings: README "Local development")
	$(PY) -m local_stack up

lock: $(DEV_STAMP) ## Re-resolve requirements/*.txt from pyproject.toml (UPGRADE=1: newest allowed versions)
	$(VENV)/bin/uv pip compile --quiet $(if $(UPGRADE),--upgrade) $(LOCK_FLAGS) --python-version 3.11 \
	  --extra dev -o requirements/dev.txt pyproject.toml
	$(VENV)/bin/uv pip compile --quiet $(LOCK_FLAGS) --python-version 3.11 -c requirements/dev.txt \
	  --extra local -o requirements/local.txt pyproject.toml
	$(VENV)/bin/uv pip compile --quiet $(LOCK_FLAGS) --python-version 3.12 -c requirements/dev.txt \
	  -o requirements/image.txt pyproject.toml

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	@touch $(CHECKOV_STAMP)

checkov-venv: $(CHECKOV_STAMP) ## Install checkov (pinned) in its own virtual environment, .venv-checkov

test: $(DEV_STAMP) $(CHECKOV_STAMP) ## Run the whole test suite
	$(PY) -m pytest

lint: $(DEV_STAMP) ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared local_stack tests/support bench
	@# Every function is a module named "app": check each on its own, as its image sees it.
	@for fn in lambdas/*/; do echo "mypy $$fn"; $(VENV)/bin/mypy shared $$fn/app.py || exit 1; done

bench: $(DEV_STAMP) ## Run the benchmarks and print their tables
	$(PY) -m bench

check-arch:
	@test "$(origin PLATFORM)" != "command line" || { echo "PLATFORM is derived from ARCH now: use ARCH=x86_64 or ARCH=arm64"; exit 2; }
	@test -n "$(PLATFORM)" || { echo "ARCH must be x86_64 or arm64, got '$(ARCH)'"; exit 2; }

build: check-arch ## Build one image per function (docker buildx; ARCH=x86_64|arm64, NAME=ws-chat)
	@test -n "$(FUNCTIONS)" || { echo "no lambdas/*/app.py found"; exit 1; }
	@docker buildx version >/dev/null 2>&1 || { echo "make build needs docker buildx (the images are built with --provenance=false, so Lambda gets a plain image manifest): install Docker's buildx plugin (Debian: apt-get install docker-buildx; Docker's own packages: docker-buildx-plugin)"; exit 1; }
	for fn in $(FUNCTIONS); do \
	  docker build --provenance=false --platform $(PLATFORM) --target $$fn -t $(NAME)/$$fn:$(IMAGE_TAG) . || exit 1; \
	done

build-push: build ## Log in to ECR, push every image, write their digests and ARCH to $(TF_DIR)/image-digests.auto.tfvars.json
	@set -eu; \
	if ! grep -Eqs '^variable "architecture"' $(TF_DIR)/*.tf && [ "$(ARCH)" != x86_64 ]; then \
	  echo "ARCH=$(ARCH), but $(TF_DIR) declares no variable \"architecture\" to deploy it with: declare it and pass it to the module"; exit 2; \
	fi; \
	repos=$$($(TF) -chdir=$(TF_DIR) output -json ecr_repository_urls); \
	registry=$$(printf '%s' "$$repos" | $(PYTHON) -c 'import json, sys; print(next(iter(json.load(sys.stdin).values())).split("/")[0])'); \
	region=$$(printf '%s' "$$registry" | cut -d . -f 4); \
	aws ecr get-login-password --region "$$region" | docker login --username AWS --password-stdin "$$registry"; \
	pushed=$$(mktemp); \
	for fn in $(FUNCTIONS); do \
	  repo=$$(printf '%s' "$$repos" | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$$fn"); \
	  docker tag $(NAME)/$$fn:$(IMAGE_TAG) "$$repo:$(IMAGE_TAG)"; \
	  docker push "$$repo:$(IMAGE_TAG)"; \
	  digest=$$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$$repo:$(IMAGE_TAG)" | grep "^$$repo@" | head -n 1 | cut -d @ -f 2); \
	  test -n "$$digest" || { echo "no digest for $$repo:$(IMAGE_TAG)"; exit 1; }; \
	  echo "$$fn $$digest" >> "$$pushed"; \
	done; \
	arch=$$(grep -Eqs '^variable "architecture"' $(TF_DIR)/*.tf && echo $(ARCH) || true); \
	$(PYTHON) -c 'import json, sys; values = {"image_digests": dict(line.split() for line in open(sys.argv[1]))}; values.update({"architecture": sys.argv[2]} if sys.argv[2] else {}); print(json.dumps(values, indent=2, sort_keys=True))' "$$pushed" "$$arch" > $(DIGESTS_FILE); \
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
	  -target=$(TF_TARGET_PREFIX)aws_dynamodb_table.connections -target=$(TF_TARGET_PREFIX)aws_dynamodb_table.messages \
	  -target=$(TF_TARGET_PREFIX)aws_dynamodb_table.memberships \
	  -target=$(TF_TARGET_PREFIX)aws_ecr_repository.this
	$(TF) -chdir=$(TF_DIR) destroy -input=false $(TF_ARGS) -var deletion_protection=false -var ecr_force_delete=true

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
