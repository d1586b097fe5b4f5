#ifndef DISTILLCTL_FUZZ_DRIVER_H
#define DISTILLCTL_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

typedef int (*dctl_fuzz_callback)(const uint8_t *data, size_t size);

/// Runs libFuzzer's driver (LLVMFuzzerRunDriver) when the binary was linked with libFuzzer
/// (scripts/fuzz.sh); returns -1 without calling anything in an ordinary build.
int dctl_fuzz_run_driver(int *argc, char ***argv, dctl_fuzz_callback callback);
#endif
