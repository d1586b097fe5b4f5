#ifndef DISTILLCTL_CJPEG_SHIM_H
#define DISTILLCTL_CJPEG_SHIM_H
#include <stdio.h>
#include <jpeglib.h>
#endif
