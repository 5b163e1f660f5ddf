"""The test suite: real sockets on loopback, real processes, real files."""
