// The function tables of CKernels.h: one per instruction set, filled with that file's functions.
#include "CKernels.h"

const attnres_depth_kernels attnres_avx2_kernels = {
    attnres_avx2_sum_squares, attnres_avx2_dot_and_squares, attnres_avx2_depth_forward,
    attnres_avx2_depth_backward, attnres_avx2_depth_phase1, attnres_avx2_depth_mix, attnres_avx2_depth_merge,
    attnres_avx2_rstd_rows, attnres_avx2_gelu_forward, attnres_avx2_gelu_backward,
};

const attnres_depth_kernels attnres_avx512_kernels = {
    attnres_avx512_sum_squares, attnres_avx512_dot_and_squares, attnres_avx512_depth_forward,
    attnres_avx512_depth_backward, attnres_avx512_depth_phase1, attnres_avx512_depth_mix,
    attnres_avx512_depth_merge, attnres_avx512_rstd_rows, attnres_avx512_gelu_forward, attnres_avx512_gelu_backward,
};
