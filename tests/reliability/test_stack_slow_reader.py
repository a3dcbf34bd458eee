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
    figures: dict[str, object] = {"tried": 0}
    with start_stack(max_workers=2, ttl_reaper_interval_s=30.0) as stack:
        slow = RawClient.open(f"{stack.ws_url}?token={make_token('slowpoke')}&room_id={ROOM}", rcvbuf=4096)
        deadline = time.monotonic() + 10
        while len(stack.connection_ids()) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        [slow_id] = stack.connection_ids()
        live = RawClient.open(f"{stack.ws_url}?token={make_token('reader')}&room_id={ROOM}")
        while len(stack.connection_ids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        [live_id] = set(stack.connection_ids()) - {slow_id}

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
        live_seen: Counter[int] = Counter()

        async def read_live(stop: asyncio.Event) -> None:
            while not stop.is_set():
                got = await asyncio.to_thread(live.recv_frame, 0.2)
                if got is not None and got[0] == 0x1:
                    frame = json.loads(got[1])
                    if "seq" in frame:  # not the room's presence frames
                        live_seen[frame["seq"]] += 1

        async def run() -> float:
            stop = asyncio.Event()
            reader = asyncio.get_running_loop().create_task(read_live(stop))
            slowest, started = 0.0, time.monotonic()
            for seq in range(FRAMES):
                data = json.dumps({"seq": seq, "pad": "x" * PAD}).encode()
                t0 = time.monotonic()
                members = [cid for cid in (slow_id, live_id) if cid not in gone]  # a 410 deletes the record
                await asyncio.to_thread(sender.broadcast, stack.callback_url, members, data)
                slowest = max(slowest, time.monotonic() - t0)
                figures["tried"] = seq + 1
                if time.monotonic() - started > GIVE_UP_S:
                    break
            deadline = time.monotonic() + 10
            while sum(live_seen.values()) < int(figures["tried"]) and time.monotonic() < deadline:  # type: ignore[call-overload]
                await asyncio.sleep(0.05)
            stop.set()
            await reader
            return slowest

        try:
            slowest = asyncio.run(run())
            figures["slowest"] = f"{slowest * 1000:.0f} ms"
            payloads, close_code = slow.frames_until_closed(timeout=15)  # it reads again, at last
            frames = [json.loads(p) for p in payloads]
            seqs = Counter(f["seq"] for f in frames if "seq" in f)
            figures.update(
                delivered=len(seqs),
                duplicated=sum(n - 1 for n in seqs.values()),
                live_delivered=len(live_seen),
                live_duplicated=sum(n - 1 for n in live_seen.values()),
                close_code=str(close_code),
                gone=len(gone),
            )
        finally:
            slow.close()
            live.close()
            summary.record(
                "slow-reader",
                tried=int(figures["tried"]),  # type: ignore[call-overload]
                delivered=int(figures.get("delivered", 0)),  # type: ignore[call-overload]
                duplicated=int(figures.get("duplicated", 0)),  # type: ignore[call-overload]
                live_delivered=int(figures.get("live_delivered", 0)),  # type: ignore[call-overload]
            )
            summary.note(
                "slow-reader",
                close_code=str(figures.get("close_code", "n/a")),
                slowest=str(figures.get("slowest", "n/a")),
            )
    assert figures["duplicated"] == 0 and figures["live_duplicated"] == 0, figures
    assert figures["live_delivered"] == FRAMES, figures  # every broadcast reached the live member
    assert slowest < HOSTAGE_S, figures  # and none waited for the slow one
    assert figures["close_code"] == "1008" and gone == [slow_id], figures
