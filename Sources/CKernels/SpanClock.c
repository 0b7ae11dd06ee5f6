// The per-thread span stopwatches (include/SpanClock.h). Thread-local, so ranks run as threads of one process (the
// in-memory cluster) never add to each other's totals.
#include "SpanClock.h"
#include <time.h>

static _Thread_local int clock_on;
static _Thread_local double clock_total[2];

void attnres_span_clock_enable(int on) { clock_on = on != 0; clock_total[0] = clock_total[1] = 0; }
int attnres_span_clock_enabled(void) { return clock_on; }

double attnres_span_clock_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void attnres_span_clock_add(int which, double seconds) {
    if (which == 0 || which == 1) clock_total[which] += seconds;
}

double attnres_span_clock_take(int which) {
    if (which != 0 && which != 1) return 0;
    const double t = clock_total[which];
    clock_total[which] = 0;
    return t;
}
