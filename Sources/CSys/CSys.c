#define _GNU_SOURCE
#include "CSys.h"
#include <spawn.h>
#include <sys/prctl.h>
#include <pthread.h>
#include <sched.h>

int attnres_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int attnres_spawn_clean(pid_t *pid, const char *path, char *const argv[], char *const envp[]) {
    posix_spawn_file_actions_t actions;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (rc == 0) rc = posix_spawn(pid, path, &actions, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

static void *attnres_realtime_probe(void *result) {
    struct sched_param p = { .sched_priority = 1 };
    *(int *)result = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p);
    return NULL;
}

int attnres_realtime_threads_permitted(void) {
    pthread_t t;
    int rc = -1;
    if (pthread_create(&t, NULL, attnres_realtime_probe, &rc) != 0) return 0;
    pthread_join(t, NULL);
    return rc == 0;
}
