"""Default settings of the Manager, the Worker and the clients: one place."""

# Where a Manager listens, and where the client commands look for it.
MANAGER_HOST = "localhost"
MANAGER_PORT = 6000
# Where `mapreduce-manager` serves its dashboard (the Python API serves
# none unless asked).
WEB_PORT = 6080
# Where a Worker listens.
WORKER_HOST = "localhost"
WORKER_PORT = 6001

# Seconds between a Worker's heartbeats ...
HEARTBEAT_INTERVAL = 2.0
# ... and before it tries a failed send (or register) again.
RETRY_INTERVAL = 1.0

# A Worker silent this long (5 missed 2 s heartbeats) is marked dead.
HEARTBEAT_TIMEOUT = 10.0
# A Worker the Manager has marked dead, or never saw register, that keeps
# beating this long is told to register again (the `rejoin` extension).
REJOIN_AFTER = 4.0
# A task that fails this many times fails its job.
MAX_ATTEMPTS = 3
# Seconds the Manager or a Worker gives one outgoing message to be delivered.
SEND_TIMEOUT = 5.0

# Seconds a client waits to connect and to get an answer.
CONNECT_TIMEOUT = 10.0
# Seconds the Manager holds a job_request when nothing changes (long poll).
POLL_TIMEOUT = 5.0

# The Manager remembers this many ended jobs ...
HISTORY_JOBS = 100
# ... keeps the task attempts of this many of them (the newest) ...
DETAILED_JOBS = 10
# ... and at most this many events and task attempts per job.
EVENTS_PER_JOB = 200
ATTEMPTS_PER_JOB = 10000
# A job sums at most this many distinct counters (group and name); the
# tasks' reports of more are dropped, with a warning.
COUNTERS_PER_JOB = 1000

# Seconds a Worker waits for `register_ack` after a delivered `register`
# before it registers again.
ACK_TIMEOUT = 10.0
# How many times a Worker tries to deliver one message to the Manager.
SEND_ATTEMPTS = 3
