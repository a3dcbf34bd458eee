"""A member that stops reading, through the local stack's @connections API and the real sender: the room's
broadcasts must not wait for it, and it must never get a frame twice (a post that waits past the sender's
read timeout is retried, and both copies arrive once the member reads again).

The slow member is a bare socket with a 4 KB receive buffer that reads nothing until every broadcast is
done; a live member reads all along. The sender's read timeout is 1 s here (5 s in the functions) so the
defect shows within the test's time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
from botocore.credentials import Credentials

from local_stack.testing import make_token, start_stack
from local_stack.testing.raw_ws import RawClient
from shared.management_api import ManagementApiClient
from shared.sender import Sender
from tests.reliability import summary

FRAMES = 400
PAD = 16 * 1024  # 400 x 16 KB = 6.4 MB: more than the socket buffers between the gateway and the member
ROOM = "slow-room"
HOSTAGE_S = 1.0  # a broadcast slower than this waited for its slowest member
GIVE_UP_S = 90.0  # stop broadcasting after this long (the old gateway made every broadcast wait)


@pytest.mark.timeout(300)
def test_slow_reader_is_closed_not_waited_for_and_never_gets_a_duplicate() -> None:
    tried, slowest = 0, 0.0
    close_code: int | str | None = "n/a"  # until the slow member reads again (None: TCP ended, no close)
    seqs: Counter[int] = Counter()  # what the slow member got, once it read again
    live_seen: Counter[int] = Counter()
    with start_stack(max_workers=2, ttl_reaper_interval_s=30.0) as stack:

        def joined(user: str, **options: int) -> tuple[RawClient, str]:
            before, deadline = set(stack.connection_ids()), time.monotonic() + 10
            client = RawClient.open(f"{stack.ws_url}?token={make_token(user)}&room_id={ROOM}", **options)
            while not set(stack.connection_ids()) - before and time.monotonic() < deadline:
                time.sleep(0.02)
            [cid] = set(stack.connection_ids()) - before
            return client, cid

        slow, slow_id = joined("slowpoke", rcvbuf=4096)
        live, live_id = joined("reader")
        gone: list[str] = []
        sender = Sender(
            pool_size=4,
            on_gone=gone.append,
            client_factory=lambda url: ManagementApiClient(
                url,
                pool_size=4,
                read_timeout=1.0,
                region=stack.config.region,
                credentials=Credentials("local", "local"),
            ),
        )

        async def read_live(stop: asyncio.Event) -> None:
            while not stop.is_set():
                got = await asyncio.to_thread(live.recv_frame, 0.2)
                if got is not None and got[0] == 0x1:
                    frame = json.loads(got[1])
                    if "seq" in frame:  # not the room's presence frames
                        live_seen[frame["seq"]] += 1

        async def run() -> None:
            nonlocal tried, slowest
            stop = asyncio.Event()
            reader = asyncio.get_running_loop().create_task(read_live(stop))
            started = time.monotonic()
            for seq in range(FRAMES):
                data = json.dumps({"seq": seq, "pad": "x" * PAD}).encode()
                t0 = time.monotonic()
                members = [cid for cid in (slow_id, live_id) if cid not in gone]  # a 410 deletes the record
                await asyncio.to_thread(sender.broadcast, stack.callback_url, members, data)
                slowest = max(slowest, time.monotonic() - t0)
                tried = seq + 1
                if time.monotonic() - started > GIVE_UP_S:
                    break
            deadline = time.monotonic() + 10
            while sum(live_seen.values()) < tried and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await reader

        try:
            asyncio.run(run())
            payloads, close_code = slow.frames_until_closed(timeout=15)  # it reads again, at last
            seqs.update(f["seq"] for f in map(json.loads, payloads) if "seq" in f)
        finally:
            slow.close()
            live.close()
            duplicated = sum(n - 1 for n in seqs.values())
            summary.record("slow-reader", tried=tried, delivered=len(seqs), duplicated=duplicated)
            summary.record("slow-reader", live_delivered=len(live_seen))
            timed = f"{slowest * 1000:.0f} ms" if tried else "n/a"
            summary.note("slow-reader", close_code=str(close_code), slowest=timed)
    figures = dict(tried=tried, delivered=len(seqs), live=len(live_seen), close_code=close_code, gone=gone)
    assert duplicated == 0 and sum(live_seen.values()) == len(live_seen), figures
    assert len(live_seen) == FRAMES, figures  # every broadcast reached the live member
    assert slowest < HOSTAGE_S, figures  # and none waited for the slow one
    assert close_code == 1008 and gone == [slow_id], figures
