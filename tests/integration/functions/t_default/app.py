"""$default for tests (route response): says it was chosen and records the event."""

import json

from tests.integration.functions._eventlog import record


def handler(event, context):
    record(event)
    return {
        "statusCode": 200,
        "body": json.dumps({"route": event["requestContext"]["routeKey"], "body": event["body"]}),
    }
