"""The connections table as Terraform defines it (terraform/dynamodb.tf), for creating it in moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2

TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _first(block: Any) -> Any:
    return block[0] if isinstance(block, list) else block


def table_definition() -> dict[str, Any]:
    """create_table keyword arguments (without TableName) and the TTL attribute, from Terraform."""
    with (TERRAFORM / "dynamodb.tf").open() as handle:
        resources = hcl2.load(handle)["resource"]
    # python-hcl2 8 keeps the quotes of block labels and string values.
    table = next(r['"aws_dynamodb_table"']['"connections"'] for r in resources if '"aws_dynamodb_table"' in r)
    indexes = []
    for gsi in table.get("global_secondary_index", []):
        projection: dict[str, Any] = {"ProjectionType": _unquote(gsi["projection_type"])}
        if gsi.get("non_key_attributes"):
            projection["NonKeyAttributes"] = [_unquote(a) for a in gsi["non_key_attributes"]]
        indexes.append(
            {
                "IndexName": _unquote(gsi["name"]),
                "KeySchema": [{"AttributeName": _unquote(gsi["hash_key"]), "KeyType": "HASH"}],
                "Projection": projection,
            }
        )
    return {
        "KeySchema": [{"AttributeName": _unquote(table["hash_key"]), "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": _unquote(a["name"]), "AttributeType": _unquote(a["type"])}
            for a in table["attribute"]
        ],
        "GlobalSecondaryIndexes": indexes,
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": _unquote(_first(table["ttl"])["attribute_name"]),
    }


def create_connections_table(client: Any, name: str) -> None:
    definition = table_definition()
    ttl_attribute = definition.pop("ttl_attribute")
    client.create_table(TableName=name, **definition)
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
    )
