"""Route `version` (route response): the reload test rewrites VERSION in a copy of this file."""

VERSION = "1"


def handler(event, context):
    return {"statusCode": 200, "body": VERSION}
