// SwiftPM links an executable with `--defsym main=<module>_main`, which collides with libFuzzer's
// own main(). So the fuzz build links libFuzzer without its main (fuzzer_no_main) and the Swift
// main calls the driver here. The weak reference keeps the ordinary build linking without libFuzzer.
#include "fuzz_driver.h"

extern int LLVMFuzzerRunDriver(int *argc, char ***argv,
                               int (*callback)(const uint8_t *data, size_t size)) __attribute__((weak));

int dctl_fuzz_run_driver(int *argc, char ***argv, dctl_fuzz_callback callback) {
    if (!LLVMFuzzerRunDriver) return -1;
    return LLVMFuzzerRunDriver(argc, argv, callback);
}
