"""Append the event to ``$EVENT_LOG_DIR/<connectionId>.jsonl`` (the repository root is on PYTHONPATH)."""

import json
import os


def record(event):
    directory = os.environ.get("EVENT_LOG_DIR")
    if directory:
        path = os.path.join(directory, event["requestContext"]["connectionId"] + ".jsonl")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
