"""The local stack's fault switch (local_stack/faults.py): with every ``@connections`` POST and every
distinct DynamoDB request of the functions failing once (500 / throttling), every message still reaches
every member exactly once, and no live connection is deleted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from local_stack.config import REPO_ROOT
from local_stack.faults import SITE
from local_stack.testing import StackProcess
from local_stack.testing.ws import ChatClient
from shared.management_api import ManagementApiClient
from tests.reliability import summary
from tests.reliability.helpers import delivered, expected_for, losses, settle, worker_environments
from tests.support.records import table_client, table_ids, table_items

FAULTS = "connections=500,dynamodb=throttle"
ROOM_SIZE = 5


@pytest.fixture(scope="module")
def faulty_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    log_path = tmp_path_factory.mktemp("faulty-stack") / "stack.log"
    with StackProcess(log_path=log_path, env={"LOCAL_STACK_FAULTS": FAULTS}) as stack:
        yield stack


def test_stack_faults_switch_is_wired_to_gateway_and_workers(faulty_stack: StackProcess) -> None:
    # The gateway: a POST fails once, its retry (same connection, same body) passes.
    async def run() -> list[str]:
        client = await ChatClient.open(faulty_stack.url("probe", "probe"), "probe")
        await asyncio.sleep(0.5)
        items = table_items(table_client(faulty_stack.dynamodb_endpoint))
        [cid] = [i["connection_id"]["S"] for i in items if i["user_id"]["S"] == "probe"]
        # The production client (no retries of its own), as the functions post through it.
        api = ManagementApiClient(
            faulty_stack.callback_url,
            pool_size=1,
            region="us-east-1",
            credentials=Credentials("testing", "testing"),
        )
        data = json.dumps({"action": "message", "message": "probe"}).encode()
        outcomes = []
        for _ in range(2):
            try:
                await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=data)
                outcomes.append("200")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
        api.close()
        await asyncio.sleep(0.5)
        assert client.received["probe"] == 1
        await client.close()
        return outcomes

    assert asyncio.run(run()) == ["InternalServerError", "200"]
    # The workers: the site directory leads their PYTHONPATH, and it makes a DynamoDB client fail once.
    workers = worker_environments(faulty_stack.pid)
    assert workers and all(env.get("PYTHONPATH", "").startswith(str(SITE)) for env in workers)
    probe = (
        "import boto3, botocore.config as c\n"
        f"d = boto3.client('dynamodb', endpoint_url='{faulty_stack.dynamodb_endpoint}',"
        " region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t',"
        " config=c.Config(retries={'total_max_attempts': 1}))\n"
        "for _ in range(2):\n"
        "    try: d.describe_table(TableName='chat_connections'); print('ok')\n"
        "    except d.exceptions.ProvisionedThroughputExceededException: print('throttled')\n"
    )
    env = {**workers[0], "PYTHONPATH": f"{SITE}:{REPO_ROOT}"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["throttled", "ok"], out.stderr


@pytest.mark.timeout(300)
def test_stack_faults_every_post_and_dynamodb_call_failing_once_loses_nothing(
    faulty_stack: StackProcess,
) -> None:
    async def run() -> tuple[int, int, Counter[str], int]:
        clients = [
            await ChatClient.open(faulty_stack.url(f"f{i}", f"faults-{i // ROOM_SIZE}"), f"f{i}")
            for i in range(10)
        ]
        stored = table_ids(table_client(faulty_stack.dynamodb_endpoint))
        sent = {i: [f"f{i}:{k}" for k in range(5)] for i in range(10)}
        for k in range(5):
            for i, client in enumerate(clients):
                await client.send(sent[i][k])
            await asyncio.sleep(0.5)
        expected = expected_for(sent, ROOM_SIZE)
        await settle(lambda: delivered(clients, expected), 10 * 25, time.monotonic() + 120)
        lost, duplicated, _ = losses(clients, expected)
        errors = sum((c.errors for c in clients), start=Counter[str]())
        live_deleted = len(stored - table_ids(table_client(faulty_stack.dynamodb_endpoint)))
        for client in clients:
            await client.close()
        return lost, duplicated, errors, live_deleted

    lost, duplicated, errors, live_deleted = asyncio.run(run())
    summary.record(
        "faults",
        scenarios=1,
        reachable=10 * 25,
        reachable_delivered=10 * 25 - lost,
        live_deleted=live_deleted,
    )
    summary.note("faults", stack=f"stack switch {FAULTS}: {lost} lost, {duplicated} duplicated")
    assert (lost, duplicated, live_deleted) == (0, 0, 0)
    assert not errors, errors
