"""The tables as Terraform defines them (terraform/dynamodb.tf), created in moto.

Read by the local stack's Terraform reader: there is one reader of the table definitions, not two.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from local_stack.config import REPO_ROOT
from local_stack.dynamodb import ensure_table
from local_stack.terraform import TerraformModel, load_model


@cache
def _model() -> TerraformModel:
    return load_model([REPO_ROOT / "terraform"])


def create_connections_table(client: Any, name: str) -> None:
    ensure_table(client, name, _model().table)


def create_messages_table(client: Any, name: str) -> None:
    ensure_table(client, name, _model().tables["messages"])


def create_memberships_table(client: Any, name: str) -> None:
    ensure_table(client, name, _model().tables["memberships"])
