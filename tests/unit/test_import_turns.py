"""`ImportTurns`: runspace pools bootstrap in turns of the provider's logical processors (asked
once, by the first bootstrap) or of `Tuning.imports_at_once`. Observed with threads held inside
their turn until the test lets them go, never by timing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from cmproxy.steps import Result
from cmproxy.transports.import_turns import ImportTurns, processor_count

WAIT = 10.0


class _Bootstraps:
    """`count` bootstraps taking turns; each stays in its turn until released."""

    def __init__(self, turns: ImportTurns, count: int, answer: int | None) -> None:
        self.turns = turns
        self.count = count
        self.answer = answer
        self.asked = 0
        self.inside = 0
        self.most = 0
        #: Inside their turn when the first `first_in` had entered (`run`).
        self.at_first = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._lock = threading.Lock()

    def ask(self) -> int | None:
        with self._lock:
            self.asked += 1
        return self.answer

    def one(self) -> None:
        with self.turns.turn(self.ask):
            with self._lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            self.entered.release()
            assert self.release.wait(WAIT)
            with self._lock:
                self.inside -= 1

    def run(self, first_in: int) -> None:
        """Start them all; wait until `first_in` are inside their turn, then let all go."""
        with ThreadPoolExecutor(self.count) as pool:
            futures = [pool.submit(self.one) for _ in range(self.count)]
            for _ in range(first_in):
                assert self.entered.acquire(timeout=WAIT)
            with self._lock:
                self.at_first = self.inside
            self.release.set()
            for future in futures:
                future.result(timeout=WAIT)


def test_learned_limit_is_asked_once_and_holds() -> None:
    turns = ImportTurns()
    turns.limit_to(None)
    boots = _Bootstraps(turns, count=6, answer=2)
    boots.run(first_in=2)
    assert boots.asked == 1
    assert turns.cores == 2
    assert boots.at_first == 2
    assert boots.most == 2


def test_no_answer_means_all_at_once() -> None:
    turns = ImportTurns()
    turns.limit_to(None)
    boots = _Bootstraps(turns, count=4, answer=None)
    boots.run(first_in=4)
    assert boots.asked == 1
    assert turns.cores is None
    assert boots.most == 4


def test_a_given_limit_is_not_asked() -> None:
    turns = ImportTurns()
    turns.limit_to(3)
    boots = _Bootstraps(turns, count=5, answer=1)
    boots.run(first_in=3)
    assert boots.asked == 0
    assert boots.most == 3


def test_a_later_warm_up_uses_what_was_learned() -> None:
    turns = ImportTurns()
    turns.limit_to(None)
    _Bootstraps(turns, count=2, answer=1).run(first_in=1)
    turns.limit_to(None)
    again = _Bootstraps(turns, count=3, answer=8)
    again.run(first_in=1)
    assert again.asked == 0
    assert again.most == 1


def test_processor_count_reads_one_positive_int() -> None:
    assert processor_count(Result(output=(16,))) == 16
    assert processor_count(Result(output=())) is None
    assert processor_count(Result(output=(0,))) is None
    assert processor_count(Result(output=(True,))) is None
    assert processor_count(Result(output=("16",))) is None
    assert processor_count(Result(output=(4, 4))) is None


def test_an_ask_that_raises_does_not_hold_the_others() -> None:
    """The asking bootstrap fails (its pool broke): it raises, and the others do not wait for
    an answer that never comes; they import with no limit, and the next warm-up asks again."""
    turns = ImportTurns()
    turns.limit_to(None)
    asking = threading.Event()
    go_on = threading.Event()
    other_in = threading.Event()
    failures: list[BaseException] = []

    def broken() -> int | None:
        asking.set()
        assert go_on.wait(WAIT)
        raise RuntimeError("the pool broke")

    def first() -> None:
        try:
            with turns.turn(broken):
                pass
        except RuntimeError as exc:
            failures.append(exc)

    def other() -> None:
        with turns.turn(lambda: 1):
            other_in.set()

    # Daemon threads: on the old code the other one waited for ever.
    asker = threading.Thread(target=first, daemon=True)
    asker.start()
    assert asking.wait(WAIT)
    threading.Thread(target=other, daemon=True).start()
    go_on.set()
    asker.join(WAIT)
    assert [str(e) for e in failures] == ["the pool broke"]
    assert other_in.wait(WAIT), "the others still wait for the failed ask"
    assert turns.cores is None
    turns.limit_to(None)
    again = _Bootstraps(turns, count=2, answer=3)
    again.run(first_in=2)
    assert again.asked == 1 and turns.cores == 3
