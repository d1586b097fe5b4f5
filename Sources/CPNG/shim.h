#ifndef DISTILLCTL_CPNG_SHIM_H
#define DISTILLCTL_CPNG_SHIM_H
#include <png.h>
#endif
