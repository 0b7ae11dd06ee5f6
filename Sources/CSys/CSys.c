#include "CSys.h"
#include <sys/prctl.h>

int attnres_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
