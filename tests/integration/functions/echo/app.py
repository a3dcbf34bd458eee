"""Route `echo` (has a route response): sends back the event it received and its process id."""

import json
import os


def handler(event, context):
    print(f"echo handled {event['requestContext'].get('routeKey')}")
    return {
        "statusCode": 200,
        "body": json.dumps(
            {
                "event": event,
                "pid": os.getpid(),
                "function": context.function_name,
                "remaining_ms": context.get_remaining_time_in_millis(),
            }
        ),
    }
