#ifndef ATTNRES_CSYS_H
#define ATTNRES_CSYS_H
/// Makes the calling process the reaper of its orphaned descendants (prctl is variadic, so Swift cannot call
/// it directly). Returns 0 on success, -1 with errno set.
int attnres_set_child_subreaper(void);
#endif
