#ifndef ATTNRES_SPAN_CLOCK_H
#define ATTNRES_SPAN_CLOCK_H

/// Per-thread stopwatches for the parts of a compute span (Numerics' `SpanClock`): slot 0 the time inside the
/// model (a chunk's forward or backward), slot 1 the time inside depth attention. Off by default on every thread; a
/// traced worker switches them on for its compute thread, so each forward and backward of its trace says how much
/// of it was the model and how much depth attention (docs/step-time.md, "Calibration").

/// Switches the calling thread's clocks on (1) or off (0) and clears their totals.
void attnres_span_clock_enable(int on);
/// 1 when the calling thread's clocks are on.
int attnres_span_clock_enabled(void);
/// CLOCK_MONOTONIC, seconds.
double attnres_span_clock_now(void);
/// Adds seconds to slot `which` (0 or 1; others are ignored) of the calling thread.
void attnres_span_clock_add(int which, double seconds);
/// Slot `which`'s total on the calling thread since its last take (or the enable), and clears it.
double attnres_span_clock_take(int which);

#endif
