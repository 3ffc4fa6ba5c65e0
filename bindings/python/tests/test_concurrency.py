"""Many Python threads on one router: ctypes releases the GIL for each native call."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List

import mcprouter

THREADS = 16
CALLS = 50


def test_16_threads_x_50_calls_each_with_its_own_session(router: mcprouter.Router) -> None:
    def worker(i: int) -> List[str]:
        out = []
        with router.session(f"client-{i}") as s:
            s.initialize()
            for j in range(CALLS):
                backend = "alpha" if (i + j) % 2 else "beta"
                msg = f"{i}-{j}"
                r = s.request("tools/call", {"name": f"{backend}__echo", "arguments": {"message": msg}})
                out.append(r["content"][0]["text"])
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS), timeout=60))
    for i, texts in enumerate(results):
        assert texts == [f"{i}-{j}" for j in range(CALLS)]


def test_16_threads_share_one_session(router: mcprouter.Router) -> None:
    with router.session() as s:
        s.initialize()

        def worker(i: int) -> int:
            ok = 0
            for j in range(CALLS):
                r = s.request("tools/call", {"name": "alpha__add", "arguments": {"a": i, "b": j}})
                ok += r["structuredContent"]["sum"] == i + j
            return ok

        with ThreadPoolExecutor(THREADS) as pool:
            assert sum(pool.map(worker, range(THREADS), timeout=60)) == THREADS * CALLS


def test_calls_run_in_parallel(router: mcprouter.Router) -> None:
    # All 8 calls are pending on the backend at the same moment only if the GIL is released
    # while each one blocks in C (judged by the router's own count, not by a stopwatch).
    with router.session() as s:
        s.initialize()
        peak = 0
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(s.request, "tools/call", {"name": "beta__slow", "arguments": {"ms": 1500}}) for _ in range(8)]
            deadline = time.monotonic() + 10
            while peak < 8 and time.monotonic() < deadline and not all(f.done() for f in futures):
                peak = max(peak, max(b["in_flight"] for b in router.status()["backends"]))
                time.sleep(0.01)
            for f in futures:
                f.result(timeout=30)
        assert peak == 8, f"at most {peak} calls were in flight at once"


def test_concurrent_close_is_safe(router: mcprouter.Router) -> None:
    # Closing from one thread while others use the session: every call either succeeds
    # or raises ClosedError; nothing crashes, and the handle is freed exactly once.
    for _ in range(5):
        s = router.session()
        errors: List[BaseException] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    s.request("ping")
                except mcprouter.ClosedError:
                    return
                except BaseException as e:  # pragma: no cover - reported below
                    errors.append(e)
                    return

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        s.close()
        stop.set()
        for t in threads:
            t.join(5)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
