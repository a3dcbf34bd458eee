"""Route `callback`: reaches the @connections API through WEBSOCKET_CALLBACK_URL, as the real functions do."""

import json
import os

import boto3

client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["WEBSOCKET_CALLBACK_URL"])


def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    info = client.get_connection(ConnectionId=connection_id)
    payload = {"callback": True, "sourceIp": info["Identity"]["SourceIp"]}
    client.post_to_connection(ConnectionId=connection_id, Data=json.dumps(payload).encode())
    return {"statusCode": 200}
