"""$connect for tests: the query string picks the outcome (status=N, raise=1, sleep=S, protocol=P, bad=1)."""

import json
import os
import time


def _record(event):
    directory = os.environ.get("EVENT_LOG_DIR")
    if directory:
        path = os.path.join(directory, event["requestContext"]["connectionId"] + ".jsonl")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")


def handler(event, context):
    _record(event)
    query = event.get("queryStringParameters") or {}
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    if query.get("raise"):
        raise RuntimeError("connect failed on purpose")
    if query.get("bad"):
        return {"statusCode": "not-a-number"}
    if "status" in query:
        status = int(query["status"])
        return {"statusCode": status, "body": json.dumps({"message": f"status {status} on purpose"})}
    response = {"statusCode": 200}
    if "protocol" in query:
        response["headers"] = {"Sec-WebSocket-Protocol": query["protocol"]}
    return response
