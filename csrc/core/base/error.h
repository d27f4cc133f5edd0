/* error.h - the last error message (thread-local) and shape formatting for messages.
 * A function that fails sets the message with fs_set_error and returns -1 or NULL; the
 * Lua binding raises it. Nothing in the core aborts the process. */
#ifndef FS_ERROR_H
#define FS_ERROR_H

#include <stdint.h>

const char *fs_error(void);
/* Formats the message, keeps it for fs_error(), returns -1. */
int fs_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* "(2, 3)": a thread-local rotating buffer, so up to 4 may appear in one message. */
const char *fs_shape_str(int ndim, const int64_t *size);
#endif
