"""SQS consumer for the queue tests: records each invocation, reports records as failed on request.

Each record's body is JSON: ``{"id": ..., "fail": true}`` is listed in ``batchItemFailures`` every time,
``{"crash_first": true}`` kills the process on its first receive (``ApproximateReceiveCount`` 1),
``{"sleep": S}`` sleeps S seconds. Every invocation appends one line to ``$EVENT_LOG_DIR/t_batch.jsonl``:
the event, the pid and the wall-clock span.
"""

import json
import os
import time


def handler(event, context):
    start = time.time()
    failures = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("crash_first") and record["attributes"]["ApproximateReceiveCount"] == "1":
            os._exit(1)
        time.sleep(float(body.get("sleep", 0)))
        if body.get("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    line = {"event": event, "pid": os.getpid(), "start": start, "end": time.time()}
    with open(os.path.join(os.environ["EVENT_LOG_DIR"], "t_batch.jsonl"), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    return {"batchItemFailures": failures}
