/* dicom.c - the C side of the DICOM reader (io/dicom.h): reads the file, runs GDCM's decoding
 * (fs_dicom_decode, dicom_gdcm.cpp) and hands back a tensor or an fs_error() naming the file.
 *
 * GDCM as Debian builds it keeps its assert()s, and some malformed files (a file cut inside its
 * meta header, for one) reach an assertion, which aborts the process. So the decoding runs in a
 * child process (fork): the child parses, decodes and writes the info and the float samples
 * into a pipe; the parent reads them into the tensor. A child that dies (an assertion, a signal)
 * becomes an error naming the file, with the last line GDCM printed. The child's stderr is
 * captured, so decoder chatter (libjpeg, OpenJPEG) does not reach the user's terminal.
 * FS_DICOM_IN_PROCESS=1 decodes in the calling process instead (to debug GDCM itself).
 * The tensor is allocated here, so the C++ file never sees fewshot's types. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#include <sanitizer/common_interface_defs.h>
#endif

#include "base/error.h"
#include "base/fileio.h"
#include "io/dicom.h"
#include "tensor/tensor.h"

#define ERR_LEN 512
#define CHILD_SECONDS 600

typedef struct {
    fs_tensor *t;
} alloc_ctx;

/* (frames, rows, cols) for gray, (frames, 3, rows, cols) for RGB */
static float *alloc_tensor(void *ctx, int64_t frames, int64_t channels, int64_t rows, int64_t cols)
{
    alloc_ctx *c = ctx;
    int64_t gray[3] = {frames, rows, cols}, rgb[4] = {frames, channels, rows, cols};
    c->t = channels == 1 ? fs_tensor_new(3, gray) : fs_tensor_new(4, rgb);
    return c->t ? fs_data(c->t) : NULL;
}

/* ---- the child: decode into a malloc'ed buffer, then write it all to the pipe ---- */

typedef struct {
    int32_t rc;
    int32_t pad;
    int64_t dims[4]; /* frames, channels, rows, cols of the samples that follow (0s: none) */
    char err[ERR_LEN];
    fs_dicom_info info;
} child_header;

typedef struct {
    float *data;
    int64_t dims[4];
} child_buf;

static float *alloc_child(void *ctx, int64_t frames, int64_t channels, int64_t rows, int64_t cols)
{
    child_buf *b = ctx;
    b->dims[0] = frames; b->dims[1] = channels; b->dims[2] = rows; b->dims[3] = cols;
    b->data = malloc((size_t)(frames * channels * rows * cols) * sizeof(float));
    return b->data;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* GDCM allocates an element's declared length before reading it, so 9 KB claiming a 4 GB
 * element would take 4 GB: the child's address space is capped at what it has plus 2 GB plus
 * 8 times the file (the decoded image and GDCM's copies fit; a claim beyond that fails as an
 * allocation, which fs_dicom_decode reports). Not under ASan (its shadow memory needs the
 * address space; the fuzz harness caps allocations through ASAN_OPTIONS instead) or valgrind. */
static void limit_child_memory(size_t len)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)len;
#else
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
    (void)len;
    return;
#endif
#endif
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        return;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f)
        return;
    int ok = fscanf(f, "%llu", &pages) == 1;
    fclose(f);
    if (!ok)
        return;
    long page = sysconf(_SC_PAGESIZE);
    rlim_t cap = (rlim_t)(pages * (unsigned long long)(page > 0 ? page : 4096)) +
                 ((rlim_t)2 << 30) + (rlim_t)len * 8;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && (rl.rlim_max == RLIM_INFINITY || cap < rl.rlim_max)) {
        rl.rlim_cur = cap;
        setrlimit(RLIMIT_AS, &rl);
    }
#endif
}

static void child_main(int out_fd, const unsigned char *buf, size_t len, const int64_t *frames,
                       int nframes, int pixels)
{
    static child_header h; /* large (the info): not on the stack */
    child_buf b = {NULL, {0, 0, 0, 0}};
    memset(&h, 0, sizeof h);
    h.rc = fs_dicom_decode(buf, len, frames, nframes, &h.info, pixels ? alloc_child : NULL, &b,
                           h.err, sizeof h.err);
    if (h.rc == 0 && b.data)
        memcpy(h.dims, b.dims, sizeof h.dims);
    int bad = write_all(out_fd, &h, sizeof h);
    if (!bad && h.rc == 0 && b.data)
        bad = write_all(out_fd, b.data,
                        (size_t)(b.dims[0] * b.dims[1] * b.dims[2] * b.dims[3]) * sizeof(float));
    _exit(bad ? 3 : 0);
}

/* ---- the parent: read the header, then the samples straight into the tensor ---- */

typedef struct {
    int fd;
    char *dst;       /* where the bytes go now */
    size_t want;     /* bytes still expected into dst */
} reader_state;

/* The last non-empty line of what the child printed on stderr. */
static void last_line(const char *log, size_t n, char *out, size_t outlen)
{
    while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == '\r' || log[n - 1] == ' '))
        n--;
    size_t s = n;
    while (s > 0 && log[s - 1] != '\n')
        s--;
    snprintf(out, outlen, "%.*s", (int)(n - s), log + s);
}

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
/* Fuzzing: a sanitizer report from the child that names our own sources (a bug in
 * dicom_gdcm.cpp or here) aborts the parent, so libFuzzer keeps the input. Reports of
 * allocations GDCM made for a declared length (out of memory, allocation size too big) and
 * deaths inside GDCM alone are the errors production reports, not findings. */
static void fuzz_judge_child(const char *log, size_t n)
{
    char buf[16385];
    memcpy(buf, log, n);
    buf[n] = 0;
    int report = strstr(buf, "ERROR: AddressSanitizer") || strstr(buf, "runtime error:");
    int oom = strstr(buf, "out-of-memory") || strstr(buf, "allocation-size-too-big") ||
              strstr(buf, "out of memory");
    int ours = strstr(buf, "dicom_gdcm.cpp") || strstr(buf, "io/dicom.c");
    if (report && ours && !oom) {
        fprintf(stderr, "fuzz: the decoding child reported an error in fewshot's code:\n%s\n", buf);
        abort();
    }
}
#endif

static int decode_isolated(const unsigned char *buf, size_t len, const int64_t *frames,
                           int nframes, fs_dicom_info *info, int pixels, alloc_ctx *ctx,
                           char *err, size_t errlen)
{
    int data_pipe[2], log_pipe[2];
    if (pipe(data_pipe) != 0) {
        snprintf(err, errlen, "cannot create a pipe (%s)", strerror(errno));
        return -1;
    }
    if (pipe(log_pipe) != 0) {
        snprintf(err, errlen, "cannot create a pipe (%s)", strerror(errno));
        close(data_pipe[0]);
        close(data_pipe[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot start the decoding process (%s)", strerror(errno));
        close(data_pipe[0]); close(data_pipe[1]); close(log_pipe[0]); close(log_pipe[1]);
        return -1;
    }
    if (pid == 0) {
        close(data_pipe[0]);
        close(log_pipe[0]);
        dup2(log_pipe[1], STDERR_FILENO);
        dup2(log_pipe[1], STDOUT_FILENO);
        close(log_pipe[1]);
        /* the host's (or a fuzzer's, or a sanitizer's) handlers would treat GDCM's death as
         * their own: the child dies of the signal and the parent reports it */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGFPE, SIG_DFL);
        signal(SIGILL, SIG_DFL);
        alarm(CHILD_SECONDS); /* a decoder caught in a loop ends as SIGALRM */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
        /* libFuzzer's death callback would write the child's death as a finding of its own;
         * the parent judges the child's sanitizer report instead (fuzz_judge_child) */
        __sanitizer_set_death_callback(NULL);
#endif
        limit_child_memory(len);
        child_main(data_pipe[1], buf, len, frames, nframes, pixels);
    }
    close(data_pipe[1]);
    close(log_pipe[1]);
    static _Thread_local child_header h;
    char log[16384];
    size_t log_n = 0;
    size_t got_header = 0;
    char *dst = NULL;
    size_t want = 0, got = 0;
    int data_open = 1, log_open = 1, short_data = 0, oom = 0;
    char scratch[65536];
    while (data_open || log_open) {
        struct pollfd p[2] = {{data_open ? data_pipe[0] : -1, POLLIN, 0},
                              {log_open ? log_pipe[0] : -1, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (log_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = log_n < sizeof log ? read(log_pipe[0], log + log_n, sizeof log - log_n)
                                           : read(log_pipe[0], scratch, sizeof scratch);
            if (r > 0 && log_n < sizeof log)
                log_n += (size_t)r;
            else if (r == 0 || (r < 0 && errno != EINTR))
                log_open = 0;
        }
        if (data_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            char *to;
            size_t room;
            if (got_header < sizeof h) {
                to = (char *)&h + got_header;
                room = sizeof h - got_header;
            } else if (dst && got < want) {
                to = dst + got;
                room = want - got;
            } else {
                to = scratch; /* nothing more expected: drain */
                room = sizeof scratch;
            }
            ssize_t r = read(data_pipe[0], to, room);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                data_open = 0;
                continue;
            }
            if (got_header < sizeof h) {
                got_header += (size_t)r;
                if (got_header == sizeof h && h.rc == 0 && pixels && h.dims[0] > 0) {
                    float *f = alloc_tensor(ctx, h.dims[0], h.dims[1], h.dims[2], h.dims[3]);
                    if (!f)
                        oom = 1;
                    dst = (char *)f;
                    want = dst ? (size_t)fs_numel(ctx->t) * sizeof(float) : 0;
                }
            } else if (dst && to != scratch) {
                got += (size_t)r;
            }
        }
    }
    close(data_pipe[0]);
    close(log_pipe[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    short_data = got_header < sizeof h || (h.rc == 0 && pixels && got < want);
    char line[300];
    last_line(log, log_n, line, sizeof line);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    fuzz_judge_child(log, log_n);
#endif
    if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0) || short_data) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            snprintf(err, errlen, "GDCM did not finish decoding it in %d s", CHILD_SECONDS);
        else if (WIFSIGNALED(status))
            snprintf(err, errlen, "malformed: GDCM stopped on it (signal %d%s%s)",
                     WTERMSIG(status), line[0] ? ": " : "", line);
        else
            snprintf(err, errlen, "the decoding process ended early (exit status %d%s%s)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1, line[0] ? ": " : "", line);
        return -1;
    }
    if (oom) {
        snprintf(err, errlen, "out of memory for the decoded image");
        return -1;
    }
    *info = h.info;
    if (h.rc != 0) {
        snprintf(err, errlen, "%s", h.err);
        return -1;
    }
    return 0;
}

static fs_tensor *parse(const char *op, const char *name, const unsigned char *buf, size_t len,
                        const int64_t *frames, int nframes, fs_dicom_info *info, int pixels,
                        int *rc_out)
{
    fs_dicom_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    char err[ERR_LEN];
    alloc_ctx ctx = {NULL};
    const char *inproc = getenv("FS_DICOM_IN_PROCESS");
    int rc;
    if (inproc && inproc[0] == '1')
        rc = fs_dicom_decode(buf, len, frames, nframes, info, pixels ? alloc_tensor : NULL, &ctx,
                             err, sizeof err);
    else
        rc = decode_isolated(buf, len, frames, nframes, info, pixels, &ctx, err, sizeof err);
    *rc_out = rc;
    if (rc != 0) {
        fs_tensor_release(ctx.t);
        fs_set_error("%s: %s: %s", op, name, err);
        return NULL;
    }
    return ctx.t;
}

fs_tensor *fs_dicom_parse(const char *name, const unsigned char *buf, size_t len,
                          const int64_t *frames, int nframes, fs_dicom_info *info)
{
    int rc;
    return parse("load_dicom", name, buf, len, frames, nframes, info, 1, &rc);
}

fs_tensor *fs_dicom_read(const char *path, const int64_t *frames, int nframes,
                         fs_dicom_info *info)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (fs_file_read_all("load_dicom", path, &buf, &len))
        return NULL;
    int rc;
    fs_tensor *t = parse("load_dicom", path, buf, len, frames, nframes, info, 1, &rc);
    free(buf);
    return t;
}

int fs_dicom_read_info(const char *path, fs_dicom_info *info)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (fs_file_read_all("dicom_info", path, &buf, &len))
        return -1;
    int rc;
    parse("dicom_info", path, buf, len, NULL, 0, info, 0, &rc);
    free(buf);
    return rc;
}
