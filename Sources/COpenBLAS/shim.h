#ifndef ATTNRES_COPENBLAS_SHIM_H
#define ATTNRES_COPENBLAS_SHIM_H
// Debian ships cblas.h under the openblas-pthread include directory that `pkg-config openblas` adds.
#include <cblas.h>
// glibc's mallopt (not exported by Swift's Glibc module): Numerics' AllocatorTuning keeps activation buffers in the heap.
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#endif
