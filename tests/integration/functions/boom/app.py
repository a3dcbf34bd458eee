"""Route `boom`: the handler raises."""


def handler(event, context):
    raise ValueError("boom on purpose")
