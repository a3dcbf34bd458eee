"""Route `slow` (route response): sleeps `seconds` from the frame, reports its pid and wall-clock span."""

import json
import os
import time


def handler(event, context):
    seconds = float(json.loads(event["body"]).get("seconds", 1))
    start = time.time()
    time.sleep(seconds)
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid(), "start": start, "end": time.time()})}
