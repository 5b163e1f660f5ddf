#!/nonexistent/c-interpreter
# Chaos test mapper: its interpreter line names a program that does not
# exist, so the kernel refuses to start it although the file is executable.
cat
