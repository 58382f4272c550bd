# AOB: `make demo` and `make test` set up whatever is missing first (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
AOB := $(VENV)/bin/aob
BENCH ?=

# Local cloud defaults; export AWS_ENDPOINT_URL= (empty) and real credentials to target AWS.
export AWS_ENDPOINT_URL ?= http://127.0.0.1:4566
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= test
export AWS_SECRET_ACCESS_KEY ?= test
export AOB_ROOT := $(CURDIR)

.PHONY: help setup up down status migrate deploy demo test test-fast test-integration bench lint clean

help:
	@echo "make demo   set up, start LocalStack and vLLM, migrate, deploy, run a refund approved from the CLI, stop"
	@echo "make test   set up and run unit, functional and integration tests"
	@echo "other: setup up down status migrate deploy bench [BENCH=name] lint clean"

setup:
	@infra/bootstrap.sh all

up: setup
	@$(PY) infra/localstack/ctl.py up

down:
	@if [ -x $(PY) ]; then $(PY) infra/localstack/ctl.py down; else python3 infra/localstack/ctl.py down; fi

status:
	@$(PY) infra/localstack/ctl.py status

migrate: setup
	@$(AOB) migrate

deploy: up
	@$(AOB) deploy

demo:
	@infra/demo.sh

test: setup test-fast test-integration

test-fast:
	@$(PY) -m pytest tests/unit tests/functional -q

test-integration:
	@$(PY) -m pytest tests/integration -q

bench: setup
	@infra/with-localstack.sh infra/with-vllm.sh $(PY) bench/run.py $(BENCH)

lint: setup
	@$(VENV)/bin/ruff check layers functions infra bench tests
	@$(VENV)/bin/cfn-lint template.yaml

clean: down
	rm -rf build .state/localstack
