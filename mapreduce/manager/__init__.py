"""The MapReduce Manager: job queue, task scheduling, Worker liveness."""

from mapreduce.manager.manager import Manager, ManagerOptions, ManagerServer

__all__ = ["Manager", "ManagerOptions", "ManagerServer"]
