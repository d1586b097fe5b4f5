#ifndef DISTILLCTL_CBLAS_SHIM_H
#define DISTILLCTL_CBLAS_SHIM_H
#include <cblas.h>
#endif
