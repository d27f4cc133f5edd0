/* fuzz.h - what every reader harness (fuzz/fuzz_*.c) shares: the properties checked beyond
 * "no crash, no leak, no undefined behaviour" (ASan, LSan and UBSan see to those).
 *
 * A reader given any bytes either returns a result or fails with a message that names the
 * file it was given, so a user can tell which file was bad. A broken property aborts, which
 * libFuzzer reports as a crash with the input that broke it. */
#ifndef FS_FUZZ_H
#define FS_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tensor/tensor.h"

#define FUZZ_FAIL(...)                                                                       \
    do {                                                                                     \
        fprintf(stderr, "fuzz: " __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                                 \
        abort();                                                                             \
    } while (0)

/* A failed read: the message must name the file. */
static inline void fuzz_check_error(const char *reader, const char *name)
{
    const char *msg = fs_error();
    if (!strstr(msg, name))
        FUZZ_FAIL("%s failed with a message that does not name the file '%s': %s", reader,
                  name, msg);
}

/* A tensor read: contiguous, sizes non-negative, numel matching its storage. */
static inline void fuzz_check_tensor(const char *reader, const fs_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->size[d] < 0)
            FUZZ_FAIL("%s returned a negative size %s", reader, fs_shape_str(t->ndim, t->size));
        n *= t->size[d];
    }
    if (!fs_is_contiguous(t) || n != fs_numel(t) || t->offset + n > t->storage->numel)
        FUZZ_FAIL("%s returned a bad tensor %s", reader, fs_shape_str(t->ndim, t->size));
}

#endif
