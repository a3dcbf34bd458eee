"""SQS consumer: a record's body asks to ``fail`` (in batchItemFailures), ``crash_first`` (on receive 1) or
``sleep`` S; each invocation appends its event, pid and span to ``$EVENT_LOG_DIR/t_batch.jsonl``."""

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
