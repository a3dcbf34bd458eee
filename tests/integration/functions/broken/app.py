"""Route `broken`: fails to import, as a handler with a missing dependency does."""

import module_that_does_not_exist  # noqa: F401


def handler(event, context):
    return {"statusCode": 200, "body": "unreachable"}
