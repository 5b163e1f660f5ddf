"""Clients following a job: long polls answered when the job changes.

A `job_request` names a job and the version of it the client has seen. It
is answered at once when the job is newer (or has ended, or is unknown);
otherwise it waits on the loop, holding its connection, until the job
changes, until `poll_timeout` passes (answered with the unchanged state,
so the client knows the Manager is alive), or until the Manager shuts
down.
"""

import collections


class Followers:
    """The `job_request`s waiting for news, by job id."""

    def __init__(self, reactor, answer, poll_timeout):
        """Wait on `reactor`; `answer(job_id, reply)` answers one request."""
        self.reactor = reactor
        self.answer = answer
        self.poll_timeout = poll_timeout
        self._waiting = collections.defaultdict(dict)  # id -> reply: timer

    def follow(self, record, after, reply):
        """Answer now if `record` is newer than `after`, else wait."""
        if record.version > after or record.ended:
            self.answer(record.job_id, reply)
            return
        timer = self.reactor.call_later(self.poll_timeout, self._expire,
                                        record.job_id, reply)
        self._waiting[record.job_id][reply] = timer

    def job_changed(self, record):
        """Answer every request waiting for news of `record`'s job."""
        waiting = self._waiting.pop(record.job_id, None)
        for reply, timer in (waiting or {}).items():
            timer.cancel()
            self.answer(record.job_id, reply)

    def _expire(self, job_id, reply):
        """Answer a request that waited `poll_timeout` without news."""
        waiting = self._waiting.get(job_id, {})
        if waiting.pop(reply, None) is not None:
            if not waiting:
                del self._waiting[job_id]
            self.answer(job_id, reply)

    def answer_all(self):
        """Answer every waiting request now (the Manager is stopping)."""
        waiting, self._waiting = self._waiting, collections.defaultdict(dict)
        for job_id, replies in waiting.items():
            for reply, timer in replies.items():
                timer.cancel()
                self.answer(job_id, reply)

    def __len__(self):
        """Return how many requests are waiting."""
        return sum(len(replies) for replies in self._waiting.values())
