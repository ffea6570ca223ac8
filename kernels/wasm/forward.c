/* Included by kernels.c (one translation unit): the whole-window forward pass. */
