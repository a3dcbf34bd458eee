"""Loaded at start by a function worker, only when LOCAL_STACK_FAULTS is on (local_stack/faults.py)."""

from local_stack.faults import install_dynamodb_faults

install_dynamodb_faults()
