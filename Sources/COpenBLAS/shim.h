#ifndef ATTNRES_COPENBLAS_SHIM_H
#define ATTNRES_COPENBLAS_SHIM_H
// Debian ships cblas.h under the openblas-pthread include directory that `pkg-config openblas` adds.
#include <cblas.h>
#endif
