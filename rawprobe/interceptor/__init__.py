"""The interceptor: signal the callers of a kernel routine and time their exit.

Modules (imports stay lazy so ``python -m rawprobe`` starts fast):

* ``options``   -- the ``watch`` command line: parsing and validation
* ``optvalues`` -- each option's value from its text: ranges, /proc and mount checks
* ``syscalls``  -- syscall names <-> numbers (shipped table, no headers needed)
* ``procinfo``  -- the few /proc facts the guard needs
* ``preflight`` -- privileges, the pid namespace, the fd limit, before anything loads
* ``guard``     -- the checks before every signal: never pid 1 or the tool, only the
                   process that made the call (pidfds: ``rawprobe.pidfd``)
* ``reactor``   -- the one epoll loop: fds, deadlines, the tool's own signals
* ``tracker``   -- the per-target state machine (guard -> signal -> deadline -> exit)
* ``events``    -- decoding the ring buffer records of intercept.bpf.c
* ``probe``     -- loading and attaching intercept.bpf.o
* ``output``    -- text, JSON lines, syslog; ``summary`` -- percentiles and histogram
* ``cli``, ``demo`` -- ``python -m rawprobe watch|features`` and the no-argument demo
"""
