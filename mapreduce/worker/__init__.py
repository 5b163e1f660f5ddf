"""The MapReduce Worker: registration, heartbeats, map and reduce tasks."""

from mapreduce.worker.worker import Worker, WorkerOptions, WorkerServer

__all__ = ["Worker", "WorkerOptions", "WorkerServer"]
