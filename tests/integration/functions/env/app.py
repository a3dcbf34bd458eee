"""Route `env` (route response): its environment and the table it reaches (AWS_ENDPOINT_URL_DYNAMODB)."""

import json
import os

import boto3


def handler(event, context):
    table = boto3.client("dynamodb").describe_table(
        TableName=os.environ["DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"]
    )
    ttl = boto3.client("dynamodb").describe_time_to_live(
        TableName=os.environ["DYNAMO_TABLE_NAME_CHAT_CONNECTIONS"]
    )
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
