/* error.c - the last error message (thread-local) and shape formatting for messages. */
#include <stdarg.h>
#include <stdio.h>

#include "base/error.h"

static _Thread_local char last_error[1024];

const char *fs_error(void) { return last_error[0] ? last_error : "unknown error"; }

int fs_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}

const char *fs_shape_str(int ndim, const int64_t *size)
{
    static _Thread_local char bufs[4][160];
    static _Thread_local int next;
    char *buf = bufs[next];
    next = (next + 1) % 4;
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof bufs[0] - n, "(");
    for (int d = 0; d < ndim && n < sizeof bufs[0]; d++)
        n += (size_t)snprintf(buf + n, sizeof bufs[0] - n, d ? ", %lld" : "%lld", (long long)size[d]);
    if (n < sizeof bufs[0])
        snprintf(buf + n, sizeof bufs[0] - n, ")");
    return buf;
}
