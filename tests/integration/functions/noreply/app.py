"""Route `noreply` (no route response): its body must never reach the client."""


def handler(event, context):
    return {"statusCode": 200, "body": "this body has no route response"}
