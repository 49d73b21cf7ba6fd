"""The worker: jobs run in one background thread, a job asked for while queued or running is joined, progress
is visible while it runs, and an error reaches every caller and frees the key."""

import threading

import pytest

from dgn_am.app.worker import Worker


def test_same_key_joins_the_running_job_and_runs_once():
    w = Worker("test")
    gate, calls = threading.Event(), []

    def job(progress):
        calls.append(threading.current_thread().name)
        progress(0.5)
        gate.wait(10)
        return 42

    a = w.submit("k", job)
    b = w.submit("k", job)
    assert a is b and w.started == 1
    for _ in range(1000):  # until the job has reported its progress
        if w.progress("k") == 0.5:
            break
        threading.Event().wait(0.01)
    assert w.progress("k") == 0.5
    gate.set()
    assert a.result(10) == 42 and b.result(10) == 42
    assert calls == [calls[0]] and calls[0].startswith("dgn-am-test")
    assert w.progress("k") is None
    c = w.submit("k", job)  # finished: a new request runs it again
    assert c is not a and c.result(10) == 42 and w.started == 2
    w.shutdown()


def test_other_keys_queue_behind_in_one_thread():
    w = Worker("test")
    order = []
    futures = [w.submit(i, lambda p, i=i: order.append(i) or i) for i in range(5)]
    assert [f.result(10) for f in futures] == list(range(5)) and order == list(range(5))
    assert w.call(lambda: "x").result(10) == "x"
    w.shutdown()


def test_an_error_reaches_the_caller_and_frees_the_key():
    w = Worker("test")

    def bad(progress):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        w.submit("k", bad).result(10)
    assert w.progress("k") is None
    assert w.submit("k", lambda p: 1).result(10) == 1
    w.shutdown()
