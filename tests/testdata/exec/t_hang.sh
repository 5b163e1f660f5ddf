#!/usr/bin/env bash
# Test executable: writes a line, starts a child, and waits forever.
# Its own pid and the child's go to the file named by $T_PIDFILE, one a line,
# once both run; a test then stops it from outside.
set -Eeuo pipefail
echo "started	1"
sleep 300 &
child=$!
printf '%s\n%s\n' "$$" "$child" > "$T_PIDFILE.tmp"
mv "$T_PIDFILE.tmp" "$T_PIDFILE"
wait
