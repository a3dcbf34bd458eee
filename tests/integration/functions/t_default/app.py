"""$default for tests (route response): says it was chosen and records the event."""

import json
import os


def handler(event, context):
    directory = os.environ.get("EVENT_LOG_DIR")
    if directory:
        path = os.path.join(directory, event["requestContext"]["connectionId"] + ".jsonl")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
    return {
        "statusCode": 200,
        "body": json.dumps({"route": event["requestContext"]["routeKey"], "body": event["body"]}),
    }
