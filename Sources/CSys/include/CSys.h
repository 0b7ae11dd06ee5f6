#ifndef ATTNRES_CSYS_H
#define ATTNRES_CSYS_H
#include <sys/types.h>

/// Makes the calling process the reaper of its orphaned descendants (prctl is variadic, so Swift cannot call
/// it directly). Returns 0 on success, -1 with errno set.
int attnres_set_child_subreaper(void);

/// posix_spawn that gives the child only stdin, stdout and stderr: every other descriptor of the parent is
/// closed in the child (glibc's posix_spawn_file_actions_addclosefrom_np). A worker must not keep its
/// coordinator's sockets, pipes or a supervisor's exit-detection socket open, or whoever waits on them (a
/// test harness, Foundation's Process) waits for the worker too. Returns 0 or an errno value.
int attnres_spawn_clean(pid_t *pid, const char *path, char *const argv[], char *const envp[]);

/// Whether a thread of this process may run under SCHED_FIFO (root or CAP_SYS_NICE, a non-zero RLIMIT_RTPRIO, and a
/// cgroup that grants real-time time): a short-lived probe thread tries it. libzmq aborts its I/O thread when a
/// requested scheduling policy is refused, so the ZeroMQ context asks for one only after this says yes. 1 or 0.
int attnres_realtime_threads_permitted(void);
#endif
