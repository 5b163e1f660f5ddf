"""The MapReduce Manager: job queue, task scheduling, Worker liveness."""

from mapreduce.manager.manager import Manager

__all__ = ["Manager"]
