"""The MapReduce Worker: registration, heartbeats, map and reduce tasks."""

from mapreduce.worker.worker import Worker

__all__ = ["Worker"]
