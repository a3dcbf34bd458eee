"""$connect for tests: the query string picks the outcome (status=N, raise=1, sleep=S, protocol=P, bad=1)."""

import json
import time

from tests.integration.functions._eventlog import record


def handler(event, context):
    record(event)
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
