"""Deadlines kept by one shared timer (gateway/upstream/deadlines.py): cut when due (at most a
tick late), never otherwise, a cancellation from elsewhere left as it is, nothing left open."""

from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.deadlines import FINE_S, TICK_S, Deadlines

SLACK_S = 0.5
"""The loop's own delay on a busy machine, on top of a tick."""


async def timed(deadlines: Deadlines, seconds: float, body_s: float) -> tuple[str, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with deadlines.within(seconds):
            await asyncio.sleep(body_s)
    except TimeoutError:
        return "cut", loop.time() - started
    return "done", loop.time() - started


async def test_a_body_past_its_deadline_is_cut_with_timeout_error_at_most_a_tick_late() -> None:
    deadlines = Deadlines()
    outcome, took = await timed(deadlines, FINE_S, 30)
    assert outcome == "cut"
    assert FINE_S <= took < FINE_S + TICK_S + SLACK_S
    assert deadlines.open == 0


async def test_each_of_many_bodies_is_cut_at_its_own_deadline() -> None:
    deadlines = Deadlines()
    results = await asyncio.gather(timed(deadlines, 1.0, 30), timed(deadlines, 1.4, 30),
                                   timed(deadlines, 1.2, 0.1))
    (first, first_s), (second, second_s), (quick, _) = results
    assert (first, second, quick) == ("cut", "cut", "done")
    assert 1.0 <= first_s < 1.0 + TICK_S + SLACK_S
    assert 1.4 <= second_s < 1.4 + TICK_S + SLACK_S
    assert deadlines.open == 0


async def test_a_body_done_in_time_is_left_alone_and_nothing_stays_open() -> None:
    deadlines = Deadlines()
    outcome, took = await timed(deadlines, 1.0, 0.05)
    assert outcome == "done" and took < 0.05 + SLACK_S
    await asyncio.sleep(2 * TICK_S)
    assert deadlines.open == 0
    # and the task goes on undisturbed: no cancellation was left pending for it
    await asyncio.sleep(FINE_S + 2 * TICK_S)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines()

    async def waiting() -> None:
        async with deadlines.within(5):
            await asyncio.sleep(30)

    task = asyncio.create_task(waiting())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.open == 0


async def test_an_outer_timeout_that_ends_first_is_the_outer_ones() -> None:
    deadlines = Deadlines()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            async with deadlines.within(5):
                await asyncio.sleep(30)
    assert deadlines.open == 0


async def test_a_short_deadline_is_kept_to_its_own_precision() -> None:
    deadlines = Deadlines()
    outcome, took = await timed(deadlines, 0.2, 30)
    assert outcome == "cut"
    assert 0.2 <= took < 0.2 + SLACK_S
    assert deadlines.open == 0


async def test_a_deadline_is_kept_only_inside_a_task() -> None:
    deadlines = Deadlines()
    raised: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def drive_by_hand() -> None:  # a plain callback of the loop: no current task
        coroutine = deadlines.within(5).__aenter__()
        try:
            coroutine.send(None)
        except RuntimeError as error:
            raised.set_result(error)
        finally:
            coroutine.close()

    asyncio.get_running_loop().call_soon(drive_by_hand)
    assert "inside a task" in str(await asyncio.wait_for(raised, 5))
    assert deadlines.open == 0
