"""$disconnect for tests: records the event."""

from tests.integration.functions._eventlog import record


def handler(event, context):
    record(event)
    return {"statusCode": 200}
