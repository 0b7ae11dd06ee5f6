#ifndef ATTNRES_CZEROMQ_SHIM_H
#define ATTNRES_CZEROMQ_SHIM_H
#include <zmq.h>
#endif
