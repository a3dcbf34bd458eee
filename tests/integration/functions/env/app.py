"""Route `env` (route response): its environment and the table it reaches (AWS_ENDPOINT_URL_DYNAMODB)."""

import json
import os

import boto3


def handler(event, context):
    client, name = boto3.client("dynamodb"), os.environ["DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"]
    table, ttl = client.describe_table(TableName=name), client.describe_time_to_live(TableName=name)
    return {
        "statusCode": 200,
        "body": json.dumps(
            {
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "key_schema": table["Table"]["KeySchema"],
                "indexes": sorted(i["IndexName"] for i in table["Table"].get("GlobalSecondaryIndexes", [])),
                "ttl": ttl["TimeToLiveDescription"],
            }
        ),
    }
